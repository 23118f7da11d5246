using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using MeshKit.OpenTelemetry;
using OpenTelemetry.Metrics;
using MeshKit.Tests.Infrastructure;
using MeshKit.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Telemetry;

/// <summary>Istio's standard metrics aggregated by MeshKit and served in Prometheus's text format.</summary>
public sealed partial class IstioStatsTests : MeshTestBase
{
    private static readonly PeerMetadata Caller = new("productpage-v1", "default", "productpage", "v1", "productpage");
    private static readonly PeerMetadata Server = new("reviews-v2", "default", "reviews", "v2", "reviews");

    private static RequestReport Report(string reporter = "source", int status = 200, double milliseconds = 1.5, long responseBytes = 180, string service = "reviews.default.svc.cluster.local", PeerMetadata? source = null) =>
        new(reporter, source ?? Caller, null, Server, null, service, "http", status, null, string.Empty, "unknown", milliseconds, 0, responseBytes);

    private static List<Sample> Exposition(IstioStats stats)
    {
        var text = new StringBuilder();
        stats.WriteTo(text);
        return Sample.Parse(text.ToString());
    }

    [Fact]
    public async Task BothReporters_AreServedInPrometheusFormat_WithIstiosLabelsAndBuckets_AndScrapesAreNotCounted()
    {
        static void Map(WebApplication app) => app.MapMeshMetrics();
        var reviews = await StartSecureAsync("reviews", "bookinfo-reviews", app: Map);
        reviews.Behavior = context => Task.FromResult<IResult?>(context.Request.Path == "/unavailable" ? Results.StatusCode(503) : null);
        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage", app: Map);
        await KnowsIdentityAsync(productpage);

        long body = 0;
        var client = productpage.CreateClient();
        for (var i = 0; i < 2; i++)
        {
            using var ok = await client.GetAsync("http://reviews/reviews/1");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            body += ok.Content.Headers.ContentLength!.Value;
        }

        using (var unavailable = await client.GetAsync("http://reviews/unavailable"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, unavailable.StatusCode);
        }

        // A scrape sees every call that ended before it: no waiting for a drain. The server's report is written when its
        // response has gone, so the caller may read the answer first: the server's side is awaited.
        using var scraper = new HttpClient();
        var caller = await ScrapeAsync(scraper, productpage);
        List<Sample> server = [];
        await Eventually.TrueAsync(async () => (server = await ScrapeAsync(scraper, reviews)).Any(s => s.Name == "istio_requests_total" && s.Labels["response_code"] == "503"), "the server reported the 503");

        var ok200 = caller.Single(s => s.Name == "istio_requests_total" && s.Labels["response_code"] == "200");
        Assert.Equal(2, ok200.Value);
        Assert.Equal(25, ok200.Labels.Count);
        Assert.Equal("source", ok200.Labels["reporter"]);
        Assert.Equal("productpage-v1", ok200.Labels["source_workload"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/bookinfo-productpage", ok200.Labels["source_principal"]);
        Assert.Equal("reviews-v1", ok200.Labels["destination_workload"]);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/bookinfo-reviews", ok200.Labels["destination_principal"]);
        Assert.Equal("reviews.default.svc.cluster.local", ok200.Labels["destination_service"]);
        Assert.Equal("-", ok200.Labels["response_flags"]);
        Assert.Equal(1, caller.Single(s => s.Name == "istio_requests_total" && s.Labels["response_code"] == "503").Value);

        // Histograms: cumulative buckets on Istio's bounds, +Inf equal to the count, the sum of what was measured.
        var buckets = caller.Where(s => s.Name == "istio_request_duration_milliseconds_bucket" && s.Labels["response_code"] == "200").ToList();
        Assert.Equal(["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"], buckets.Select(b => b.Labels["le"]));
        Assert.Equal(buckets.Select(b => b.Value).Order(), buckets.Select(b => b.Value));
        Assert.Equal(2, buckets[^1].Value);
        Assert.Equal(2, caller.Single(s => s.Name == "istio_request_duration_milliseconds_count" && s.Labels["response_code"] == "200").Value);
        Assert.True(caller.Single(s => s.Name == "istio_request_duration_milliseconds_sum" && s.Labels["response_code"] == "200").Value > 0);
        Assert.Equal(body, caller.Single(s => s.Name == "istio_response_bytes_sum" && s.Labels["response_code"] == "200").Value);

        var served = server.Single(s => s.Name == "istio_requests_total" && s.Labels["response_code"] == "200");
        Assert.Equal(2, served.Value);
        Assert.Equal("destination", served.Labels["reporter"]);
        Assert.Equal("productpage-v1", served.Labels["source_workload"]);
        Assert.Equal("mutual_tls", served.Labels["connection_security_policy"]);

        // The scrapes themselves (plain text, so their caller would be "unknown") are not calls of the mesh.
        server = await ScrapeAsync(scraper, reviews);
        Assert.DoesNotContain(server, s => s.Labels.GetValueOrDefault("source_workload") == "unknown");
        Assert.Equal(3, server.Where(s => s.Name == "istio_requests_total").Sum(s => s.Value));
    }

    [Fact]
    public async Task ACallRoutedToAnotherService_IsReportedAgainstTheServiceThatAnswered()
    {
        // Istio reports the upstream cluster's service: a VirtualService of reviews sending its calls to ratings makes
        // them ratings' calls. Over plain text, the destination's labels are what the control plane says of it.
        static void Map(WebApplication app) => app.MapMeshMetrics();
        await StartAsync("reviews", "v1");
        await StartAsync("ratings", "v1");
        var productpage = await StartAsync("productpage", "v1", app: Map);
        ControlPlane.WriteConfig("reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: ratings } }] }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.TryResolve("reviews", out var s) && s.Routes is [{ Targets: [{ Host: "ratings.default.svc.cluster.local", Endpoints.Endpoints.Length: 1 }] }], "the route applies");

        var answer = await productpage.CreateClient().GetStringAsync("http://reviews/reviews/1");
        Assert.StartsWith("ratings|v1|", answer, StringComparison.Ordinal);

        using var scraper = new HttpClient();
        var call = Assert.Single(await ScrapeAsync(scraper, productpage), s => s.Name == "istio_requests_total");
        Assert.Equal("ratings.default.svc.cluster.local", call.Labels["destination_service"]);
        Assert.Equal("ratings", call.Labels["destination_service_name"]);
        Assert.Equal("ratings-v1", call.Labels["destination_workload"]);
        Assert.Equal("default", call.Labels["destination_service_namespace"]);
    }

    [Fact]
    public async Task BodiesWithoutAContentLength_AreSizedByTheBytesThatWentThrough_OnTheServersSide()
    {
        // Chunked both ways, as ASP.NET Core's JSON results and a client's streamed uploads go: Envoy counts the body
        // bytes it received and sent, where a declared Content-Length would say 0.
        static void Map(WebApplication app) => app.MapMeshMetrics();
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging, app: Map);
        reviews.Behavior = async context =>
        {
            long read = 0;
            if (context.Request.Path == "/pipe")
            {
                while (true)
                {
                    var result = await context.Request.BodyReader.ReadAsync();
                    read += result.Buffer.Length;
                    context.Request.BodyReader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
            }
            else
            {
                var buffer = new byte[100];
                int n;
                while ((n = await context.Request.Body.ReadAsync(buffer)) > 0)
                {
                    read += n;
                }
            }

            // 700 bytes through the pipe, flushed (the headers go: chunked), then 300 through the stream.
            context.Response.Headers["x-read"] = read.ToString(CultureInfo.InvariantCulture);
            await context.Response.BodyWriter.WriteAsync(new byte[700]);
            await context.Response.BodyWriter.FlushAsync();
            await context.Response.Body.WriteAsync(new byte[300]);
            return Results.Empty;
        };
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging, app: Map);
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "reviews is known");

        var client = productpage.CreateClient();
        foreach (var path in new[] { "/stream", "/pipe" })
        {
            using var response = await client.PostAsync("http://reviews" + path, new UnknownLengthContent(new byte[1234]));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.TransferEncodingChunked);
            Assert.Equal("1234", response.Headers.GetValues("x-read").Single());
            Assert.Equal(1000, (await response.Content.ReadAsByteArrayAsync()).Length);
        }

        using var scraper = new HttpClient();
        List<Sample> server = [];
        await Eventually.TrueAsync(async () => (server = await ScrapeAsync(scraper, reviews)).Any(s => s.Name == "istio_requests_total" && s.Value == 2), "the server reported both calls");
        Assert.Equal(2 * 1234, server.Single(s => s.Name == "istio_request_bytes_sum" && s.Labels["reporter"] == "destination").Value);
        Assert.Equal(2 * 1000, server.Single(s => s.Name == "istio_response_bytes_sum" && s.Labels["reporter"] == "destination").Value);

        var entries = AccessLogEntries(reviews);
        Assert.Equal(2, entries.Count(e => e.StartsWith("inbound POST", StringComparison.Ordinal) && e.Contains("received=1234 sent=1000", StringComparison.Ordinal)));

        // The caller counts the upload it sent, as Envoy counts what it received from the application.
        var caller = await ScrapeAsync(scraper, productpage);
        Assert.Equal(2 * 1234, caller.Single(s => s.Name == "istio_request_bytes_sum" && s.Labels["reporter"] == "source").Value);
        Assert.Equal(2 * 1000, caller.Single(s => s.Name == "istio_response_bytes_sum" && s.Labels["reporter"] == "source").Value);
        Assert.Equal(2, AccessLogEntries(productpage).Count(e => e.StartsWith("POST reviews/", StringComparison.Ordinal) && e.Contains("sent=1234 received=1000", StringComparison.Ordinal)));

        // HEAD: the application writes its body as for GET, and the server sends none.
        using (var head = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "http://reviews/stream")))
        {
            Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        }

        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(e => e.StartsWith("inbound HEAD", StringComparison.Ordinal)), "the HEAD was logged");
        Assert.Contains("received=0 sent=0", AccessLogEntries(reviews).Single(e => e.StartsWith("inbound HEAD", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnHttpCall_IsReportedByItsCaller_WhenItsBodyEnds_WithTheBytesReceived_AndWhatCutIt()
    {
        // Envoy reports a stream when it completes: a streamed body's bytes (it declares no length), the time to its
        // last byte, UT when the route timeout cut the body after the headers, DC when the application gave it up.
        static void Map(WebApplication app) => app.MapMeshMetrics();
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = async context =>
        {
            if (context.Request.Path == "/known")
            {
                context.Response.ContentLength = 1000;
            }

            await context.Response.Body.WriteAsync(new byte[700], context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted); // the headers go
            var pause = context.Request.Path == "/stall" ? TimeSpan.FromSeconds(30) : TimeSpan.FromMilliseconds(400);
            await Task.Delay(pause, context.RequestAborted);
            await context.Response.Body.WriteAsync(new byte[300], context.RequestAborted);
            return Results.Empty;
        };
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging, app: Map);
        ControlPlane.WriteConfig("reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - { name: stall, match: [{ uri: { exact: /stall } }], timeout: 3s, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }
              - { name: rest, route: [{ destination: { host: reviews } }] }
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.TryResolve("reviews", out var s) && s.Routes.Length == 2 && productpage.Endpoints(ReviewsHost) == 1, "the routes apply");
        var http = productpage.CreateClient();

        // Streamed, buffered by HttpClient: 1,000 bytes and the 400 ms the body took after its headers.
        Assert.Equal(1000, (await http.GetByteArrayAsync("http://reviews/streamed")).Length);

        // Of declared length, read to its last declared byte and disposed: complete.
        using (var known = await http.GetAsync("http://reviews/known", HttpCompletionOption.ResponseHeadersRead))
        {
            await using var body = await known.Content.ReadAsStreamAsync();
            body.ReadExactly(new byte[1000]);
        }

        // Cut by the route timeout after its headers came: the call fails, the response was a 200 cut short.
        var cut = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("http://reviews/stall"));
        Assert.IsType<HttpIOException>(cut.InnerException);

        // Given up: the headers read, the body disposed unread.
        using (var unread = await http.GetAsync("http://reviews/streamed", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, unread.StatusCode);
        }

        using var scraper = new HttpClient();
        var samples = (await ScrapeAsync(scraper, productpage)).Where(s => s.Labels.GetValueOrDefault("reporter") == "source").ToList();
        double Value(string name, string flags) => samples.Single(s => s.Name == name && s.Labels["response_flags"] == flags).Value;
        Assert.Equal(2, Value("istio_requests_total", "-"));
        Assert.Equal(2000, Value("istio_response_bytes_sum", "-"));
        Assert.True(Value("istio_request_duration_milliseconds_sum", "-") >= 790, "the two bodies' 400 ms are in the caller's durations");
        Assert.Equal(700, Value("istio_response_bytes_sum", "UT"));
        Assert.Equal("200", samples.Single(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "UT").Labels["response_code"]);
        Assert.Equal(0, Value("istio_response_bytes_sum", "DC"));
        Assert.Equal("200", samples.Single(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "DC").Labels["response_code"]);

        var entries = AccessLogEntries(productpage);
        Assert.Contains(entries, e => e.StartsWith("GET reviews/streamed route=rest ", StringComparison.Ordinal) && e.Contains(" 200 - ", StringComparison.Ordinal) && e.Contains(" received=1000 ", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.StartsWith("GET reviews/known route=rest ", StringComparison.Ordinal) && e.Contains(" 200 - ", StringComparison.Ordinal) && e.Contains(" received=1000 ", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.StartsWith("GET reviews/stall route=stall ", StringComparison.Ordinal) && e.Contains(" 200 UT ", StringComparison.Ordinal) && e.Contains(" received=700 ", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.StartsWith("GET reviews/streamed route=rest ", StringComparison.Ordinal) && e.Contains(" 200 DC ", StringComparison.Ordinal) && e.Contains(" received=0 ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ACompressedJsonResult_IsServedWhole_AndSizedAsSent()
    {
        // ASP.NET Core's response compression after the mesh's middleware wraps the metered body: the JSON serializer
        // writes to the compressor, which writes to the meter, so the size is the compressed bytes that went out.
        static void Map(WebApplication app)
        {
            app.UseResponseCompression();
            app.MapMeshMetrics();
        }

        var items = Enumerable.Range(0, 500).Select(i => new { id = i, name = "item " + i }).ToArray();
        var reviews = await StartAsync("reviews", "v1", services: s => s.AddResponseCompression(), app: Map);
        reviews.Behavior = _ => Task.FromResult<IResult?>(Results.Json(items));
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "reviews is known");

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/items") { Headers = { { "Accept-Encoding", "gzip" } } };
        using var response = await productpage.CreateClient().SendAsync(request);
        Assert.Equal("gzip", Assert.Single(response.Content.Headers.ContentEncoding));
        var compressed = await response.Content.ReadAsByteArrayAsync();
        using var json = new System.IO.Compression.GZipStream(new MemoryStream(compressed), System.IO.Compression.CompressionMode.Decompress);
        using var document = await System.Text.Json.JsonDocument.ParseAsync(json);
        Assert.Equal(500, document.RootElement.GetArrayLength());
        Assert.Equal("item 499", document.RootElement[499].GetProperty("name").GetString());

        using var scraper = new HttpClient();
        List<Sample> server = [];
        await Eventually.TrueAsync(async () => (server = await ScrapeAsync(scraper, reviews)).Any(s => s.Name == "istio_requests_total"), "the server reported the call");
        Assert.Equal(compressed.Length, server.Single(s => s.Name == "istio_response_bytes_sum" && s.Labels["reporter"] == "destination").Value);
    }

    [Fact]
    public async Task AFileSentByTheServer_IsSizedByWhatWasSent()
    {
        // Results.File goes through the body feature's SendFileAsync (no write the meter sees): a whole file, then a range.
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, new byte[5000]);
            static void Map(WebApplication app) => app.MapMeshMetrics();
            var reviews = await StartAsync("reviews", "v1", services: AccessLogging, app: Map);
            reviews.Behavior = context => Task.FromResult<IResult?>(Results.File(file, "application/octet-stream", enableRangeProcessing: true));

            using var client = new HttpClient();
            var address = new Uri(reviews.Address, "/file");
            Assert.Equal(5000, (await client.GetByteArrayAsync(address)).Length);
            using var range = new HttpRequestMessage(HttpMethod.Get, address) { Headers = { Range = new System.Net.Http.Headers.RangeHeaderValue(100, 299) } };
            using var partial = await client.SendAsync(range);
            Assert.Equal(HttpStatusCode.PartialContent, partial.StatusCode);
            Assert.Equal(200, (await partial.Content.ReadAsByteArrayAsync()).Length);

            await Eventually.TrueAsync(() => AccessLogEntries(reviews).Count(e => e.StartsWith("inbound GET", StringComparison.Ordinal)) == 2, "both were logged");
            var entries = AccessLogEntries(reviews);
            Assert.Contains(entries, e => e.Contains(" 200 ", StringComparison.Ordinal) && e.Contains("sent=5000 ", StringComparison.Ordinal));
            Assert.Contains(entries, e => e.Contains(" 206 ", StringComparison.Ordinal) && e.Contains("sent=200 ", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task AWebSocket_UpgradesAndEchoes_WithTheServersBodiesMetered()
    {
        // An upgrade request goes through the meter like any other: the tunnel is the upgrade's stream, not the body's.
        static void Map(WebApplication app)
        {
            app.UseWebSockets();
            app.MapMeshMetrics();
        }

        var reviews = await StartAsync("reviews", "v1", services: AccessLogging, app: Map);
        reviews.Behavior = async context =>
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[64];
            var received = await socket.ReceiveAsync(buffer, CancellationToken.None);
            await socket.SendAsync(buffer.AsMemory(0, received.Count), System.Net.WebSockets.WebSocketMessageType.Text, true, CancellationToken.None);
            await socket.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
            return Results.Empty;
        };

        using var client = new System.Net.WebSockets.ClientWebSocket();
        await client.ConnectAsync(new UriBuilder(reviews.Address) { Scheme = "ws", Path = "/ws" }.Uri, CancellationToken.None);
        await client.SendAsync("hello"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, CancellationToken.None);
        var echo = new byte[64];
        var got = await client.ReceiveAsync(echo, CancellationToken.None);
        Assert.Equal("hello", Encoding.UTF8.GetString(echo, 0, got.Count));
        await client.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);

        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(e => e.StartsWith("inbound GET", StringComparison.Ordinal) && e.Contains(" 101 ", StringComparison.Ordinal)), "the upgrade was logged");
    }

    /// <summary>A request body the client sends chunked: its length is not computed in advance.</summary>
    private sealed class UnknownLengthContent(byte[] body) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context) => stream.WriteAsync(body).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    [Fact]
    public async Task UnderStrictMutualTlsAndAnAllowOnlyPolicy_APortOfItsOwn_LetsAScraperOutsideTheMeshIn()
    {
        // observability.md's recipe: the metrics on a port of their own, which the PeerAuthentication (portLevelMtls)
        // and the policies leave open to Prometheus; every other port and path stays as closed as the policies say.
        var metricsPort = FreePorts.Next();
        var reviews = await StartSecureAsync("reviews", "bookinfo-reviews", app: a =>
        {
            a.Urls.Add("http://127.0.0.1:0"); // the service's port (the first one listening)
            a.Urls.Add($"http://127.0.0.1:{metricsPort}");
            a.MapMeshMetrics().RequireHost($"*:{metricsPort}");
        });
        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage");
        ControlPlane.WriteConfig("lockdown.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              mtls: { mode: STRICT }
              portLevelMtls: { {{metricsPort}}: { mode: PERMISSIVE } }
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              rules:
              - from: [{ source: { principals: ["cluster.local/ns/default/sa/bookinfo-productpage"] } }]
              - to: [{ operation: { ports: ["{{metricsPort}}"], methods: ["GET"], paths: ["/stats/prometheus"] } }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.PeerAuthentication.PortModes.ContainsKey((uint)metricsPort) && !reviews.Snapshot.Authorization.IsEmpty, "the policies apply");
        await KnowsIdentityAsync(productpage);
        Assert.NotEqual(metricsPort, reviews.Address.Port);

        using var meshCall = await productpage.CreateClient().GetAsync("http://reviews:9080/");
        Assert.Equal(HttpStatusCode.OK, meshCall.StatusCode);

        // The scraper, in plain text and with no identity: the metrics, with the mesh call in them.
        using var scraper = new HttpClient();
        var metrics = new Uri($"http://127.0.0.1:{metricsPort}/stats/prometheus");
        await Eventually.TrueAsync(async () => Sample.Parse(await scraper.GetStringAsync(metrics)).Any(m => m.Name == "istio_requests_total" && m.Labels["reporter"] == "destination"
            && m.Labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"), "the scraper reads the server's report of the mesh call");

        // The rest of that port is the policy's: another path is refused; the service's port takes no plain text.
        using var other = await scraper.GetAsync(new Uri($"http://127.0.0.1:{metricsPort}/"));
        Assert.Equal(HttpStatusCode.Forbidden, other.StatusCode);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => scraper.GetAsync(new UriBuilder(reviews.Address) { Scheme = "http", Path = "/stats/prometheus" }.Uri));
    }

    private static async Task<List<Sample>> ScrapeAsync(HttpClient scraper, TestWorkload workload)
    {
        // In plain text, as Prometheus scrapes (a PERMISSIVE port takes it next to mutual TLS).
        using var response = await scraper.GetAsync(new UriBuilder(workload.Address) { Scheme = "http", Path = "/stats/prometheus" }.Uri);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        return Sample.Parse(await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ACallWithoutAResponse_IsReportedAndLogged_UFWhenTheUpstreamFails_DCOnBothSidesWhenTheCallerGivesUp()
    {
        static void Map(WebApplication app) => app.MapMeshMetrics();
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging, app: Map);
        reviews.Behavior = async context =>
        {
            await Task.Delay(TimeSpan.FromSeconds(10), context.RequestAborted);
            return null;
        };
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging, app: Map);
        int dead;
        using (var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            dead = ((IPEndPoint)listener.LocalEndpoint).Port; // released below: nothing listens there
            listener.Stop();
        }

        ControlPlane.WriteConfig("dead.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: dead }
            spec:
              hosts: [dead.example]
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              endpoints: [{ address: 127.0.0.1, ports: { http: {{dead}} } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: dead }
            spec:
              hosts: [dead.example]
              http: [{ retries: { attempts: 0 }, route: [{ destination: { host: dead.example } }] }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.TryResolve("dead.example", out var s) && s.Routes.Length == 1 && productpage.Endpoints(ReviewsHost) == 1, "the routes apply");
        var http = productpage.CreateClient();

        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("http://dead.example/"));
        using (var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => http.GetAsync("http://reviews/slow", caller.Token));
        }

        // Istio's labels for a call without a response: code 0, the flag saying why.
        using var scraper = new HttpClient();
        var samples = await ScrapeAsync(scraper, productpage);
        var failed = samples.Single(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "UF");
        Assert.Equal("0", failed.Labels["response_code"]);
        Assert.Equal("dead.example", failed.Labels["destination_service"]);
        var gaveUp = samples.Single(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "DC");
        Assert.Equal("0", gaveUp.Labels["response_code"]);
        Assert.Equal(ReviewsHost, gaveUp.Labels["destination_service"]);

        // And each has its access-log entry (before, only calls with a response had one).
        var entries = AccessLogEntries(productpage);
        Assert.Contains(entries, m => m.StartsWith("GET dead.example/ ", StringComparison.Ordinal) && m.Contains(" 0 UF ", StringComparison.Ordinal));
        Assert.Contains(entries, m => m.StartsWith("GET reviews/slow ", StringComparison.Ordinal) && m.Contains(" 0 DC ", StringComparison.Ordinal));

        // The server saw its caller go away before it answered: DC with code 0 on its side too.
        List<Sample> server = [];
        await Eventually.TrueAsync(async () => (server = await ScrapeAsync(scraper, reviews)).Any(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "DC"), "the server reported the abandoned request");
        Assert.Equal("0", server.Single(s => s.Name == "istio_requests_total" && s.Labels["response_flags"] == "DC").Labels["response_code"]);
        var served = AccessLogEntries(reviews);
        Assert.Contains(served, m => m.StartsWith("inbound GET ", StringComparison.Ordinal) && m.Contains("/slow 0 DC ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TagOverridesWithValues_AddAndRewriteLabels_PerMetricAndSide()
    {
        static void Map(WebApplication app) => app.MapMeshMetrics();
        var reviews = await StartAsync("reviews", "v1", app: Map);
        reviews.Behavior = context => Task.FromResult<IResult?>(context.Request.Path == "/unavailable" ? Results.StatusCode(503) : null);
        var productpage = await StartAsync("productpage", "v1", app: Map);
        // The caller's request count gets the method and a path class, its destination_service rewritten; the server's
        // metrics (all four) get the status class.
        ControlPlane.WriteConfig("telemetry.yaml", """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              metrics:
              - overrides:
                - match: { metric: REQUEST_COUNT, mode: CLIENT }
                  tagOverrides:
                    request_method: { value: request.method }
                    path_class: { value: "request.url_path.startsWith('/books') ? 'books' : 'other'" }
                    destination_service: { value: "'svc-' + request.host" }
                - match: { mode: SERVER }
                  tagOverrides:
                    response_class: { value: "string(response.code / 100) + 'xx'" }
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Reports?.Client.HasValues == true && reviews.Snapshot.Reports?.Server.HasValues == true && productpage.Endpoints(ReviewsHost) == 1, "the policy arrived");
        var http = productpage.CreateClient();
        foreach (var (method, path) in new[] { ("GET", "/books/1"), ("GET", "/books/2"), ("POST", "/books/3"), ("GET", "/unavailable") })
        {
            using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), "http://reviews" + path));
        }

        using var scraper = new HttpClient();
        var caller = (await ScrapeAsync(scraper, productpage)).Where(s => s.Labels.GetValueOrDefault("reporter") == "source").ToList();
        var counts = caller.Where(s => s.Name == "istio_requests_total").ToList();
        Assert.Equal(2, counts.Single(s => s.Labels["request_method"] == "GET" && s.Labels["path_class"] == "books").Value);
        Assert.Equal(1, counts.Single(s => s.Labels["request_method"] == "POST").Value);
        Assert.Equal(1, counts.Single(s => s.Labels["path_class"] == "other" && s.Labels["response_code"] == "503").Value);
        Assert.All(counts, s => Assert.Equal("svc-reviews", s.Labels["destination_service"]));
        Assert.All(counts, s => Assert.Equal(27, s.Labels.Count));
        // The caller's other metrics keep Istio's labels as they are.
        Assert.All(caller.Where(s => s.Name == "istio_request_duration_milliseconds_count"), s =>
        {
            Assert.Equal(ReviewsHost, s.Labels["destination_service"]);
            Assert.False(s.Labels.ContainsKey("request_method"));
        });

        List<Sample> server = [];
        await Eventually.TrueAsync(async () => (server = await ScrapeAsync(scraper, reviews)).Any(s => s.Name == "istio_requests_total" && s.Labels.GetValueOrDefault("response_class") == "5xx"), "the server reported the 503");
        Assert.Equal(3, server.Single(s => s.Name == "istio_requests_total" && s.Labels["response_class"] == "2xx").Value);
        Assert.Equal(3, server.Single(s => s.Name == "istio_response_bytes_count" && s.Labels["response_class"] == "2xx").Value);
    }

    [Fact]
    public void EqualTextsInDifferentObjects_AreOneSeries_AndValuesAreEscaped()
    {
        var stats = new IstioStats();
        stats.Add(Report());
        stats.Add(Report(source: Caller with { Workload = new string("productpage-v1".AsSpan()) })); // equal text, another object
        stats.Add(Report(source: Caller with { Workload = "a \"quoted\" \\ name\nwith a line" }));

        var samples = Exposition(stats);
        var counts = samples.Where(s => s.Name == "istio_requests_total").ToList();
        Assert.Equal(2, counts.Count);
        Assert.Equal(2, counts.Single(s => s.Labels["source_workload"] == "productpage-v1").Value);
        Assert.Equal(1, counts.Single(s => s.Labels["source_workload"] == "a \"quoted\" \\ name\nwith a line").Value);
    }

    [Fact]
    public void ADestinationOutsideTheRegistry_HasOneLabelObjectPerHost_CallAfterCall()
    {
        // Each call's host is a new string: the labels must still be the same objects, or every report would be a new
        // label set to the store (its texts rendered per call).
        var first = UnresolvedPeer.Of(new string("api.example.com".AsSpan()), registryOnly: false);
        var second = UnresolvedPeer.Of(new string("api.example.com".AsSpan()), registryOnly: false);
        Assert.Same(first.Metadata, second.Metadata);
        Assert.Same(first.Service, second.Service);
        Assert.Equal("api.example.com", first.Service);
        Assert.Equal("unknown", first.Metadata.Workload);
        Assert.NotSame(first.Service, UnresolvedPeer.Of("other.example.com", registryOnly: false).Service);

        // Envoy's cluster names, as Istio reports such calls' destination_service_name.
        Assert.Equal("PassthroughCluster", first.Metadata.Service);
        Assert.Equal("BlackHoleCluster", UnresolvedPeer.Of("api.example.com", registryOnly: true).Metadata.Service);
    }

    [Fact]
    public void UnderATelemetryPolicy_AnOffMetricIsAbsent_AndRemovedLabelsMergeTheirSeries()
    {
        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_COUNT", ClientRemovedTags = { "source_workload", "source_app", "source_canonical_service" } });
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_SIZE", ClientDisabled = true });
        var removing = ReportPolicy.From(policy);
        var stats = new IstioStats();
        var other = new PeerMetadata("details-v1", "default", "details", "v1", "details");

        stats.Add(Report() with { Policy = removing });
        stats.Add(Report(source: other) with { Policy = removing });
        stats.Add(Report(reporter: "destination") with { Policy = removing }); // the server's side keeps everything

        var samples = Exposition(stats);
        var clientCount = samples.Single(s => s.Name == "istio_requests_total" && s.Labels["reporter"] == "source");
        Assert.Equal(2, clientCount.Value); // two callers, one series once their names are removed
        Assert.Equal(22, clientCount.Labels.Count);
        Assert.Equal(25, samples.Single(s => s.Name == "istio_requests_total" && s.Labels["reporter"] == "destination").Labels.Count);
        Assert.Equal(2, samples.Count(s => s.Name == "istio_request_duration_milliseconds_count" && s.Labels["reporter"] == "source"));
        Assert.DoesNotContain(samples, s => s.Name.StartsWith("istio_request_bytes", StringComparison.Ordinal) && s.Labels["reporter"] == "source");
        Assert.Single(samples, s => s.Name == "istio_request_bytes_count");
    }

    [Fact]
    public void AGrpcCallsMessages_AreServedAsIstiosCounters_WithoutTheOutcomesLabels()
    {
        var stats = new IstioStats();
        var grpc = Report() with { Protocol = "grpc", GrpcStatus = "0", RequestMessages = 3, ResponseMessages = 6 };
        stats.Add(grpc);
        stats.Add(grpc with { GrpcStatus = "14", ResponseMessages = 0 }); // another outcome, the same message series
        stats.Add(Report()); // an HTTP call counts no messages

        var samples = Exposition(stats);
        var sent = Assert.Single(samples, s => s.Name == "istio_request_messages_total");
        Assert.Equal(6, sent.Value);
        Assert.Equal(20, sent.Labels.Count);
        Assert.False(sent.Labels.ContainsKey("response_code"));
        Assert.Equal(6, Assert.Single(samples, s => s.Name == "istio_response_messages_total").Value);
        Assert.Equal(2, samples.Count(s => s.Name == "istio_requests_total" && s.Labels["request_protocol"] == "grpc"));

        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "GRPC_REQUEST_MESSAGES", ClientDisabled = true });
        var off = new IstioStats();
        off.Add(grpc with { Policy = ReportPolicy.From(policy) });
        Assert.DoesNotContain(Exposition(off), s => s.Name == "istio_request_messages_total");
        Assert.Contains(Exposition(off), s => s.Name == "istio_response_messages_total");
    }

    [Fact]
    public void APolicyRemovingEveryLabel_LeavesOneSeriesWithoutLabels()
    {
        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        foreach (var metric in new[] { "REQUEST_COUNT", "REQUEST_DURATION" })
        {
            policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = metric, ClientRemovedTags = { MeshKit.Config.IstioStandardMetrics.Labels } });
        }

        var stats = new IstioStats();
        stats.Add(Report(status: 200) with { Policy = ReportPolicy.From(policy) });
        stats.Add(Report(status: 503) with { Policy = ReportPolicy.From(policy) });

        var samples = Exposition(stats); // every line parses
        Assert.Equal(2, samples.Single(s => s.Name == "istio_requests_total").Value);
        Assert.Empty(samples.Single(s => s.Name == "istio_requests_total").Labels);
        Assert.Equal(["le"], samples.First(s => s.Name == "istio_request_duration_milliseconds_bucket").Labels.Keys);
        Assert.Equal(2, samples.Single(s => s.Name == "istio_request_duration_milliseconds_count").Value);
    }

    [Fact]
    public async Task ScrapesWhileReportsAreAdded_SeeConsistentCounts()
    {
        var stats = new IstioStats();
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 2).Select(t => Task.Run(() =>
        {
            var added = 0;
            while (!stop.IsCancellationRequested)
            {
                stats.Add(Report(status: t == 0 ? 200 : 503));
                added++;
            }

            return added;
        })).ToArray();

        for (var i = 0; i < 20; i++)
        {
            // Each scrape is a consistent copy: a histogram's +Inf bucket and count are those of its request count.
            var samples = Exposition(stats);
            foreach (var count in samples.Where(s => s.Name == "istio_requests_total"))
            {
                var code = count.Labels["response_code"];
                Assert.Equal(count.Value, samples.Single(s => s.Name == "istio_request_duration_milliseconds_count" && s.Labels["response_code"] == code).Value);
                Assert.Equal(count.Value, samples.Single(s => s.Name == "istio_request_duration_milliseconds_bucket" && s.Labels["response_code"] == code && s.Labels["le"] == "+Inf").Value);
            }

            await Task.Delay(5);
        }

        stop.Cancel();
        var total = (await Task.WhenAll(writers)).Sum();
        Assert.Equal(total, Exposition(stats).Where(s => s.Name == "istio_requests_total").Sum(s => s.Value));
    }

    [Fact]
    public void PastTheSeriesLimit_NewLabelSetsAreCountedInTheOverflowSeries()
    {
        var stats = new IstioStats();
        for (var i = 0; i < IstioStats.SeriesLimit + 5; i++)
        {
            stats.Add(Report(service: $"s{i}.default.svc.cluster.local"));
        }

        stats.Add(Report(service: "s0.default.svc.cluster.local")); // a kept series still counts

        Assert.Equal(IstioStats.SeriesLimit, stats.SeriesCount(ReportPolicy.Count));
        var samples = Exposition(stats);
        var overflow = samples.Single(s => s.Name == "istio_requests_total" && s.Labels.ContainsKey("otel_metric_overflow"));
        Assert.Equal(5, overflow.Value);
        Assert.Equal(2, samples.Single(s => s.Name == "istio_requests_total" && s.Labels.GetValueOrDefault("destination_service") == "s0.default.svc.cluster.local").Value);
        Assert.Equal(IstioStats.SeriesLimit + 6, samples.Where(s => s.Name == "istio_requests_total").Sum(s => s.Value));
    }

    [Fact]
    public void TheStore_IsFedByTheReportDrain_WithoutAMetricsListener()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var istio = new IstioMetrics(services.GetRequiredService<IMeterFactory>());
        var stats = istio.EnableStats();
        Assert.True(istio.Enabled);
        Assert.Same(stats, istio.EnableStats());

        istio.Flush();
        for (var i = 0; i < 300; i++)
        {
            istio.Record(Report(milliseconds: i % 3));
        }

        istio.Flush();
        var samples = Exposition(stats);
        Assert.Equal(300, samples.Single(s => s.Name == "istio_requests_total").Value);
        Assert.Equal(300, samples.Single(s => s.Name == "istio_request_duration_milliseconds_count").Value);
        Assert.Equal(300, samples.Single(s => s.Name == "istio_request_duration_milliseconds_sum").Value); // 100 × (0 + 1 + 2)
        Assert.Equal(100, samples.Single(s => s.Name == "istio_request_duration_milliseconds_bucket" && s.Labels["le"] == "0.5").Value);
        Assert.Equal(200, samples.Single(s => s.Name == "istio_request_duration_milliseconds_bucket" && s.Labels["le"] == "1").Value);
        Assert.Equal(300, samples.Single(s => s.Name == "istio_response_bytes_bucket" && s.Labels["le"] == "1000").Value);
        Assert.Equal(0, samples.Single(s => s.Name == "istio_response_bytes_bucket" && s.Labels["le"] == "100").Value);
    }

    [Fact]
    public void AnOpenTelemetryPipelineWithoutIstiosMetrics_ExportsMeshKitsOwn_WhileTheStoreCountsIstios()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        var istio = new IstioMetrics(factory);
        var mesh = new MeshMetrics(factory);
        var stats = istio.EnableStats();
        var exported = new List<Metric>();
        using (var provider = global::OpenTelemetry.Sdk.CreateMeterProviderBuilder()
            .AddMeshInstrumentation(includeIstioMetrics: false)
            .AddInMemoryExporter(exported)
            .Build())
        {
            istio.Record(Report() with { Counted = mesh, CountedHost = "reviews" });
            mesh.Retry("reviews");
            istio.Flush();
            provider.ForceFlush();
        }

        var names = exported.Select(m => m.Name).ToHashSet();
        Assert.Contains("meshkit.client.retries", names);
        Assert.Contains("meshkit.client.requests", names); // MeshKit's count rides Istio's report, which still runs
        Assert.DoesNotContain(names, n => n.StartsWith("istio_", StringComparison.Ordinal));
        Assert.Equal(1, Exposition(stats).Single(s => s.Name == "istio_requests_total").Value);
    }

    /// <summary>One sample line of Prometheus's text format; parsing checks every line's syntax.</summary>
    private sealed partial record Sample(string Name, Dictionary<string, string> Labels, double Value)
    {
        public static List<Sample> Parse(string text)
        {
            if (text.Length == 0)
            {
                return []; // nothing recorded yet
            }

            Assert.EndsWith("\n", text);
            var samples = new List<Sample>();
            var typed = new HashSet<string>();
            foreach (var line in text.TrimEnd('\n').Split('\n'))
            {
                if (line.StartsWith('#'))
                {
                    var comment = CommentLine().Match(line);
                    Assert.True(comment.Success, $"not a HELP or TYPE line: {line}");
                    if (comment.Groups[1].Value == "TYPE")
                    {
                        Assert.True(typed.Add(comment.Groups[2].Value), $"a second TYPE line: {line}");
                    }

                    continue;
                }

                var sample = SampleLine().Match(line);
                Assert.True(sample.Success, $"not a sample line: {line}");
                var name = sample.Groups["name"].Value;
                Assert.Contains(Regex.Replace(name, "_(bucket|sum|count)$", string.Empty), typed); // typed before its samples
                var labels = new Dictionary<string, string>();
                foreach (Match label in LabelPair().Matches(sample.Groups["labels"].Value))
                {
                    var value = Regex.Replace(label.Groups[2].Value, @"\\(.)", m => m.Groups[1].Value == "n" ? "\n" : m.Groups[1].Value);
                    Assert.True(labels.TryAdd(label.Groups[1].Value, value), $"a label twice: {line}");
                }

                var parsed = sample.Groups["value"].Value == "+Inf" ? double.PositiveInfinity : double.Parse(sample.Groups["value"].Value, CultureInfo.InvariantCulture);
                samples.Add(new Sample(name, labels, parsed));
            }

            return samples;
        }

        [GeneratedRegex(@"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$")]
        private static partial Regex CommentLine();

        [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>([a-zA-Z_][a-zA-Z0-9_]*=""([^""\\\n]|\\[\\""n])*"")(,[a-zA-Z_][a-zA-Z0-9_]*=""([^""\\\n]|\\[\\""n])*"")*)\})? (?<value>\S+)$")]
        private static partial Regex SampleLine();

        [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
        private static partial Regex LabelPair();
    }
}
