using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MeshKit.Tests.Telemetry;

/// <summary>Istio's standard metrics from both sides of a real call, peer metadata, and spans per attempt.</summary>
public sealed class IstioTelemetryTests : MeshTestBase
{
    /// <summary>Runs <paramref name="call"/> under a parent span and returns it with the spans of <paramref name="sources"/> in its trace.</summary>
    private static async Task<(Activity Parent, List<Activity> Spans)> TraceAsync(Func<Task> call, params string[] sources)
    {
        var spans = new List<Activity>();
        using var listener = RecordSpans(spans, sources);
        var parent = new Activity("test").Start();
        try
        {
            await call();
        }
        finally
        {
            parent.Stop();
        }

        lock (spans)
        {
            return (parent, spans.Where(s => s.TraceId == parent.TraceId).ToList());
        }
    }

    /// <summary>Records every stopped span of <paramref name="sources"/> into <paramref name="spans"/> (sampled and recorded) until disposed.</summary>
    private static ActivityListener RecordSpans(List<Activity> spans, params string[] sources)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = s => sources.Contains(s.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                lock (spans)
                {
                    spans.Add(a);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    private static MetricCollector<long> Requests(TestWorkload workload) =>
        new(workload.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "istio_requests_total");

    [Fact]
    public async Task BothReporters_CarryIstiosLabels_WithPeerMetadataOverMutualTls()
    {
        var reviews = await StartSecureAsync("reviews", "bookinfo-reviews", o =>
        {
            o.Labels["version"] = "v2";
            o.Labels["service.istio.io/canonical-name"] = "reviews-canonical";
        });
        reviews.Behavior = context => Task.FromResult<IResult?>(context.Request.Headers.ContainsKey("x-meshkit-peer-metadata") ? Results.StatusCode(500) : null);
        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage");
        await KnowsIdentityAsync(productpage);
        using var source = Requests(productpage);
        using var destination = Requests(reviews);
        using var duration = new MetricCollector<double>(productpage.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "istio_request_duration_milliseconds");

        using var response = await productpage.CreateClient().GetAsync("http://reviews/reviews/1");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains("x-meshkit-peer-metadata"), "peer metadata never reaches the app");
        // Reports reach the instruments off the request path: within a second, or at once on collection.
        await Eventually.TrueAsync(() => destination.GetMeasurementSnapshot().Count == 1, "the server reported");
        await Eventually.TrueAsync(() => source.GetMeasurementSnapshot().Count == 1, "the client reported");

        var client = Assert.Single(source.GetMeasurementSnapshot()).Tags;
        Assert.Equal("source", client["reporter"]);
        Assert.Equal("productpage-v1", client["source_workload"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/bookinfo-productpage", client["source_principal"]);
        Assert.Equal("reviews-v2", client["destination_workload"]);
        Assert.Equal("v2", client["destination_version"]);
        Assert.Equal("reviews", client["destination_app"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/bookinfo-reviews", client["destination_principal"]);
        Assert.Equal("reviews.default.svc.cluster.local", client["destination_service"]);
        Assert.Equal(200, client["response_code"]);
        Assert.Equal("http", client["request_protocol"]);
        Assert.Equal("-", client["response_flags"]);
        Assert.Equal("productpage", client["source_canonical_service"]); // no canonical labels: the app, the version
        Assert.Equal("v1", client["source_canonical_revision"]);
        Assert.Equal("Kubernetes", client["source_cluster"]);
        Assert.Equal("reviews-canonical", client["destination_canonical_service"]); // told in the peer metadata
        Assert.Equal("v2", client["destination_canonical_revision"]);
        Assert.Equal("Kubernetes", client["destination_cluster"]);

        var server = Assert.Single(destination.GetMeasurementSnapshot()).Tags;
        Assert.Equal("destination", server["reporter"]);
        Assert.Equal("productpage-v1", server["source_workload"]);
        Assert.Equal("default", server["source_workload_namespace"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/bookinfo-productpage", server["source_principal"]);
        Assert.Equal("reviews-v2", server["destination_workload"]);
        Assert.Equal("mutual_tls", server["connection_security_policy"]);
        Assert.Equal(200, server["response_code"]);
        Assert.Equal("productpage", server["source_canonical_service"]);
        Assert.Equal("reviews-canonical", server["destination_canonical_service"]);
        await Eventually.TrueAsync(() => duration.GetMeasurementSnapshot().Count == 1, "the client's duration was recorded");
    }

    [Fact]
    public async Task TheTelemetryApi_DisablesMetrics_AndRemovesLabels_PerSide_AndAChangeApplies()
    {
        var reviews = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        string Config(bool sizesOff) => $$"""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              metrics:
              - providers: [{ name: prometheus }]
                overrides: [{ match: { metric: REQUEST_SIZE, mode: CLIENT_AND_SERVER }, disabled: {{(sizesOff ? "true" : "false")}} }]
            ---
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              metrics:
              - overrides:
                - match: { metric: REQUEST_COUNT, mode: SERVER }
                  tagOverrides: { source_workload: { operation: REMOVE }, source_app: { operation: REMOVE } }
            """;
        ControlPlane.WriteConfig("telemetry.yaml", Config(sizesOff: true));
        await Eventually.TrueAsync(() => reviews.Snapshot.Reports is not null && productpage.Snapshot.Reports is not null && productpage.Endpoints(ReviewsHost) == 1, "the policy reached both");
        var meters = (Caller: productpage.Services.GetRequiredService<IMeterFactory>(), Server: reviews.Services.GetRequiredService<IMeterFactory>());
        using var source = Requests(productpage);
        using var destination = Requests(reviews);
        using var sourceSizes = new MetricCollector<long>(meters.Caller, "MeshKit", "istio_request_bytes");
        using var destinationSizes = new MetricCollector<long>(meters.Server, "MeshKit", "istio_request_bytes");
        using var destinationDurations = new MetricCollector<double>(meters.Server, "MeshKit", "istio_request_duration_milliseconds");

        using (var response = await productpage.CreateClient().GetAsync("http://reviews/reviews/1"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await Eventually.TrueAsync(() => destination.GetMeasurementSnapshot().Count == 1 && source.GetMeasurementSnapshot().Count == 1, "both sides counted the call");
        await Eventually.TrueAsync(() => destinationDurations.GetMeasurementSnapshot().Count == 1, "the server recorded its duration");

        // The sizes are off on both sides; the server's request count lost two labels, its other metrics and the
        // caller's count kept them.
        Assert.Empty(sourceSizes.GetMeasurementSnapshot());
        Assert.Empty(destinationSizes.GetMeasurementSnapshot());
        var counted = Assert.Single(destination.GetMeasurementSnapshot()).Tags;
        Assert.False(counted.ContainsKey("source_workload"));
        Assert.False(counted.ContainsKey("source_app"));
        Assert.Equal("reviews-v1", counted["destination_workload"]);
        Assert.Equal(23, counted.Count);
        Assert.Equal(25, Assert.Single(destinationDurations.GetMeasurementSnapshot()).Tags.Count);
        Assert.Equal("productpage-v1", Assert.Single(source.GetMeasurementSnapshot()).Tags["source_workload"]);

        // The mesh-wide resource turns the sizes back on: the next call records them.
        var before = reviews.Snapshot.Version;
        ControlPlane.WriteConfig("telemetry.yaml", Config(sizesOff: false));
        await Eventually.TrueAsync(() => reviews.Snapshot.Version != before && productpage.Snapshot.Reports is null, "the change reached both");
        using (var response = await productpage.CreateClient().GetAsync("http://reviews/reviews/1"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await Eventually.TrueAsync(() => sourceSizes.GetMeasurementSnapshot().Count == 1 && destinationSizes.GetMeasurementSnapshot().Count == 1, "both sides recorded the size");
    }

    [Fact]
    public async Task ACaller_AsksAnEndpointForItsMetadataOnce_AndLabelsEveryCallWithIt()
    {
        var reviews = await StartSecureAsync("reviews", "bookinfo-reviews", o =>
        {
            o.Labels["version"] = "v2";
            o.Labels["service.istio.io/canonical-name"] = "reviews-canonical";
        });
        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage");
        await KnowsIdentityAsync(productpage);
        using var source = Requests(productpage);
        var client = productpage.CreateClient();

        async Task<string> CallAsync()
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/reviews/1");
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return Assert.Single(request.Headers.GetValues("x-meshkit-peer-metadata"));
        }

        // The first call asks for the server's metadata (no r=0); later ones do not, the endpoint having told it. A
        // config push builds the endpoint anew (it is asked once more then): only calls within one config version count.
        Assert.DoesNotContain(";r=0", await CallAsync(), StringComparison.Ordinal);
        var calls = 1;
        var notAsked = 0;
        while (notAsked < 2 && calls < 10)
        {
            var version = productpage.Snapshot.Version;
            var asked = !(await CallAsync()).EndsWith(";r=0", StringComparison.Ordinal);
            calls++;
            if (productpage.Snapshot.Version == version)
            {
                notAsked += asked ? 0 : 1;
            }
        }

        Assert.Equal(2, notAsked);
        await Eventually.TrueAsync(() => source.GetMeasurementSnapshot().Sum(m => m.Value) == calls, "every call was counted");
        Assert.All(source.GetMeasurementSnapshot(), m =>
        {
            Assert.Equal("reviews-v2", m.Tags["destination_workload"]);
            Assert.Equal("v2", m.Tags["destination_version"]);
        });
    }

    [Fact]
    public async Task TheTelemetryApi_TagsMeshKitsSpans_AndTurnsThemOff()
    {
        var variable = $"MESHKIT_TEST_CLUSTER_{Guid.NewGuid():N}";
        Environment.SetEnvironmentVariable(variable, "east-1");
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        string Config(bool off) => $$"""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              tracing:
              - customTags:
                  team: { literal: { value: books } }
                  cluster: { environment: { name: {{variable}} } }
                  user: { header: { name: end-user, defaultValue: anonymous } }
            ---
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: productpage, namespace: default }
            spec:
              selector: { matchLabels: { app: productpage } }
              tracing: [{ match: { mode: CLIENT }, disableSpanReporting: {{(off ? "true" : "false")}} }]
            """;
        ControlPlane.WriteConfig("telemetry.yaml", Config(off: false));
        await Eventually.TrueAsync(() => productpage.Snapshot.SpanTags is not null && productpage.Endpoints(ReviewsHost) == 1, "the policy arrived");
        var spans = new List<Activity>();
        using var listener = RecordSpans(spans, "MeshKit");

        async Task<List<Activity>> CallAsync(string? user)
        {
            using var parent = new Activity("test").Start();
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
            if (user is not null)
            {
                request.Headers.Add("end-user", user);
            }

            using var response = await productpage.CreateClient().SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            lock (spans)
            {
                return spans.Where(s => s.TraceId == parent.TraceId).ToList();
            }
        }

        var tagged = Assert.Single(await CallAsync("jason"), s => s.OperationName == "MeshKit outbound");
        Assert.Equal("books", tagged.GetTagItem("team"));
        Assert.Equal("east-1", tagged.GetTagItem("cluster"));
        Assert.Equal("jason", tagged.GetTagItem("user"));
        Assert.Equal("anonymous", Assert.Single(await CallAsync(null), s => s.OperationName == "MeshKit outbound").GetTagItem("user"));

        // The workload's own resource turns its spans off: neither the call's nor the attempts'.
        ControlPlane.WriteConfig("telemetry.yaml", Config(off: true));
        await Eventually.TrueAsync(() => productpage.Snapshot.SpansOff, "the change arrived");
        Assert.Empty(await CallAsync("jason"));
        Environment.SetEnvironmentVariable(variable, null);
    }

    [Fact]
    public async Task AServer_SendsItsMetadataBack_UnlessTheCallerSaysItRecordsNothing()
    {
        var reviews = await StartSecureAsync("reviews", "bookinfo-reviews");
        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage");
        var certificate = productpage.Services.GetRequiredService<MeshKit.Security.WorkloadIdentity>().Current!.Certificate;
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        handler.SslOptions.ClientCertificates = [certificate];
        using var http = new HttpClient(handler);

        async Task<bool> RepliesAsync(string told)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"https://127.0.0.1:{reviews.Address.Port}/"));
            request.Headers.TryAddWithoutValidation("x-meshkit-peer-metadata", told);
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return response.Headers.Contains("x-meshkit-peer-metadata");
        }

        Assert.True(await RepliesAsync("w=productpage-v1;n=default;a=productpage;v=v1;s=productpage"));
        Assert.False(await RepliesAsync("w=productpage-v1;n=default;a=productpage;v=v1;s=productpage;r=0"));
    }

    [Fact]
    public async Task ResponseFlagsAnUpstreamSends_ReachNeitherTheAppNorTheCallersMetrics_RoutedOrPassedThrough()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = context =>
        {
            context.Response.Headers["x-meshkit-response-flags"] = "UH,spoofed";
            return Task.FromResult<IResult?>(null);
        };
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "the client knows reviews");
        using var source = Requests(productpage);

        // Routed through the mesh, and to an address outside the registry (passed through under ALLOW_ANY).
        foreach (var uri in new[] { new Uri("http://reviews/reviews/1"), new Uri(reviews.Address, "/reviews/1") })
        {
            using var response = await productpage.CreateClient().GetAsync(uri);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.False(response.Headers.Contains("x-meshkit-response-flags"), $"the upstream's flags reached the app ({uri})");
        }

        await Eventually.TrueAsync(() => source.GetMeasurementSnapshot().Sum(m => m.Value) == 2, "the client reported both calls");
        Assert.All(source.GetMeasurementSnapshot(), m => Assert.Equal("-", m.Tags["response_flags"]));
    }

    [Fact]
    public async Task PeerMetadata_FromAPlainTextCaller_IsNotBelieved()
    {
        var reviews = await StartAsync("reviews", "v1");
        using var destination = Requests(reviews);
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(reviews.Address, "/"));
        request.Headers.TryAddWithoutValidation("x-meshkit-peer-metadata", "w=admin-console;n=default;a=admin;v=v1;s=admin");

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Eventually.TrueAsync(() => destination.GetMeasurementSnapshot().Count == 1, "the server reported");
        var tags = Assert.Single(destination.GetMeasurementSnapshot()).Tags;
        Assert.Equal("unknown", tags["source_workload"]);
        Assert.Equal("unknown", tags["source_principal"]);
        Assert.Equal("unknown", tags["source_canonical_service"]);
        Assert.Equal("unknown", tags["source_cluster"]);
        Assert.Equal("none", tags["connection_security_policy"]);
    }

    [Fact]
    public async Task ARetriedCall_HasOneSpan_WithOneChildPerAttempt()
    {
        var backend = await StartAsync("reviews", "v1");
        var failures = 1;
        backend.Behavior = _ => Task.FromResult<IResult?>(Interlocked.Decrement(ref failures) >= 0 ? Results.StatusCode(503) : null);
        var client = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ name: all, retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }]
            """);
        await Eventually.TrueAsync(() => client.Snapshot.TryResolve("reviews", out var s) && s.Routes[0].Name == "all", "the route applies");
        var (_, mine) = await TraceAsync(async () =>
        {
            using var response = await client.CreateClient().GetAsync("http://reviews/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }, "MeshKit", "System.Net.Http");

        var call = Assert.Single(mine, s => s.OperationName == "MeshKit outbound");
        var attempts = mine.Where(s => s.OperationName == "MeshKit attempt").OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.All(attempts, a => Assert.Equal(call.SpanId, a.ParentSpanId));
        Assert.Equal([1, 2], attempts.Select(a => (int)a.GetTagItem("meshkit.attempt")!));
        Assert.All(mine.Where(s => s.Source.Name == "System.Net.Http"), h => Assert.Contains(attempts, a => a.SpanId == h.ParentSpanId));
    }

    [Fact]
    public async Task ARedirectedCall_HasOneSpan_EndingWithTheFinalStatus_EachHopASpanUnderIt()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = c => Task.FromResult<IResult?>(c.Request.Path == "/old" ? Results.Redirect("/new") : null);
        var client = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => client.Endpoints("reviews.default.svc.cluster.local") == 1, "reviews is known");
        var (parent, mine) = await TraceAsync(async () =>
        {
            using var response = await client.CreateClient().GetAsync("http://reviews/old");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }, "MeshKit");

        // The call's span ends with the status the application got; the redirect's hop is a span of its own under it,
        // each hop with its attempt.
        var calls = mine.Where(s => s.OperationName == "MeshKit outbound").ToList();
        Assert.Equal(2, calls.Count);
        var call = Assert.Single(calls, s => s.ParentSpanId == parent.SpanId);
        var hop = Assert.Single(calls, s => s.ParentSpanId == call.SpanId);
        Assert.Equal(200, call.GetTagItem("http.response.status_code"));
        Assert.Equal(200, hop.GetTagItem("http.response.status_code"));
        Assert.Single(mine, s => s.OperationName == "MeshKit attempt" && s.ParentSpanId == call.SpanId);
        Assert.Single(mine, s => s.OperationName == "MeshKit attempt" && s.ParentSpanId == hop.SpanId);
    }
}
