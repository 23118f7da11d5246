using System.Net;
using BenchmarkDotNet.Attributes;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Http;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Benchmarks;

/// <summary>
/// The whole in-process path of one call: the caller's MeshHandler, an in-memory transport that turns the request
/// into an ASP.NET Core <see cref="HttpContext"/>, the callee's MeshMiddleware (authorization policy; no meter listener) and
/// the app. <see cref="Plain"/> is the same transport and app without MeshKit, so the difference is what the mesh adds
/// on both sides.
/// </summary>
[MemoryDiagnoser]
public class PipelineBenchmarks
{
    private HttpMessageInvoker _plain = null!;
    private HttpMessageInvoker _mesh = null!;
    private HttpMessageInvoker _meshWithMetrics = null!;
    private ServiceProvider _services = null!;
    private ServiceProvider _servicesWithMetrics = null!;

    [GlobalSetup]
    public void Setup()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy: { outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s } }
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ headers: { end-user: { exact: jason } } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route:
                - { destination: { host: reviews, subset: v1 }, weight: 80 }
                - { destination: { host: reviews, subset: v2 }, weight: 20 }
                retries: { attempts: 2, perTryTimeout: 2s, retryOn: "5xx,connect-failure" }
                timeout: 10s
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: reviews-viewers }
            spec:
              selector: { matchLabels: { app: reviews } }
              action: ALLOW
              rules:
              - to: [{ operation: { methods: [GET], paths: ["/reviews/*"] } }]
            """;
        var parsed = ConfigParser.Parse(yaml, "pipeline.yaml");
        var workloads = new List<WorkloadAnnouncement>();
        for (var v = 1; v <= 2; v++)
        {
            var w = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = $"reviews-{v}", Address = $"10.0.0.{v}" };
            w.Labels["version"] = $"v{v}";
            w.Labels["app"] = "reviews";
            w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
            workloads.Add(w);
        }

        var labels = new Dictionary<string, string> { ["app"] = "reviews", ["version"] = "v1" };
        var view = MeshCompiler.Compile(new ConfigSet(parsed.Resources), workloads).ViewFor("default", labels);

        static Task App(HttpContext context)
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        }

        // The same mesh twice: as it runs without a metrics reader, and with Istio's metrics recorded into MeshKit's
        // store on both sides (what `MapMeshMetrics` turns on), so that what recording costs on the request path is
        // measured here, where the host's noise does not reach it.
        (_services, _mesh) = Build(view, labels, istioMetrics: false);
        (_servicesWithMetrics, _meshWithMetrics) = Build(view, labels, istioMetrics: true);
        _plain = new HttpMessageInvoker(new InMemoryTransport(App));

        static (ServiceProvider, HttpMessageInvoker) Build(ResourceView view, Dictionary<string, string> labels, bool istioMetrics)
        {
            var services = new ServiceCollection();
            services.AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build());
            services.AddLogging();
            services.AddMetrics();
            services.AddMesh(o =>
            {
                o.ServiceName = "reviews";
                o.Namespace = "default";
                o.Labels["version"] = "v1";

                // Required by validation; nothing connects to it, as no host runs the sync service here.
                o.ControlPlaneAddress = new Uri("http://127.0.0.1:15010");
            });
            var built = services.BuildServiceProvider();
            built.GetRequiredService<MeshSnapshotProvider>().PublishFromFile(SnapshotBuilder.Build(view.Resources, new SourceWorkload("default", labels), "1", ready: true));
            if (istioMetrics)
            {
                built.GetRequiredService<Telemetry.IstioMetrics>().EnableStats();
            }

            var middleware = ActivatorUtilities.CreateInstance<MeshMiddleware>(built, (RequestDelegate)App);
            var handler = ActivatorUtilities.CreateInstance<MeshHandler>(built);
            return (built, new HttpMessageInvoker(WithInner(handler, new InMemoryTransport(middleware.InvokeAsync))));
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _services.Dispose();
        _servicesWithMetrics.Dispose();
    }

    [Benchmark(Baseline = true)]
    public async Task<HttpStatusCode> Plain()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://10.0.0.1:8080/reviews/1");
        using var response = await _plain.SendAsync(request, CancellationToken.None);
        return response.StatusCode;
    }

    [Benchmark]
    public async Task<HttpStatusCode> Mesh()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews:9080/reviews/1");
        using var response = await _mesh.SendAsync(request, CancellationToken.None);
        return response.StatusCode;
    }

    /// <summary>The same call with Istio's standard metrics recorded by both sides (into MeshKit's store).</summary>
    [Benchmark]
    public async Task<HttpStatusCode> MeshWithIstioMetrics()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews:9080/reviews/1");
        using var response = await _meshWithMetrics.SendAsync(request, CancellationToken.None);
        return response.StatusCode;
    }

    /// <summary>Istio's metrics as the metrics variant's store would serve them: proof that both sides recorded.</summary>
    internal string IstioStatsText()
    {
        var istio = _servicesWithMetrics.GetRequiredService<Telemetry.IstioMetrics>();
        istio.Flush();
        var text = new System.Text.StringBuilder();
        istio.Stats!.WriteTo(text);
        return text.ToString();
    }

    /// <summary>How the reports were recorded so far: off the request path (deferred), or inline because a ring was full.</summary>
    internal static (long Deferred, long Inline) IstioReportPaths()
    {
        long deferred = 0, inline = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Name == "meshkit.telemetry.istio_reports")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "path")
                {
                    deferred += (string?)tag.Value == "deferred" ? value : 0;
                    inline += (string?)tag.Value == "inline" ? value : 0;
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return (deferred, inline);
    }

    private static DelegatingHandler WithInner(DelegatingHandler handler, HttpMessageHandler inner)
    {
        handler.InnerHandler = inner;
        return handler;
    }

    private sealed class BodyDetection(bool canHaveBody) : IHttpRequestBodyDetectionFeature
    {
        public static readonly BodyDetection None = new(false);
        public static readonly BodyDetection Some = new(true);

        public bool CanHaveBody => canHaveBody;
    }

    /// <summary>Carries a request to an ASP.NET Core pipeline without sockets: method, URL and headers in, status out.</summary>
    private sealed class InMemoryTransport(RequestDelegate app) : HttpMessageHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var context = new DefaultHttpContext();
            var uri = request.RequestUri!;
            context.Request.Method = request.Method.Method;
            context.Request.Scheme = uri.Scheme;
            context.Request.Host = new HostString(uri.Host, uri.Port);
            context.Request.Path = uri.AbsolutePath;
            context.Request.QueryString = new QueryString(uri.Query);
            context.Connection.LocalPort = uri.Port;
            context.Connection.RemoteIpAddress = IPAddress.Loopback;
            // As Kestrel tells: a request without a body says so (the GETs here have none).
            context.Features.Set<IHttpRequestBodyDetectionFeature>(request.Content is null ? BodyDetection.None : BodyDetection.Some);
            // As a real client writes them: the values as set, without parsing them into typed values first.
            foreach (var header in request.Headers.NonValidated)
            {
                context.Request.Headers[header.Key] = header.Value.Count == 1 ? header.Value.ToString() : header.Value.ToArray();
            }

            // HTTP/1.1 always carries Host (the client writes it from the URI when no header sets it).
            if (!request.Headers.NonValidated.Contains("Host"))
            {
                context.Request.Headers.Host = uri.Authority;
            }

            await app(context);

            // A client transport gives every response a content, with the Content-Length the server sent (0 here),
            // already parsed: it reads it to frame the body.
            var content = new StreamContent(Stream.Null);
            content.Headers.ContentLength = 0;
            return new HttpResponseMessage((HttpStatusCode)context.Response.StatusCode) { RequestMessage = request, Content = content };
        }
    }
}
