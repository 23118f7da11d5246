using System.Net;
using MeshKit.OpenTelemetry;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
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
    public async Task TheControlPlane_ServesItsMetricsForPrometheus_OnTheAdminPortOnly()
    {
        await StartAsync("reviews", "v1");
        using var http = new HttpClient();
        string text = string.Empty;
        // The first push can carry the state from before the workload registered (version 0); the registration's
        // state follows after the publisher's quiet period, later on a loaded machine.
        await Eventually.TrueAsync(async () =>
        {
            text = await http.GetStringAsync(new Uri(ControlPlane.AdminAddress, "/metrics"));
            return text.Contains("meshkit_controlplane_pushes_total{", StringComparison.Ordinal)
                && System.Text.RegularExpressions.Regex.IsMatch(text, "(?m)^meshkit_controlplane_config_version(\\{[^}]*\\})? [1-9]");
        }, "the pushes to the workload are counted, and the registration's state is in force");

        Assert.Contains("# TYPE meshkit_controlplane_connected_workloads", text, StringComparison.Ordinal);
        Assert.Matches("(?m)^meshkit_controlplane_connected_workloads(\\{[^}]*\\})? [1-9]", text);
        Assert.Contains("# TYPE meshkit_controlplane_push_size_bytes histogram", text, StringComparison.Ordinal);
        Assert.Matches("(?m)^meshkit_controlplane_config_version(\\{[^}]*\\})? [1-9]", text);
        Assert.Contains("service_name=\"meshkit-controlplane\"", text, StringComparison.Ordinal);

        // Not on the discovery port (plain-text HTTP/2: the admin routes are not there).
        using var discovery = new HttpClient(new SocketsHttpHandler()) { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var elsewhere = await discovery.GetAsync(new Uri(ControlPlane.DiscoveryAddress, "/metrics"));
        Assert.Equal(HttpStatusCode.NotFound, elsewhere.StatusCode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WithAnAdminToken_TheMetricsNeedIt_UnlessTheyAreAnonymous(bool anonymous)
    {
        await ControlPlane.DisposeAsync();
        ControlPlane = await TestControlPlane.StartAsync(configure: o => (o.AdminToken, o.AnonymousMetrics) = ("s3cret", anonymous));
        using var http = new HttpClient();
        async Task<HttpStatusCode> GetAsync(string path, string? token = null)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(ControlPlane.AdminAddress, path));
            if (token is not null)
            {
                request.Headers.Authorization = new("Bearer", token);
            }

            using var response = await http.SendAsync(request);
            return response.StatusCode;
        }

        Assert.Equal(anonymous ? HttpStatusCode.OK : HttpStatusCode.Unauthorized, await GetAsync("/metrics"));
        Assert.Equal(HttpStatusCode.OK, await GetAsync("/metrics", "s3cret"));

        // The rest of the admin port keeps the token either way: what it shows names workloads and resources.
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync("/debug/config"));
        Assert.Equal(HttpStatusCode.OK, await GetAsync("/debug/config", "s3cret"));
    }

    [Fact]
    public async Task TheMeshHealthCheck_FollowsTheControlPlaneAndTheConfig()
    {
        var workload = await StartAsync("reviews", "v1", services: s => s.AddHealthChecks().AddMeshHealthChecks());
        var health = workload.Services.GetRequiredService<HealthCheckService>();
        using var nacks = new Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long>(workload.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), "MeshKit", "meshkit.config.nacks");
        await Eventually.TrueAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "healthy once in sync");

        ControlPlane.WriteConfig("bad.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy: { tls: { mode: SIMPLE, caCertificates: /nonexistent/ca.pem } }
            """);
        // Degraded for the rejection itself: a stream restarting under load degrades it for a moment too ("unreachable").
        var rejected = await WaitForAsync(health, r => r.Entries["mesh"].Description?.Contains("rejected", StringComparison.Ordinal) == true);
        Assert.Equal(HealthStatus.Degraded, rejected.Status);
        Assert.True(nacks.GetMeasurementSnapshot().Count >= 1);

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

    [Fact]
    public async Task ASecureWorkload_ReportsTheTimeLeftOnItsCertificate()
    {
        var workload = await StartSecureAsync("reviews");
        using var expiry = new Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<double>(workload.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), "MeshKit", "meshkit.certificate.expiry");

        expiry.RecordObservableInstruments();

        Assert.InRange(Assert.Single(expiry.GetMeasurementSnapshot()).Value, TimeSpan.FromHours(23).TotalSeconds, TimeSpan.FromHours(24.1).TotalSeconds);
    }

    [Fact]
    public async Task TheAccessLog_HasOneEntryPerRequest_OnBothSides()
    {
        var reviews = await StartSecureAsync("reviews", services: AccessLogging);
        var productpage = await StartSecureAsync("productpage", services: AccessLogging);
        await KnowsIdentityAsync(productpage);

        using var response = await productpage.CreateClient().GetAsync("http://reviews/books/1");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var outbound = Assert.Single(AccessLogEntries(productpage));
        Assert.Contains("GET reviews/books/1", outbound, StringComparison.Ordinal);
        Assert.Contains("peer=spiffe://cluster.local/ns/default/sa/reviews", outbound, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(m => m.Contains("inbound GET", StringComparison.Ordinal) && m.Contains("workload=productpage-v1", StringComparison.Ordinal)), "the server logged it");
    }

    [Fact]
    public async Task TheTelemetryApi_TurnsTheAccessLogOff_PerWorkloadAndSide()
    {
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging);
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging);
        // Mesh-wide on (Istio's default provider), off for the requests reviews serves.
        ControlPlane.WriteConfig("telemetry.yaml", """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              accessLogging: [{ providers: [{ name: envoy }] }]
            ---
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              accessLogging: [{ match: { mode: SERVER }, disabled: true }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.ServerAccessLogOff && !reviews.Snapshot.ClientAccessLogOff && !productpage.Snapshot.ServerAccessLogOff && productpage.Endpoints(ReviewsHost) == 1, "the policy arrived");

        using var response = await productpage.CreateClient().GetAsync("http://reviews/books/1");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // The caller logged its call; the server, told not to, logged nothing (its access log is on otherwise).
        Assert.Contains(AccessLogEntries(productpage), m => m.Contains("GET reviews/books/1", StringComparison.Ordinal));
        await Task.Delay(200);
        Assert.DoesNotContain(AccessLogEntries(reviews), m => m.Contains("inbound GET", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheTelemetryApi_FiltersTheAccessLog_WithACelExpression_PerSide()
    {
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging);
        reviews.Behavior = context => Task.FromResult<Microsoft.AspNetCore.Http.IResult?>(context.Request.Path == "/unavailable" ? Microsoft.AspNetCore.Http.Results.StatusCode(503) : null);
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging);
        // Mesh-wide: errors and debugged calls only; reviews' server side: its plain-text /books requests only.
        ControlPlane.WriteConfig("telemetry.yaml", """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              accessLogging:
              - providers: [{ name: envoy }]
                filter: { expression: "response.code >= 500 || request.headers['x-debug'] == 'true'" }
            ---
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              accessLogging: [{ match: { mode: SERVER }, filter: { expression: "!connection.mtls && request.url_path.startsWith('/books') && request.method in ['GET', 'HEAD']" } }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.ServerAccessLogFilter is not null && productpage.Snapshot.ClientAccessLogFilter is not null && productpage.Endpoints(ReviewsHost) == 1, "the policy arrived");
        var http = productpage.CreateClient();

        using (var plain = await http.GetAsync("http://reviews/books/1"))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }

        using (var debugged = new HttpRequestMessage(HttpMethod.Get, "http://reviews/books/2"))
        {
            debugged.Headers.Add("x-debug", "true");
            using var response = await http.SendAsync(debugged);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var failed = await http.GetAsync("http://reviews/unavailable"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        }

        // The caller: the debugged call and the failure, not the plain success.
        var client = AccessLogEntries(productpage).Where(m => m.Contains("GET reviews/", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, client.Count);
        Assert.Contains(client, m => m.Contains("/books/2", StringComparison.Ordinal));
        Assert.Contains(client, m => m.Contains("/unavailable", StringComparison.Ordinal) && m.Contains(" 503 ", StringComparison.Ordinal));

        // The server: both /books requests (its own filter replaced the mesh's), not the failure.
        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Count(m => m.Contains("inbound GET", StringComparison.Ordinal) && m.Contains("/books/", StringComparison.Ordinal)) == 2, "the server logged its /books requests");
        await Task.Delay(200);
        Assert.DoesNotContain(AccessLogEntries(reviews), m => m.Contains("/unavailable", StringComparison.Ordinal));
    }
}
