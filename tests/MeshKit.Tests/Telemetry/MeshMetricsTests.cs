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
}
