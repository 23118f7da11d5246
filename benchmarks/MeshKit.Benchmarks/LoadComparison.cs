using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.ControlPlane;
using MeshKit.OpenTelemetry;
using OpenTelemetry.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Grpc.Core;
using Grpc.Net.Client;
using MeshKit.Benchmarks.Grpc;

namespace MeshKit.Benchmarks;

/// <summary>
/// End to end on loopback, every path measured in the same run and interleaved round by round so machine drift
/// cancels out: (a) direct HttpClient → Kestrel; (b) the same call through MeshKit on both sides (routing, retries,
/// timeout, outlier detection, authorization policy, and metrics recorded by the OpenTelemetry SDK); (c) MeshKit with
/// automatic mutual TLS (the same, with peer metadata exchanged for Istio's labels); (d) plain TLS
/// without MeshKit; (e) two nginx reverse proxies standing in for a client and a server sidecar. Closed loop at
/// concurrency 1 (latency percentiles) and 32 (throughput), and CPU time per request of this process plus nginx's.
/// Named with `grpc`, the same comparison for a gRPC unary call (grpc-dotnet on both sides, HTTP/2 without TLS).
/// </summary>
internal static class LoadComparison
{
    /// <summary>Connections the apps served on: a path that opened one per request would show here, not only in its latency.</summary>
    internal static readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> Connections = new();

    private const string Config = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: bench-server }
        spec:
          host: bench-server
          trafficPolicy: { outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s } }
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: bench-server }
        spec:
          hosts: [bench-server]
          http:
          - match: [{ headers: { end-user: { exact: jason } } }]
            route: [{ destination: { host: bench-server } }]
            timeout: 5s
          - route: [{ destination: { host: bench-server } }]
            retries: { attempts: 2, perTryTimeout: 5s, retryOn: "5xx,connect-failure" }
            timeout: 10s
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: bench-secure }
        spec:
          hosts: [bench-secure]
          http:
          - route: [{ destination: { host: bench-secure } }]
            retries: { attempts: 2, perTryTimeout: 5s, retryOn: "5xx,connect-failure" }
            timeout: 10s
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: bench-server }
        spec:
          selector: { matchLabels: { app: bench-server } }
          rules: [{ to: [{ operation: { methods: [GET], paths: ["/bench/*"] } }] }]
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: bench-secure }
        spec:
          selector: { matchLabels: { app: bench-secure } }
          rules:
          - from: [{ source: { principals: ["cluster.local/ns/default/sa/bench-client"] } }]
            to: [{ operation: { methods: [GET], paths: ["/bench/*"] } }]
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: { name: bench-secure }
        spec:
          selector: { matchLabels: { app: bench-secure } }
          mtls: { mode: STRICT }
        """;

    // The gRPC pair's policies: those of the plain-text HTTP path, for a gRPC service.
    private const string GrpcConfig = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: bench-grpc }
        spec:
          host: bench-grpc
          trafficPolicy: { outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s } }
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: bench-grpc }
        spec:
          hosts: [bench-grpc]
          http:
          - route: [{ destination: { host: bench-grpc } }]
            retries: { attempts: 2, perTryTimeout: 5s, retryOn: "unavailable,connect-failure" }
            timeout: 10s
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: bench-grpc }
        spec:
          selector: { matchLabels: { app: bench-grpc } }
          rules: [{ to: [{ operation: { methods: [POST], paths: ["/bench.Bench/*"] } }] }]
        """;

    /// <summary>Gets or sets whether MeshKit's metrics are recorded (off only to measure what recording them costs: `--no-metrics`).</summary>
    internal static bool Metrics { get; set; } = true;

    /// <summary>
    /// Gets or sets whether the OpenTelemetry SDK aggregates Istio's standard metrics (`--istio-otel`) instead of MeshKit's
    /// own store served with <c>MapMeshMetrics()</c>, the way the docs recommend for Prometheus (the SDK still aggregates
    /// <c>meshkit.*</c>).
    /// </summary>
    internal static bool IstioThroughOpenTelemetry { get; set; }

    public static async Task<IReadOnlyList<Result>> RunAsync(TimeSpan slice, int rounds, TextWriter log, string? only = null)
    {
        var owned = new Stack<IAsyncDisposable>();
        var dir = Directory.CreateTempSubdirectory("meshkit-load-").FullName;

        // Metrics on, as a deployment has them: every mesh app serves Istio's standard metrics (both reporters) from
        // MeshKit's store (MapMeshMetrics), and one OpenTelemetry meter provider for the process aggregates MeshKit's
        // meter (meshkit.*; with --istio-otel, Istio's metrics too, instead of the store). It exports only when
        // disposed: the aggregation on the request path is what is measured.
        var exported = new List<Metric>();
        using var meters = (Metrics ? global::OpenTelemetry.Sdk.CreateMeterProviderBuilder().AddMeshInstrumentation(includeIstioMetrics: IstioThroughOpenTelemetry) : global::OpenTelemetry.Sdk.CreateMeterProviderBuilder())
            .AddReader(new BaseExportingMetricReader(new global::OpenTelemetry.Exporter.InMemoryExporter<Metric>(exported)))
            .Build();
        try
        {
            File.WriteAllText(Path.Combine(dir, "mesh.yaml"), Config);

            // The control plane builds its own host from the environment: keep its log to warnings in this process.
            Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");
            var controlPlane = ControlPlaneApp.Build([], o =>
            {
                o.ConfigDirectory = dir;
                o.CaDirectory = Path.Combine(dir, ".ca");
                o.Listen = "http://127.0.0.1:0";
                o.SecureListen = "https://127.0.0.1:0";
                o.AdminListen = string.Empty;
                o.StartupSyncDelay = TimeSpan.Zero;
            });
            await controlPlane.StartAsync();
            owned.Push(controlPlane);
            var cpAddresses = Addresses(controlPlane);
            var discovery = new Uri(cpAddresses.First(a => a.StartsWith("http://", StringComparison.Ordinal)));
            var secure = new Uri(cpAddresses.First(a => a.StartsWith("https://", StringComparison.Ordinal)));
            var ca = controlPlane.Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>();

            // (a) and (d): the app without MeshKit, over plain text and over TLS with a P-256 certificate.
            using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var serverCertificate = SelfSigned(serverKey);
            var direct = await StartAppAsync(null, null, serverCertificate);
            owned.Push(direct);
            var directAddresses = Addresses(direct);
            var directUri = new Uri(new Uri(directAddresses.First(a => a.StartsWith("http://", StringComparison.Ordinal))), "/bench/1");
            var tlsUri = new Uri(new Uri(directAddresses.First(a => a.StartsWith("https://", StringComparison.Ordinal))), "/bench/1");

            // (b): MeshKit on both sides, plain text.
            var meshServer = await StartAppAsync(discovery, o => o.ServiceName = "bench-server", null);
            owned.Push(meshServer);
            var meshClientApp = await StartAppAsync(discovery, o => o.ServiceName = "bench-caller", null);
            owned.Push(meshClientApp);

            // (c): MeshKit with certificates from the control plane's CA: STRICT mutual TLS and a principal-based policy.
            var secureServer = await StartAppAsync(secure, o =>
            {
                o.ServiceName = "bench-secure";
                o.ServiceAccount = "bench-secure";
                o.JoinToken = ca.CreateJoinToken("default", "bench-secure", TimeSpan.FromHours(1));
            }, null);
            owned.Push(secureServer);
            var secureClientApp = await StartAppAsync(secure, o =>
            {
                o.ServiceName = "bench-client";
                o.ServiceAccount = "bench-client";
                o.JoinToken = ca.CreateJoinToken("default", "bench-client", TimeSpan.FromHours(1));
            }, null);
            owned.Push(secureClientApp);

            var paths = new List<LoadPath>
            {
                LoadPath.Http("direct", new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = Timeout.InfiniteTimeSpan }), directUri),
                LoadPath.Http("meshkit", Factory(meshClientApp), new Uri("http://bench-server:9080/bench/1")),
                LoadPath.Http("meshkit_mtls", Factory(secureClientApp), new Uri("http://bench-secure:9080/bench/1")),
                LoadPath.Http("plain_tls", new HttpClient(TrustingOnly(serverCertificate)), tlsUri),
            };

            // `split` runs all of the diagnosis paths below; naming one of them runs it alone (with direct).
            string[] diagnosis = ["mesh_caller_only", "mesh_callee_only", "mtls_callee_only", "factory_plain"];
            var split = only == "split" || (only?.Split(',').Any(diagnosis.Contains) ?? false);
            if (split)
            {
                // Diagnosis: MeshKit on one side only, to tell the caller's cost from the callee's. The caller reaches
                // the plain app through a ServiceEntry; the plain client calls the mesh server's port directly.
                File.WriteAllText(Path.Combine(dir, "plain.yaml"), $$"""
                    apiVersion: networking.istio.io/v1
                    kind: ServiceEntry
                    metadata: { name: bench-plain }
                    spec:
                      hosts: [bench-plain]
                      ports: [{ number: 9080, name: http, protocol: HTTP }]
                      resolution: STATIC
                      endpoints: [{ address: 127.0.0.1, ports: { http: {{directUri.Port}} } }]
                    ---
                    apiVersion: networking.istio.io/v1
                    kind: VirtualService
                    metadata: { name: bench-plain }
                    spec:
                      hosts: [bench-plain]
                      http:
                      - route: [{ destination: { host: bench-plain } }]
                        retries: { attempts: 2, perTryTimeout: 5s, retryOn: "5xx,connect-failure" }
                        timeout: 10s
                    """);
                var meshServerUri = new Uri(new Uri(Addresses(meshServer).First(a => a.StartsWith("http://", StringComparison.Ordinal))), "/bench/1");
                paths.RemoveAll(p => p.Name is "meshkit_mtls");
                paths.Add(LoadPath.Http("mesh_caller_only", Factory(meshClientApp), new Uri("http://bench-plain:9080/bench/1")));
                paths.Add(LoadPath.Http("mesh_callee_only", new HttpClient(new SocketsHttpHandler()), meshServerUri));

                // MeshKit's mutual TLS on the callee's side only: a plain client presenting the caller's mesh
                // certificate to the secure app (to compare with plain_tls: same client stack, TLS both).
                var secureServerUri = new Uri($"https://127.0.0.1:{new Uri(Addresses(secureServer)[0]).Port}/bench/1");
                var mtlsClient = new SocketsHttpHandler();
                mtlsClient.SslOptions.ClientCertificates = [secureClientApp.Services.GetRequiredService<MeshKit.Security.WorkloadIdentity>().Current!.Certificate];
                mtlsClient.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true; // the mesh CA's chain; identity checked by the callee
                paths.Add(LoadPath.Http("mtls_callee_only", new HttpClient(mtlsClient), secureServerUri));

                // And the mesh client's own chain without MeshKit: an IHttpClientFactory client (its primary handler,
                // no logging handlers) to the plain app, to tell the factory's cost from MeshKit's.
                var factory = new ServiceCollection().AddHttpClient().ConfigureHttpClientDefaults(b => b.RemoveAllLoggers()).BuildServiceProvider();
                owned.Push(factory);
                paths.Add(LoadPath.Http("factory_plain", factory.GetRequiredService<IHttpClientFactory>().CreateClient("bench"), directUri));
                only = only == "split" ? null : only;
            }

            // `grpc` runs the gRPC pair: a unary call from grpc-dotnet's client to its server over HTTP/2 without TLS,
            // directly and through MeshKit on both sides (routing, retries, timeout, outlier detection, authorization
            // policy, Istio's metrics with the gRPC status and message counts). Not part of the default run.
            string[] grpcPaths = ["grpc_direct", "grpc_meshkit"];
            WebApplication? grpcServer = null;
            if (only?.Split(',').Any(n => n == "grpc" || grpcPaths.Contains(n)) == true)
            {
                File.WriteAllText(Path.Combine(dir, "grpc.yaml"), GrpcConfig);
                var grpcDirect = await StartGrpcAppAsync(null, null);
                owned.Push(grpcDirect);
                grpcServer = await StartGrpcAppAsync(discovery, o => o.ServiceName = "bench-grpc");
                owned.Push(grpcServer);
                var directChannel = GrpcChannel.ForAddress(Addresses(grpcDirect)[0], new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true } });
                // As AddGrpcClient makes a client: the factory's handler chain, without HttpClient's layer and timeout.
                var meshChannel = GrpcChannel.ForAddress("http://bench-grpc:9080", new GrpcChannelOptions { HttpHandler = meshClientApp.Services.GetRequiredService<IHttpMessageHandlerFactory>().CreateHandler("bench") });
                owned.Push(new Disposer(directChannel));
                owned.Push(new Disposer(meshChannel));
                paths.Add(LoadPath.Grpc("grpc_direct", new Bench.BenchClient(directChannel), Addresses(grpcDirect)[0]));
                paths.Add(LoadPath.Grpc("grpc_meshkit", new Bench.BenchClient(meshChannel), "http://bench-grpc:9080"));
                only = string.Join(',', only.Split(',').SelectMany(n => n == "grpc" ? grpcPaths : [n]));
            }

            // `only` names one path or several, comma-separated (direct always runs: every path is paired with it).
            var named = only?.Split(',');
            var wantNginx = !split && (named is null || named.Contains("two_nginx"));
            var nginx = wantNginx ? await Nginx.StartAsync(directUri, dir, log) : null;
            if (nginx is not null)
            {
                owned.Push(nginx);
                paths.Add(LoadPath.Http("two_nginx", new HttpClient(new SocketsHttpHandler()), nginx.Entry, nginx.CpuTime));
            }

            if (named is not null)
            {
                paths.RemoveAll(p => !named.Contains(p.Name) && p.Name != "direct");
            }

            // Every path must answer, and the mesh paths must have gone through the mesh (mTLS: with the caller's identity).
            await WaitUntilServedAsync(paths, log);

            // Metrics are on only if they were recorded: the warm-up calls must show in Istio's request counter, from both reporters.
            meters.ForceFlush();
            var reporters = IstioThroughOpenTelemetry
                ? exported.Where(m => m.Name == "istio_requests_total")
                    .SelectMany(m => { var found = new List<string>(); foreach (ref readonly var point in m.GetMetricPoints()) { foreach (var tag in point.Tags) { if (tag.Key == "reporter") { found.Add((string)tag.Value!); } } } return found; })
                    .ToHashSet()
                : [.. new[] { meshServer, meshClientApp, secureServer, secureClientApp, grpcServer }.OfType<WebApplication>().SelectMany(ServedReporters)];
            // (Only a run with a path through MeshKit on both sides can show both.)
            var bothSides = paths.Any(p => p.Name is "meshkit" or "meshkit_mtls" or "grpc_meshkit");
            if (Metrics && bothSides && !reporters.SetEquals(["source", "destination"]))
            {
                throw new InvalidOperationException($"the mesh paths recorded no Istio metrics from both reporters (seen: {string.Join(", ", reporters)})");
            }

            log.WriteLine(!Metrics ? "metrics: off (--no-metrics)" : IstioThroughOpenTelemetry
                ? "metrics: istio_requests_total recorded by both reporters (OpenTelemetry SDK)"
                : "metrics: istio_requests_total recorded by both reporters (MeshKit's store, MapMeshMetrics); meshkit.* by the OpenTelemetry SDK");

            // Warm-up, unmeasured: every path under load until the JIT's tiers have settled. Without it the first
            // slices run partly unoptimized code and pay the background recompilation on this process's CPU time: in
            // a one-round run the two paths measured first came out at half the others' throughput.
            var sampled = SliceChanged;
            SliceChanged = null;
            try
            {
                foreach (var path in paths)
                {
                    await RunSliceAsync(path, 32, TimeSpan.FromSeconds(2), new Samples());
                    await RunSliceAsync(path, 1, TimeSpan.FromSeconds(0.5), new Samples());
                }
            }
            finally
            {
                SliceChanged = sampled;
            }

            log.WriteLine("load warm-up done");
            var samples = paths.ToDictionary(p => p.Name, _ => new Samples());
            for (var round = 1; round <= rounds; round++)
            {
                foreach (var path in round % 2 == 1 ? paths : Enumerable.Reverse(paths))
                {
                    await RunSliceAsync(path, 1, slice, samples[path.Name]);
                    await RunSliceAsync(path, 32, slice, samples[path.Name]);
                }

                log.WriteLine($"load round {round}/{rounds} done");
            }

            var results = new List<Result>();
            foreach (var path in paths)
            {
                var s = samples[path.Name];
                s.Latencies.Sort();
                results.Add(new Result($"e2e.{path.Name}.c1.p50", Percentile(s.Latencies, 0.50), "µs"));
                results.Add(new Result($"e2e.{path.Name}.c1.p99", Percentile(s.Latencies, 0.99), "µs"));
                results.Add(new Result($"e2e.{path.Name}.c1.p999", Percentile(s.Latencies, 0.999), "µs"));
                results.Add(new Result($"e2e.{path.Name}.c32.rps", s.Requests32 / s.Seconds32, "1/s"));
                results.Add(new Result($"e2e.{path.Name}.cpu_per_request", s.CpuMicroseconds32 / s.Requests32, "µs",
                    path.ExtraCpu is null ? "this process (client and server)" : "this process plus the nginx processes"));
                results.Add(new Result($"e2e.{path.Name}.allocated_per_request", s.Allocated32 / s.Requests32, "B",
                    "managed allocation in this process (load generator, client and server) per request at c = 32"));
                results.Add(new Result($"e2e.{path.Name}.work_items_per_request", (double)s.WorkItems32 / s.Requests32, "items",
                    "thread-pool work items completed in this process per request at c = 32 (continuations dispatched to the pool, timers, drains)"));
                results.Add(new Result($"e2e.{path.Name}.c1.work_items_per_request", (double)s.WorkItems1 / s.Requests1, "items",
                    "thread-pool work items completed in this process per request at c = 1: each is a hand-off to a pool thread, which at c = 1 may have to be woken"));
                results.Add(new Result($"e2e.{path.Name}.connections", s.Connections, "connections", "most connections one slice was served on"));
                if (s.Errors > 0)
                {
                    results.Add(new Result($"e2e.{path.Name}.errors", s.Errors, "requests"));
                }
            }

            // Paired slices: a path against the one run next to it in every round (direct and MeshKit, plain TLS and
            // MeshKit's mTLS are neighbours in both orders), the median over rounds. The host's speed drifts between
            // slices (other tenants, frequency); neighbours see nearly the same host, so their ratio drifts less than
            // the ratio of totals over the whole run.
            var pairs = split
                ? paths.Where(p => p.Name != "direct").Select(p => (p.Name, "direct")).ToArray() // every diagnosis path against direct
                : new[] { ("meshkit", "direct"), ("meshkit_mtls", "plain_tls"), ("grpc_meshkit", "grpc_direct") };
            foreach (var (name, baseline) in pairs)
            {
                if (samples.TryGetValue(name, out var a) && samples.TryGetValue(baseline, out var b) && a.Rounds.Count == b.Rounds.Count && a.Rounds.Count > 0)
                {
                    var rounds2 = a.Rounds.Zip(b.Rounds).ToList();
                    results.Add(new Result($"e2e.paired.{name}_vs_{baseline}.c32.rps_ratio", Median(rounds2.Select(p => p.First.Rps / p.Second.Rps)), "×",
                        $"median over {rounds2.Count} rounds of the two slices' throughput ratio"));
                    results.Add(new Result($"e2e.paired.{name}_vs_{baseline}.cpu_added", Median(rounds2.Select(p => p.First.CpuPerRequest - p.Second.CpuPerRequest)), "µs",
                        $"median over {rounds2.Count} rounds of the two slices' CPU per request difference"));
                }
            }

            if (Metrics && !IstioThroughOpenTelemetry)
            {
                // A request thread whose ring is full records its report inline, under the store's lock: how often
                // that happened tells whether the drains keep up.
                var (deferred, inline) = PipelineBenchmarks.IstioReportPaths();
                results.Add(new Result("e2e.istio_reports.inline_share", deferred + inline == 0 ? 0 : (double)inline / (deferred + inline), "×",
                    "share of Istio reports (every mesh path, warm-up included) recorded inline on the request's thread because its ring was full"));
            }

            if (wantNginx && nginx is null)
            {
                log.WriteLine("two_nginx skipped: nginx is not installed and could not be installed");
            }

            return results;
        }
        finally
        {
            while (owned.TryPop(out var item))
            {
                await item.DisposeAsync();
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Builds the app, in the mesh when <paramref name="mesh"/> is given (serving Istio's metrics from MeshKit's store unless they go through the SDK).</summary>
    private static WebApplication BuildInMesh(WebApplicationBuilder builder, Uri? controlPlane, Action<MeshOptions>? mesh)
    {
        if (mesh is not null)
        {
            builder.Services.AddMesh(o =>
            {
                o.ControlPlaneAddress = controlPlane;
                o.ServicePort = 9080;
                o.InitialFetchTimeout = TimeSpan.FromSeconds(30);
                o.AccessLogSampling = 0;
                mesh(o);
            });
        }

        var app = builder.Build();
        if (mesh is not null && Metrics && !IstioThroughOpenTelemetry)
        {
            app.MapMeshMetrics();
        }

        return app;
    }

    /// <summary>A gRPC server answering the benchmark's unary call over HTTP/2 without TLS, in the mesh when <paramref name="mesh"/> is given.</summary>
    private static async Task<WebApplication> StartGrpcAppAsync(Uri? controlPlane, Action<MeshOptions>? mesh)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2));
        builder.Services.AddGrpc();
        var app = BuildInMesh(builder, controlPlane, mesh);
        app.MapGrpcService<BenchService>();
        await app.StartAsync();
        return app;
    }

    private sealed class BenchService : Bench.BenchBase
    {
        private static readonly Task<BenchReply> Ok = Task.FromResult(new BenchReply { Text = "ok" });

        public override Task<BenchReply> Call(BenchRequest request, ServerCallContext context)
        {
            var http = context.GetHttpContext();
            Connections.TryAdd(http.Connection.Id, 0);
            return request.Who && MeshIdentity.Get(http)?.PeerPrincipal is { Length: > 0 } principal
                ? Task.FromResult(new BenchReply { Text = $"ok {principal}" })
                : Ok;
        }
    }

    internal static HttpClient Factory(WebApplication app) => app.Services.GetRequiredService<IHttpClientFactory>().CreateClient("bench");

    internal static string[] Addresses(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToArray();

    internal static async Task<WebApplication> StartAppAsync(Uri? controlPlane, Action<MeshOptions>? mesh, X509Certificate2? tls)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        if (tls is null)
        {
            builder.WebHost.UseUrls("http://127.0.0.1:0");
        }
        else
        {
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Listen(IPAddress.Loopback, 0);
                k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(tls));
            });
        }

        if (mesh is not null)
        {
            // IHttpClientFactory's own logging handlers (a log scope per request) are not MeshKit: without them the
            // mesh client's chain is MeshKit alone, as (a) is a bare HttpClient.
            builder.Services.ConfigureHttpClientDefaults(b => b.RemoveAllLoggers());
        }

        var app = BuildInMesh(builder, controlPlane, mesh);
        app.MapGet("/bench/{id}", (HttpContext context) =>
        {
            Connections.TryAdd(context.Connection.Id, 0);
            // Who called, only when asked (the check before measuring): every measured call does the same work.
            return context.Request.QueryString.HasValue && context.Request.Query.ContainsKey("who") && MeshIdentity.Get(context)?.PeerPrincipal is { Length: > 0 } principal ? $"ok {principal}" : "ok";
        });
        await app.StartAsync();
        return app;
    }

    /// <summary>The reporters of the Istio request counts an app's store holds (as its <c>/stats/prometheus</c> shows them).</summary>
    private static IEnumerable<string> ServedReporters(WebApplication app)
    {
        var istio = app.Services.GetRequiredService<MeshKit.Telemetry.IstioMetrics>();
        istio.Flush();
        var text = new System.Text.StringBuilder();
        istio.Stats?.WriteTo(text);
        return System.Text.RegularExpressions.Regex.Matches(text.ToString(), "^istio_requests_total\\{reporter=\"(\\w+)\"", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value);
    }

    private static X509Certificate2 SelfSigned(ECDsa key)
    {
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A client that trusts the one certificate through a custom trust store: chain validation as usual, no shortcut.</summary>
    private static SocketsHttpHandler TrustingOnly(X509Certificate2 root)
    {
        var trusted = X509CertificateLoader.LoadCertificate(root.RawData);
        return new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { trusted },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
            },
        };
    }

    private static async Task WaitUntilServedAsync(IReadOnlyList<LoadPath> paths, TextWriter log)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        foreach (var path in paths)
        {
            while (true)
            {
                string body;
                try
                {
                    body = await path.Who();
                }
                catch (Exception e) when (e is HttpRequestException or RpcException && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(200);
                    continue;
                }

                var expected = path.Name == "meshkit_mtls" ? "ok cluster.local/ns/default/sa/bench-client" : "ok";
                if (body.StartsWith(expected, StringComparison.Ordinal))
                {
                    log.WriteLine($"{path.Name}: {path.Target} answers '{body}'");
                    break;
                }

                if (DateTime.UtcNow >= deadline)
                {
                    throw new InvalidOperationException($"{path.Name} answered '{body}', expected '{expected}'");
                }

                await Task.Delay(200);
            }
        }
    }

    /// <summary>Gets or sets what is told the path whose measured slice starts, and null when it ends (allocation sampling by path).</summary>
    internal static Action<string?>? SliceChanged { get; set; }

    private static async Task RunSliceAsync(LoadPath path, int concurrency, TimeSpan duration, Samples samples)
    {
        try
        {
            await RunMeasuredSliceAsync(path, concurrency, duration, samples);
        }
        finally
        {
            SliceChanged?.Invoke(null);
        }
    }

    private static async Task RunMeasuredSliceAsync(LoadPath path, int concurrency, TimeSpan duration, Samples samples)
    {
        Connections.Clear();
        // A short warm-up per slice so connection setup after the previous path's slice is not measured.
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => path.Call(new byte[256])));
        SliceChanged?.Invoke(path.Name);
        var cpuBefore = Cpu(path);
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var workItemsBefore = ThreadPool.CompletedWorkItemCount;
        var started = Stopwatch.GetTimestamp();
        var end = started + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var perWorker = await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            var latencies = new List<double>(concurrency == 1 ? 65536 : 0);
            var count = 0;
            var errors = 0;
            var buffer = new byte[256];
            while (Stopwatch.GetTimestamp() < end)
            {
                var t0 = Stopwatch.GetTimestamp();
                try
                {
                    if (!await path.Call(buffer))
                    {
                        errors++;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or RpcException)
                {
                    errors++;
                }

                if (concurrency == 1)
                {
                    latencies.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
                }

                count++;
            }

            return (latencies, count, errors);
        }));
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cpu = (Cpu(path) - cpuBefore).TotalMicroseconds;
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        var workItems = ThreadPool.CompletedWorkItemCount - workItemsBefore;
        lock (samples)
        {
            foreach (var (latencies, count, errors) in perWorker)
            {
                samples.Latencies.AddRange(latencies);
                samples.Errors += errors;
                if (concurrency > 1)
                {
                    samples.Requests32 += count;
                }
                else
                {
                    samples.Requests1 += count;
                }
            }

            if (concurrency == 1)
            {
                samples.WorkItems1 += workItems;
            }

            samples.Connections = Math.Max(samples.Connections, Connections.Count);
            if (concurrency > 1)
            {
                samples.Seconds32 += elapsed;
                samples.CpuMicroseconds32 += cpu;
                samples.Allocated32 += allocated;
                samples.WorkItems32 += workItems;
                var requests = perWorker.Sum(w => w.count);
                samples.Rounds.Add((requests / elapsed, requests == 0 ? double.NaN : cpu / requests));
            }
        }
    }

    private static TimeSpan Cpu(LoadPath path)
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime + (path.ExtraCpu?.Invoke() ?? TimeSpan.Zero);
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToList();
        return sorted.Count == 0 ? double.NaN : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];

    /// <summary>
    /// One way to make the call: <see cref="Call"/> makes it and reads the whole answer (with the worker's buffer),
    /// true when it succeeded; <see cref="Who"/> asks the server who called (the check before measuring).
    /// </summary>
    private sealed record LoadPath(string Name, Func<byte[], Task<bool>> Call, Func<Task<string>> Who, string Target, Func<TimeSpan>? ExtraCpu = null)
    {
        public static LoadPath Http(string name, HttpClient client, Uri uri, Func<TimeSpan>? extraCpu = null) => new(
            name,
            async buffer =>
            {
                using var response = await client.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead);
                await using var body = await response.Content.ReadAsStreamAsync();
                while (await body.ReadAsync(buffer) > 0)
                {
                }

                return response.IsSuccessStatusCode;
            },
            () => client.GetStringAsync(new Uri(uri, "?who")),
            uri.ToString(),
            extraCpu);

        public static LoadPath Grpc(string name, Bench.BenchClient client, string target) => new(
            name,
            async _ => (await client.CallAsync(Measured)).Text.Length > 0,
            async () => (await client.CallAsync(new BenchRequest { Who = true })).Text,
            target);

        private static readonly BenchRequest Measured = new();
    }

    private sealed class Disposer(IDisposable disposable) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            disposable.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class Samples
    {
        public List<double> Latencies { get; } = [];

        public long Requests32 { get; set; }

        public double Seconds32 { get; set; }

        public double CpuMicroseconds32 { get; set; }

        public double Allocated32 { get; set; }

        public long WorkItems32 { get; set; }

        public long Requests1 { get; set; }

        public long WorkItems1 { get; set; }

        public long Errors { get; set; }

        public int Connections { get; set; }

        /// <summary>Gets each round's c = 32 slice: requests per second and CPU per request, for pairing with the neighbour's.</summary>
        public List<(double Rps, double CpuPerRequest)> Rounds { get; } = [];
    }

    /// <summary>
    /// Two nginx reverse proxies on loopback, one process each with keep-alive upstreams: the client's sidecar
    /// (entry) forwards to the server's sidecar, which forwards to the app — the path a sidecar mesh adds.
    /// </summary>
    private sealed class Nginx : IAsyncDisposable
    {
        private readonly Process[] _processes;

        private Nginx(Process[] processes, Uri entry)
        {
            _processes = processes;
            Entry = entry;
        }

        public Uri Entry { get; }

        private static async Task AptGetAsync(string arguments)
        {
            try
            {
                using var apt = Process.Start(new ProcessStartInfo("apt-get", arguments)
                {
                    Environment = { ["DEBIAN_FRONTEND"] = "noninteractive" },
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                });
                if (apt is not null)
                {
                    // Both streams read at once: a full pipe would stop apt-get.
                    await Task.WhenAll(apt.StandardOutput.ReadToEndAsync(), apt.StandardError.ReadToEndAsync(), apt.WaitForExitAsync());
                }
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // No apt-get on this machine: the path is skipped with its message.
            }
        }

        public static async Task<Nginx?> StartAsync(Uri app, string dir, TextWriter log)
        {
            var binary = Find();
            if (binary is null)
            {
                log.WriteLine("nginx not found; installing it from the distribution's packages (apt-get install nginx-light)");
                await AptGetAsync("install -y --no-install-recommends nginx-light");
                if (Find() is null)
                {
                    // A fresh machine's package lists may be empty or stale: refreshed once, as .ci/run does for etcd.
                    await AptGetAsync("update");
                    await AptGetAsync("install -y --no-install-recommends nginx-light");
                }

                binary = Find();
                if (binary is null)
                {
                    return null;
                }
            }

            var serverSidecar = FreePort();
            var clientSidecar = FreePort();
            var server = Start(binary, Path.Combine(dir, "nginx-server"), serverSidecar, $"127.0.0.1:{app.Port}");
            var client = Start(binary, Path.Combine(dir, "nginx-client"), clientSidecar, $"127.0.0.1:{serverSidecar}");
            var entry = new Uri($"http://127.0.0.1:{clientSidecar}{app.PathAndQuery}");
            await Task.Delay(500);
            return new Nginx([server, client], entry);
        }

        /// <summary>CPU time of both nginx masters and their workers.</summary>
        public TimeSpan CpuTime()
        {
            var ticks = 0L;
            foreach (var master in _processes)
            {
                ticks += ProcStat(master.Id);
                foreach (var child in Directory.EnumerateDirectories("/proc"))
                {
                    if (int.TryParse(Path.GetFileName(child), out var pid) && ParentOf(pid) == master.Id)
                    {
                        ticks += ProcStat(pid);
                    }
                }
            }

            return TimeSpan.FromSeconds(ticks / 100.0);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                process.Dispose();
            }
        }

        private static string? Find() =>
            new[] { "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx" }.FirstOrDefault(File.Exists);

        private static Process Start(string binary, string prefix, int port, string upstream)
        {
            Directory.CreateDirectory(Path.Combine(prefix, "logs"));
            File.WriteAllText(Path.Combine(prefix, "nginx.conf"), $$"""
                worker_processes 1;
                daemon off;
                pid {{prefix}}/nginx.pid;
                error_log {{prefix}}/logs/error.log warn;
                events { worker_connections 1024; }
                http {
                  access_log off;
                  client_body_temp_path {{prefix}}/body;
                  proxy_temp_path {{prefix}}/proxy;
                  fastcgi_temp_path {{prefix}}/fastcgi;
                  uwsgi_temp_path {{prefix}}/uwsgi;
                  scgi_temp_path {{prefix}}/scgi;
                  keepalive_requests 100000;
                  upstream next { server {{upstream}}; keepalive 64; }
                  server {
                    listen 127.0.0.1:{{port}};
                    location / {
                      proxy_pass http://next;
                      proxy_http_version 1.1;
                      proxy_set_header Connection "";
                    }
                  }
                }
                """);
            return Process.Start(new ProcessStartInfo(binary, ["-p", prefix, "-c", Path.Combine(prefix, "nginx.conf")]))
                ?? throw new InvalidOperationException("nginx did not start");
        }

        private static int FreePort()
        {
            using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        private static string[]? Fields(int pid)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            }
            catch (IOException)
            {
                return null;
            }
        }

        private static int ParentOf(int pid) => Fields(pid) is { } f ? int.Parse(f[1], CultureInfo.InvariantCulture) : -1;

        // utime and stime (fields 14 and 15 of /proc/pid/stat), in clock ticks of 1/100 s.
        private static long ProcStat(int pid) => Fields(pid) is { } f
            ? long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)
            : 0;
    }
}
