using System.Diagnostics.Metrics;
using MeshKit.Telemetry;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MeshKit.Tests.Telemetry;

public sealed class MeshMetricsTests : IDisposable
{
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    private IMeterFactory Meters => _services.GetRequiredService<IMeterFactory>();

    public void Dispose() => _services.Dispose();

    [Fact]
    public async Task RequestsFaultsAndMirrors_AreCounted_WithFlagsAndDestination()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.client.requests");
        using var faults = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.client.faults_injected");
        using var mirrors = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.client.mirrored_requests");
        using var mesh = InMemoryMesh.Create(InMemoryMesh.Subsets + InMemoryMesh.VirtualService("""
              - match: [{ uri: { prefix: /abort } }]
                fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
                mirror: { host: reviews, subset: v2 }
            """), metrics: new MeshMetrics(Meters));

        await mesh.SendAsync("http://reviews/abort");
        await mesh.SendAsync("http://reviews/ok");
        await mesh.SendAsync("http://reviews/ok");

        var snapshot = requests.GetMeasurementSnapshot();
        Assert.Equal(3, snapshot.Count);
        Assert.Single(snapshot, m => (string?)m.Tags["meshkit.response_flags"] == "FI" && (int?)m.Tags["http.response.status_code"] == 500);
        Assert.Equal(2, snapshot.Count(m => (string?)m.Tags["meshkit.response_flags"] == "-"));
        Assert.All(snapshot, m => Assert.Equal("reviews", m.Tags["meshkit.destination.service"]));
        Assert.Equal("abort", faults.GetMeasurementSnapshot().Single().Tags["meshkit.fault"]);
        Assert.Equal(2, mirrors.GetMeasurementSnapshot().Count);
    }

    [Fact]
    public async Task RoutesWithAStatPrefix_AreCountedAndTimedPerRoute_WhateverAnswers_AndOtherRoutesAreNot()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.route.requests");
        using var durations = new MetricCollector<double>(Meters, MeshMetrics.MeterName, "meshkit.route.duration");
        using var mesh = InMemoryMesh.Create(InMemoryMesh.Subsets + InMemoryMesh.VirtualService("""
              - match: [{ uri: { prefix: /abort }, statPrefix: reviews-abort }]
                fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }
                route: [{ destination: { host: reviews, subset: v1 } }]
              - match: [{ headers: { x-canary: { exact: "1" } }, statPrefix: reviews-canary }, { uri: { prefix: /also-canary } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
            """), metrics: new MeshMetrics(Meters));

        await mesh.SendAsync("http://reviews/abort");
        Assert.Equal("v2", await mesh.SendAsync("http://reviews/x", headers: ("x-canary", "1")));
        Assert.Equal("v2", await mesh.SendAsync("http://reviews/x", headers: ("x-canary", "1")));
        Assert.Equal("v2", await mesh.SendAsync("http://reviews/also-canary")); // the route's other block has no statPrefix (Envoy: a route of its own)
        Assert.Equal("v1", await mesh.SendAsync("http://reviews/other"));

        var counted = requests.GetMeasurementSnapshot();
        Assert.Equal(3, counted.Count);
        var abort = Assert.Single(counted, m => (string?)m.Tags["meshkit.route"] == "reviews-abort");
        Assert.Equal((503, "FI", "reviews"), ((int?)abort.Tags["http.response.status_code"], (string?)abort.Tags["meshkit.response_flags"], (string?)abort.Tags["meshkit.destination.service"]));
        Assert.Equal(2, counted.Count(m => (string?)m.Tags["meshkit.route"] == "reviews-canary" && (int?)m.Tags["http.response.status_code"] == 200 && (string?)m.Tags["meshkit.response_flags"] == "-"));
        var timed = durations.GetMeasurementSnapshot();
        Assert.Equal(["reviews-abort", "reviews-canary", "reviews-canary"], timed.Select(m => (string?)m.Tags["meshkit.route"]).Order());
        Assert.All(timed, m => Assert.False(m.Tags.ContainsKey("meshkit.response_flags")));
    }
}
