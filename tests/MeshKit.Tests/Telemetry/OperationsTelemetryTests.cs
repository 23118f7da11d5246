using System.Net;
using MeshKit.OpenTelemetry;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace MeshKit.Tests.Telemetry;

/// <summary>OpenTelemetry wiring and health checks, on real workloads.</summary>
public sealed class OperationsTelemetryTests : MeshTestBase
{
    [Fact]
    public async Task AddMeshTelemetry_ExportsIstiosMetrics_ThroughOpenTelemetry()
    {
        var exported = new List<Metric>();
        await StartAsync("reviews", "v1");
        var client = await StartAsync("productpage", "v1", services: s => s.AddOpenTelemetry().AddMeshTelemetry().WithMetrics(m => m.AddInMemoryExporter(exported)));
        await Eventually.TrueAsync(() => client.Snapshot.TryResolve("reviews", out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 1, "reviews is known");

        using var response = await client.CreateClient().GetAsync("http://reviews/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        client.Services.GetRequiredService<MeterProvider>().ForceFlush();

        Assert.Contains(exported, m => m.Name == "istio_requests_total");
        Assert.Contains(exported, m => m.Name == "istio_request_duration_milliseconds");
    }

    [Fact]
    public async Task TheMeshHealthCheck_FollowsTheControlPlaneAndTheConfig()
    {
        var workload = await StartAsync("reviews", "v1", services: s => s.AddHealthChecks().AddMeshHealthChecks());
        var health = workload.Services.GetRequiredService<HealthCheckService>();
        await Eventually.TrueAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "healthy once in sync");

        ControlPlane.WriteConfig("bad.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy: { tls: { mode: SIMPLE, caCertificates: /nonexistent/ca.pem } }
            """);
        await Eventually.TrueAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Degraded, "degraded after a rejected push");

        await ControlPlane.StopAsync();
        var report = await WaitForAsync(health, r => r.Entries["mesh"].Description?.Contains("unreachable", StringComparison.Ordinal) == true);
        Assert.Equal(HealthStatus.Degraded, report.Status);
    }

    private static async Task<HealthReport> WaitForAsync(HealthCheckService health, Func<HealthReport, bool> condition)
    {
        HealthReport? last = null;
        await Eventually.TrueAsync(async () => condition(last = await health.CheckHealthAsync()), "the health report changes");
        return last!;
    }
}
