using System.Net;
using Grpc.Core;
using MeshKit.Tests.Greet;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.EndToEnd;

/// <summary>Traffic management with real servers, a real control plane and real HttpClient and gRPC clients.</summary>
public sealed class TrafficEndToEndTests : MeshTestBase
{

    private static int Endpoints(TestWorkload client, string host = ReviewsHost) => client.Endpoints(host);

    [Fact]
    public async Task RewriteAndHeaders_AreWhatTheUpstreamSees()
    {
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { prefix: /api/v1/ } }]
                rewrite: { uri: /v2/, authority: reviews-internal }
                headers: { request: { set: { x-forwarded-client-cert: "By=spiffe://spoof-attempt" } } }
                route: [{ destination: { host: reviews } }]
              - route: [{ destination: { host: reviews } }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2 && Endpoints(productpage) == 1, "routes applied");

        var parts = (await productpage.CreateClient().GetStringAsync("http://reviews:9080/api/v1/books?id=7")).Split('|');
        Assert.Equal("/v2/books?id=7", parts[2]);
        Assert.Equal("reviews-internal", parts[3]);

        // UseMesh strips the identity headers on the way in, even when a route set one.
        Assert.Equal(string.Empty, parts[4]);
    }

    [Fact]
    public async Task CorsPolicy_IsAppliedByTheDestination()
    {
        var reviews = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - corsPolicy:
                  allowOrigins: [{ exact: "https://shop.example" }, { regex: "https://.*[.]partner[.]example" }]
                  allowMethods: [GET, POST]
                  allowHeaders: [x-user]
                  exposeHeaders: [x-trace]
                  maxAge: 1h
                  allowCredentials: true
                route: [{ destination: { host: reviews } }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.OwnService?.HasCors == true && Endpoints(productpage) == 1 && productpage.Snapshot.Services[ReviewsHost].HasCors, "the policy reaches both sides");
        var http = productpage.CreateClient();

        Task<HttpResponseMessage> Send(HttpMethod method, string origin, bool preflight) =>
            CorsRequests.SendAsync(http, "http://reviews/items", method, origin, preflight ? "POST" : null);

        using var allowedPreflight = await Send(HttpMethod.Options, "https://eu.partner.example", preflight: true);
        Assert.Equal(HttpStatusCode.OK, allowedPreflight.StatusCode);
        Assert.Equal("https://eu.partner.example", allowedPreflight.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal("GET,POST", allowedPreflight.Headers.GetValues("Access-Control-Allow-Methods").Single());
        Assert.Equal("x-user", allowedPreflight.Headers.GetValues("Access-Control-Allow-Headers").Single());
        Assert.Equal("3600", allowedPreflight.Headers.GetValues("Access-Control-Max-Age").Single());
        Assert.Equal("true", allowedPreflight.Headers.GetValues("Access-Control-Allow-Credentials").Single());
        Assert.Equal(string.Empty, await allowedPreflight.Content.ReadAsStringAsync());

        // Not allowed: the preflight goes on to the application (FORWARD), with no CORS headers added.
        using var otherPreflight = await Send(HttpMethod.Options, "https://evil.example", preflight: true);
        Assert.StartsWith("reviews|", await otherPreflight.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.False(otherPreflight.Headers.Contains("Access-Control-Allow-Origin"));

        using var actual = await Send(HttpMethod.Get, "https://shop.example", preflight: false);
        Assert.Equal("https://shop.example", actual.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal("x-trace", actual.Headers.GetValues("Access-Control-Expose-Headers").Single());
        using var actualOther = await Send(HttpMethod.Get, "https://evil.example", preflight: false);
        Assert.False(actualOther.Headers.Contains("Access-Control-Allow-Origin"));
    }

    // A client of the factory that leaves redirects to its application, as a client with AllowAutoRedirect off does.
    private static void AddNoRedirectClient(IServiceCollection services) =>
        services.AddHttpClient("no-redirects").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false });

    [Fact]
    public async Task Redirect_TheRouteMakes_IsFollowedByAClientThatFollowsRedirects_AndReturnedToOneThatDoesNot()
    {
        // As through a sidecar: the redirect goes back to the application's client, which follows it (or not) by its settings.
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1", services: AddNoRedirectClient);
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { exact: /old } }]
                redirect: { uri: /new, redirectCode: 308 }
              - route: [{ destination: { host: reviews } }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2, "routes applied");

        using (var response = await productpage.CreateClient("no-redirects").GetAsync("http://reviews/old?keep=1"))
        {
            Assert.Equal(HttpStatusCode.PermanentRedirect, response.StatusCode);
            Assert.Equal(new Uri("http://reviews/new?keep=1"), response.Headers.Location);
        }

        Assert.StartsWith("reviews|v1|/new?keep=1|reviews|", await productpage.CreateClient().GetStringAsync("http://reviews/old?keep=1"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/new", "reviews|v2|/new|reviews|")]                   // relative: the same service, routed afresh (to v2)
    [InlineData("http://reviews/new", "reviews|v2|/new|reviews|")]     // absolute, by the service's mesh name
    [InlineData("http://ratings:9080/rated", "ratings|v1|/rated|ratings:9080|")] // to another service of the mesh
    public async Task RedirectAnUpstreamSends_IsFollowedThroughTheMesh_EachHopRouted(string location, string expected)
    {
        // Below the mesh, the client's own handler followed it unrouted: to the same endpoint for a relative location
        // (never v2), and for a mesh name to DNS, which does not know it.
        var v1 = await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        await StartAsync("ratings", "v1");
        v1.Behavior = c => Task.FromResult<IResult?>(c.Request.Path == "/old" ? Results.Redirect(location) : null);
        var productpage = await StartAsync("productpage", "v1", services: AddNoRedirectClient);
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { exact: /old } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2
            && s.Routes.All(r => r.Targets[0].Endpoints?.Endpoints.Length == 1) && productpage.Endpoints("ratings.default.svc.cluster.local") == 1, "routes and endpoints applied");

        Assert.StartsWith(expected, await productpage.CreateClient().GetStringAsync("http://reviews/old"), StringComparison.Ordinal);

        // A client that does not follow redirects gets the upstream's as it is.
        using var unfollowed = await productpage.CreateClient("no-redirects").GetAsync("http://reviews/old");
        Assert.Equal(HttpStatusCode.Redirect, unfollowed.StatusCode);
    }

    [Fact]
    public async Task APrimaryHandlerSharedByTwoClients_IsTakenOverOnce_AndBothFollowRedirectsThroughTheMesh()
    {
        // One handler given to two clients (a singleton): the second client must not read the first one's takeover
        // (redirects already turned off) as "this client follows none".
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = c => Task.FromResult<IResult?>(c.Request.Path == "/old" ? Results.Redirect("/new") : null);
        var shared = new SocketsHttpHandler();
        var productpage = await StartAsync("productpage", "v1", services: s =>
        {
            s.AddHttpClient("one").ConfigurePrimaryHttpMessageHandler(() => shared);
            s.AddHttpClient("two").ConfigurePrimaryHttpMessageHandler(() => shared);
        });
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "reviews is known");

        foreach (var name in new[] { "one", "two" })
        {
            Assert.StartsWith("reviews|v1|/new|", await productpage.CreateClient(name).GetStringAsync("http://reviews/old"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ARedirectWithABody_IsReportedWhole_BeforeItIsFollowed()
    {
        // A server's redirect page (as nginx and Apache send one): its hop is a response that came whole, not one the
        // caller gave up (DC), though the client only follows it.
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = async c =>
        {
            if (c.Request.Path != "/old")
            {
                return null;
            }

            c.Response.StatusCode = StatusCodes.Status301MovedPermanently;
            c.Response.Headers.Location = "/new";
            await c.Response.WriteAsync("<html><body>Moved to <a href=\"/new\">/new</a></body></html>");
            return Results.Empty;
        };
        var productpage = await StartAsync("productpage", "v1", app: a => a.MapMeshMetrics());
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "reviews is known");

        Assert.StartsWith("reviews|v1|/new|", await productpage.CreateClient().GetStringAsync("http://reviews/old"), StringComparison.Ordinal);

        using var scraper = new HttpClient();
        string[] calls = [];
        await Eventually.TrueAsync(async () => (calls = (await scraper.GetStringAsync(new Uri(productpage.Address, "/stats/prometheus"))).Split('\n')
            .Where(l => l.StartsWith("istio_requests_total{reporter=\"source\"", StringComparison.Ordinal)).ToArray()).Length == 2, "both hops were reported");
        var moved = Assert.Single(calls, l => l.Contains("response_code=\"301\"", StringComparison.Ordinal));
        Assert.True(moved.Contains("response_flags=\"-\"", StringComparison.Ordinal), moved);
        Assert.Single(calls, l => l.Contains("response_code=\"200\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RedirectedPost_BecomesAGetAfter302_StaysAPostWithItsBodyAfter307_AndTheLimitIsTheClients()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = async c => c.Request.Path.Value switch
        {
            "/found" => Results.Redirect("/echo"),
            "/temporary" => Results.Redirect("/echo", permanent: false, preserveMethod: true),
            "/loop" => Results.Redirect("/loop"),
            "/echo" => Results.Text($"{c.Request.Method}:{await new StreamReader(c.Request.Body).ReadToEndAsync()}:{c.Request.Headers.Authorization}"),
            _ => null,
        };
        var productpage = await StartAsync("productpage", "v1", services: s => s.AddHttpClient("three").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { MaxAutomaticRedirections = 3 }));
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "reviews is known");
        var http = productpage.CreateClient();

        using (var found = new HttpRequestMessage(HttpMethod.Post, "http://reviews/found") { Content = new StringContent("body") })
        {
            found.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "secret");
            using var response = await http.SendAsync(found);
            Assert.Equal("GET::", await response.Content.ReadAsStringAsync()); // no body, and no Authorization sent on
        }

        using (var temporary = await http.PostAsync("http://reviews/temporary", new StringContent("body")))
        {
            Assert.Equal("POST:body:", await temporary.Content.ReadAsStringAsync());
        }

        var served = reviews.Served;
        using var loop = await productpage.CreateClient("three").GetAsync("http://reviews/loop");
        Assert.Equal(HttpStatusCode.Redirect, loop.StatusCode);
        Assert.Equal(4, reviews.Served - served); // the request and three redirects followed; the fourth is the application's
    }

    [Fact]
    public async Task ConsistentHash_AFixedHeaderAlwaysReachesOneEndpoint_WithoutItTheLoadSpreads()
    {
        var backends = new[] { await StartAsync("reviews", "v1"), await StartAsync("reviews", "v1"), await StartAsync("reviews", "v1") };
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: x-user } } }
            """);
        await Eventually.TrueAsync(() => Endpoints(productpage) == 3 && productpage.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints!.Balancer is MeshKit.LoadBalancing.ConsistentHashBalancer, "consistent hashing applied");
        var http = productpage.CreateClient();

        foreach (var user in new[] { "alice", "bob", "carol" })
        {
            var before = backends.Select(b => b.Served).ToArray();
            for (var i = 0; i < 20; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
                request.Headers.Add("x-user", user);
                (await http.SendAsync(request)).EnsureSuccessStatusCode();
            }

            Assert.Single(backends.Select((b, i) => b.Served - before[i]), d => d == 20);
        }

        var spreadBefore = backends.Select(b => b.Served).ToArray();
        for (var i = 0; i < 90; i++)
        {
            await http.GetStringAsync("http://reviews/");
        }

        Assert.All(backends.Select((b, i) => b.Served - spreadBefore[i]), d => Assert.InRange(d, 10, 60));
    }

    [Fact]
    public async Task LocalityFailover_AllLocalDown_RemoteGetsTraffic_LocalBack_LocalOnly()
    {
        var local = await StartAsync("reviews", "local", o => o.Locality = "us-east/zone-a");
        var remote = await StartAsync("reviews", "remote", o => o.Locality = "eu-west/zone-a");
        var productpage = await StartAsync("productpage", "v1", o => o.Locality = "us-east/zone-a");
        ControlPlane.WriteConfig("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                loadBalancer:
                  localityLbSetting: { enabled: true, failover: [{ from: us-east, to: eu-west }] }
            """);
        await Eventually.TrueAsync(() => Endpoints(productpage) == 2 && productpage.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints!.Groups.Count == 2, "locality applied");
        var http = productpage.CreateClient();
        async Task<string> Version() => (await http.GetStringAsync("http://reviews/")).Split('|')[1];

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("local", await Version());
        }

        await local.StopAsync();
        await Eventually.TrueAsync(() => Endpoints(productpage) == 1, "the local endpoint leaves");
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("remote", await Version());
        }

        await StartAsync("reviews", "local", o => o.Locality = "us-east/zone-a");
        await Eventually.TrueAsync(() => Endpoints(productpage) == 2, "a local endpoint is back");
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("local", await Version());
        }

        Assert.True(remote.Served >= 20);
    }

    [Fact]
    public async Task ExternalService_ThroughServiceEntry_IsReachable_EvenUnderRegistryOnly()
    {
        await using var external = await ExternalServer.StartAsync();
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("mesh.yaml", $$"""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec: { outboundTrafficPolicy: { mode: REGISTRY_ONLY } }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              ports: [{ number: 80, name: http, protocol: HTTP, targetPort: {{external.Port}} }]
              resolution: DNS
              endpoints: [{ address: localhost }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              http: [{ headers: { request: { set: { x-api-key: k1 } } }, route: [{ destination: { host: payments.example.test } }] }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.RegistryOnly && productpage.Snapshot.Services.ContainsKey("payments.example.test"), "the ServiceEntry applies");
        var http = productpage.CreateClient();

        Assert.Equal("external:/charge:payments.example.test:k1", await http.GetStringAsync("http://payments.example.test/charge"));
        using var blocked = await http.GetAsync("http://other.example.test/");
        Assert.Equal(HttpStatusCode.BadGateway, blocked.StatusCode);
    }

    [Fact]
    public async Task GrpcRoute_RoutesTheGrpcClientByMethod_ToVersionServices()
    {
        await StartGreeterAsync("v1");
        await StartGreeterAsync("v2");
        var client = await StartGreeterClientAsync();
        const string Version = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: greeter-VERSION }
            spec:
              hosts: [greeter-VERSION.default.svc.cluster.local]
              location: MESH_INTERNAL
              resolution: STATIC
              ports: [{ number: 9080, name: grpc, protocol: GRPC }]
              workloadSelector: { labels: { app: greeter, version: VERSION } }
            ---

            """;
        ControlPlane.WriteConfig("greeter.yaml", Version.Replace("VERSION", "v1", StringComparison.Ordinal) + Version.Replace("VERSION", "v2", StringComparison.Ordinal) + """
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: greeter }
            spec:
              parentRefs: [{ group: "", kind: Service, name: greeter, port: 9080 }]
              rules:
              - backendRefs: [{ name: greeter-v1, port: 9080 }]
              - matches: [{ method: { service: greet.Greeter, method: SayGoodbye } }]
                backendRefs: [{ name: greeter-v2, port: 9080 }]
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("greeter.default.svc.cluster.local", out var s) && s.Routes.Length == 2
            && s.Routes.All(r => r.Targets[0].Endpoints?.Endpoints.Length == 1), "the GRPCRoute applied, each version Service with its endpoint");
        var greeter = client.Services.GetRequiredService<Greeter.GreeterClient>();

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("hello ada from v1", (await greeter.SayHelloAsync(new HelloRequest { Name = "ada" })).Message);
            Assert.Equal("goodbye ada from v2", (await greeter.SayGoodbyeAsync(new HelloRequest { Name = "ada" })).Message);
        }
    }

    [Fact]
    public async Task GrpcClient_IsRoutedByMethod()
    {
        var v1 = await StartGreeterAsync("v1");
        var v2 = await StartGreeterAsync("v2");
        var client = await StartGreeterClientAsync();
        ControlPlane.WriteConfig("greeter.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: greeter }
            spec:
              host: greeter
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: greeter }
            spec:
              hosts: [greeter]
              http:
              - match: [{ uri: { exact: /greet.Greeter/SayGoodbye } }]
                route: [{ destination: { host: greeter, subset: v2 } }]
                timeout: 5s # the reply, its trailers included, read under the route timeout
              - route: [{ destination: { host: greeter, subset: v1 } }]
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("greeter.default.svc.cluster.local", out var s) && s.Routes.Length == 2
            && s.Routes.All(r => r.Targets[0].Endpoints?.Endpoints.Length == 1), "greeter routes applied");
        var greeter = client.Services.GetRequiredService<Greeter.GreeterClient>();

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("hello ada from v1", (await greeter.SayHelloAsync(new HelloRequest { Name = "ada" })).Message);
            Assert.Equal("goodbye ada from v2", (await greeter.SayGoodbyeAsync(new HelloRequest { Name = "ada" })).Message);
        }

        // gRPC messages declare no Content-Length: the server sizes them by the bytes that went through, its 5-byte
        // message prefix included (the request "ada": 5 + 5 bytes; the reply "hello ada from v1": 5 + 19).
        // (The server's report is written as its response ends, which the client may see first: awaited.)
        (double, double) sizes = default;
        await Eventually.TrueAsync(async () => (sizes = await v1.ServedBodyBytesAsync()).Item1 >= 10 * 10, "v1 reported its ten calls");
        Assert.Equal((10 * 10, 10 * 24), sizes);

        // The caller reports a gRPC call when its body ends, as Envoy reports a completed stream: the status from the
        // trailers (OK: "0"), the reply messages' bytes (24 and 26 per call), no flag. Over plain text the greeter told
        // nothing: its workload is what the control plane says of the endpoint, as Istio's caller falls back to the
        // endpoint's metadata.
        using (var scraper = new HttpClient())
        {
            // The report is made as the client finishes the body, which may be just after the call returned: awaited.
            string[] lines = [];
            await Eventually.TrueAsync(async () => (lines = (await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus"))).Split('\n'))
                .Count(l => l.StartsWith("istio_requests_total{reporter=\"source\"", StringComparison.Ordinal) && l.EndsWith(" 10", StringComparison.Ordinal)) == 2, "both versions' ten calls reported");
            foreach (var (version, bytes) in new[] { ("v1", 240), ("v2", 260) })
            {
                var workload = $"destination_workload=\"greeter-{version}\",destination_workload_namespace=\"default\",destination_principal=\"unknown\",destination_app=\"greeter\",destination_version=\"{version}\"";
                var calls = Assert.Single(lines, l => l.StartsWith("istio_requests_total{reporter=\"source\"", StringComparison.Ordinal) && l.Contains(workload, StringComparison.Ordinal));
                Assert.Contains("grpc_response_status=\"0\"", calls, StringComparison.Ordinal);
                Assert.Contains("response_flags=\"-\"", calls, StringComparison.Ordinal);
                Assert.Contains("destination_service=\"greeter.default.svc.cluster.local\",destination_service_name=\"greeter\"", calls, StringComparison.Ordinal);
                Assert.Contains("destination_canonical_service=\"greeter\"", calls, StringComparison.Ordinal);
                Assert.EndsWith(" 10", calls, StringComparison.Ordinal);
                Assert.Contains(lines, l => l.StartsWith("istio_response_bytes_sum{reporter=\"source\"", StringComparison.Ordinal) && l.Contains(workload, StringComparison.Ordinal)
                    && l.EndsWith($" {bytes}", StringComparison.Ordinal));
            }
        }

        // The caller's log entries are written at the same moment (just after the report), with the reply's bytes.
        await Eventually.TrueAsync(() => AccessLogEntries(client).Count(e => e.Contains("/greet.Greeter/", StringComparison.Ordinal)) >= 20, "the calls were logged");
        var entries = AccessLogEntries(client);
        Assert.Equal(10, entries.Count(e => e.Contains("/greet.Greeter/SayHello ", StringComparison.Ordinal) && e.Contains(" received=24 ", StringComparison.Ordinal)));
        Assert.Equal(10, entries.Count(e => e.Contains("/greet.Greeter/SayGoodbye ", StringComparison.Ordinal) && e.Contains(" received=26 ", StringComparison.Ordinal)));

        ControlPlane.WriteConfig("greeter.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: greeter }\nspec:\n  hosts: [greeter]\n  http: [{ match: [{ uri: { prefix: /greet.Greeter/ } }], directResponse: { status: 503 } }]\n");
        await Eventually.TrueAsync(() => client.Snapshot.Services["greeter.default.svc.cluster.local"].Routes is [{ Actions.DirectResponse: not null }], "the direct response applies");
        await Eventually.TrueAsync(async () =>
        {
            try
            {
                await greeter.SayHelloAsync(new HelloRequest { Name = "ada" });
                return false;
            }
            catch (RpcException ex)
            {
                return ex.StatusCode == StatusCode.Unavailable;
            }
        }, "a mesh-made 503 reaches the gRPC client as UNAVAILABLE");
    }

    [Fact]
    public async Task AGrpcCallCutByTheRouteTimeout_IsReportedWhenItsBodyEnds_WithUT()
    {
        var v1 = await StartGreeterAsync("v1");
        var client = await StartGreeterClientAsync();
        ControlPlane.WriteConfig("greeter.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: greeter }
            spec:
              hosts: [greeter]
              http: [{ route: [{ destination: { host: greeter } }], timeout: 500ms }]
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("greeter.default.svc.cluster.local", out var s) && s.Routes is [{ Targets: [{ Endpoints.Endpoints.Length: 1 }] }] && s.Routes[0].Resilience?.Timeout is not null, "the route applies");
        var greeter = client.Services.GetRequiredService<Greeter.GreeterClient>();

        // The headers come in time; the reply would come after the timeout, which cuts the body.
        var failed = await Assert.ThrowsAsync<RpcException>(async () => await greeter.SayHelloAsync(new HelloRequest { Name = "slow" }));
        Assert.NotEqual(StatusCode.OK, failed.StatusCode);

        // Reported when the client gives the cut body up, which may come just after the exception reached the test.
        using var scraper = new HttpClient();
        var text = string.Empty;
        await Eventually.TrueAsync(async () => (text = await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus"))).Contains("istio_requests_total{reporter=\"source\"", StringComparison.Ordinal), "the call was reported");
        var call = Assert.Single(text.Split('\n'), l => l.StartsWith("istio_requests_total{reporter=\"source\"", StringComparison.Ordinal));
        Assert.Contains("response_code=\"200\"", call, StringComparison.Ordinal);
        Assert.Contains("grpc_response_status=\"\"", call, StringComparison.Ordinal); // no trailers came
        Assert.True(call.Contains("response_flags=\"UT\"", StringComparison.Ordinal), call);
        await Eventually.TrueAsync(() => AccessLogEntries(client).Count > 0, "the call was logged");
        var entry = Assert.Single(AccessLogEntries(client));
        Assert.Contains(" UT ", entry, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AGrpcStream_CountsItsMessages_OnBothSides_AsIstiosMessageCounters()
    {
        var v1 = await StartGreeterAsync("v1");
        var client = await StartGreeterClientAsync();
        await Eventually.TrueAsync(() => client.Endpoints("greeter.default.svc.cluster.local") == 1, "the greeter is known");
        var greeter = client.Services.GetRequiredService<Greeter.GreeterClient>();

        // Three messages out, two replies to each (HelloRequest "ada": 5 bytes, framed in 10).
        using (var chat = greeter.Chat())
        {
            for (var i = 0; i < 3; i++)
            {
                await chat.RequestStream.WriteAsync(new HelloRequest { Name = "ada" });
            }

            await chat.RequestStream.CompleteAsync();
            var replies = await chat.ResponseStream.ReadAllAsync().ToListAsync();
            Assert.Equal(6, replies.Count);
        }

        Assert.Equal("hello ada from v1", (await greeter.SayHelloAsync(new HelloRequest { Name = "ada" })).Message);

        // Istio's message counters carry the peers' labels, not the outcome's (no response_code, flags or protocol).
        static double Messages(string text, string metric, string reporter)
        {
            Assert.All(text.Split('\n').Where(l => l.StartsWith(metric + "{", StringComparison.Ordinal)), l =>
            {
                Assert.DoesNotContain("response_code=", l, StringComparison.Ordinal);
                Assert.DoesNotContain("request_protocol=", l, StringComparison.Ordinal);
            });
            return Reported(text, metric, reporter);
        }

        using var scraper = new HttpClient();
        var caller = string.Empty;
        await Eventually.TrueAsync(async () => Messages(caller = await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus")), "istio_response_messages_total", "source") == 7, "the caller counted 6 + 1 replies");
        await Eventually.TrueAsync(async () => Messages(caller = await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus")), "istio_request_messages_total", "source") == 4, "the caller counted 3 + 1 requests"); // a sweep may be adding them still
        Assert.Contains(caller.Split('\n'), l => l.StartsWith("istio_request_bytes_sum{reporter=\"source\"", StringComparison.Ordinal) && l.EndsWith(" 40", StringComparison.Ordinal)); // 3 + 1 messages of 10 bytes

        var served = string.Empty;
        await Eventually.TrueAsync(async () => Messages(served = await v1.StatsAsync(), "istio_response_messages_total", "destination") == 7, "the server counted 6 + 1 replies");
        await Eventually.TrueAsync(async () => Messages(served = await v1.StatsAsync(), "istio_request_messages_total", "destination") == 4, "the server counted 3 + 1 requests");
    }

    [Fact]
    public async Task ALongStream_AddsItsMessagesWhileItRuns_AndTheRestWhenItEnds_EachOnce()
    {
        // A running stream's message counts are added on a timer: every 200 ms here (the mesh Telemetry's
        // reportingInterval), not the default 5 s.
        var (v1, client, greeter) = await StartSweptGreeterAsync(TimeSpan.FromMilliseconds(200));
        using var scraper = new HttpClient();
        Task<string> Caller() => scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus"));

        using var chat = greeter.Chat();
        for (var i = 0; i < 2; i++)
        {
            await chat.RequestStream.WriteAsync(new HelloRequest { Name = "ada" });
            Assert.True(await chat.ResponseStream.MoveNext(CancellationToken.None));
            Assert.True(await chat.ResponseStream.MoveNext(CancellationToken.None));
        }

        // Both sides sweep at the configured interval, which the stream brought from their config.
        Assert.Equal(TimeSpan.FromMilliseconds(200), client.Services.GetRequiredService<MeshKit.Telemetry.IstioMetrics>().Live.Interval);
        Assert.Equal(TimeSpan.FromMilliseconds(200), v1.Services.GetRequiredService<MeshKit.Telemetry.IstioMetrics>().Live.Interval);

        // Still open: both sides show its messages so far, and no request yet.
        await Eventually.TrueAsync(async () => Reported(await Caller(), "istio_response_messages_total", "source") == 4, "the caller added the replies so far");
        await Eventually.TrueAsync(async () => Reported(await v1.StatsAsync(), "istio_response_messages_total", "destination") == 4, "the server added the replies so far");
        Assert.Equal(2, Reported(await Caller(), "istio_request_messages_total", "source"));
        Assert.Equal(2, Reported(await v1.StatsAsync(), "istio_request_messages_total", "destination"));
        Assert.Equal(0, Reported(await Caller(), "istio_requests_total", "source"));

        await chat.RequestStream.WriteAsync(new HelloRequest { Name = "ada" });
        await chat.RequestStream.CompleteAsync();
        Assert.Equal(2, (await chat.ResponseStream.ReadAllAsync().ToListAsync()).Count);

        // Ended: the rest is added once, with the call's report.
        await Eventually.TrueAsync(async () => Reported(await Caller(), "istio_requests_total", "source") == 1, "the caller reported the call");
        await Eventually.TrueAsync(async () => Reported(await v1.StatsAsync(), "istio_requests_total", "destination") == 1, "the server reported the call");
        await Task.Delay(500); // sweeps after the end add nothing
        foreach (var (text, reporter) in new[] { (await Caller(), "source"), (await v1.StatsAsync(), "destination") })
        {
            Assert.Equal(3, Reported(text, "istio_request_messages_total", reporter));
            Assert.Equal(6, Reported(text, "istio_response_messages_total", reporter));
        }
    }

    [Fact]
    public async Task ConcurrentStreams_SweptAsTheyRun_CountEveryMessageOnce()
    {
        // Sweeps every 10 ms race the streams' messages and their ends: the totals must still be exact.
        var (v1, client, greeter) = await StartSweptGreeterAsync(TimeSpan.FromMilliseconds(10));

        const int Streams = 16, Messages = 40;
        await Task.WhenAll(Enumerable.Range(0, Streams).Select(async _ =>
        {
            using var chat = greeter.Chat();
            for (var i = 0; i < Messages; i++)
            {
                await chat.RequestStream.WriteAsync(new HelloRequest { Name = "ada" });
                if (i % 8 == 0)
                {
                    await Task.Delay(5);
                }
            }

            await chat.RequestStream.CompleteAsync();
            Assert.Equal(2 * Messages, (await chat.ResponseStream.ReadAllAsync().ToListAsync()).Count);
        }));

        using var scraper = new HttpClient();
        await Eventually.TrueAsync(async () => Reported(await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus")), "istio_requests_total", "source") == Streams, "the caller reported every stream");
        await Eventually.TrueAsync(async () => Reported(await v1.StatsAsync(), "istio_requests_total", "destination") == Streams, "the server reported every stream");
        // A sweep that claimed messages just before a stream's end may still be adding them: awaited, then exact.
        var (caller, served) = (string.Empty, string.Empty);
        await Eventually.TrueAsync(async () => Reported(caller = await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus")), "istio_response_messages_total", "source") >= 2 * Streams * Messages
            && Reported(served = await v1.StatsAsync(), "istio_response_messages_total", "destination") >= 2 * Streams * Messages, "every message added");
        await Task.Delay(200);
        (caller, served) = (await scraper.GetStringAsync(new Uri(client.Address, "/stats/prometheus")), await v1.StatsAsync());
        Assert.Equal(Streams * Messages, Reported(caller, "istio_request_messages_total", "source"));
        Assert.Equal(2 * Streams * Messages, Reported(caller, "istio_response_messages_total", "source"));
        Assert.Equal(Streams * Messages, Reported(served, "istio_request_messages_total", "destination"));
        Assert.Equal(2 * Streams * Messages, Reported(served, "istio_response_messages_total", "destination"));
    }

    /// <summary>The sum of a metric's series of one reporter, in a scrape of Prometheus's text format.</summary>
    private static double Reported(string text, string metric, string reporter) => text.Split('\n')
        .Where(l => l.StartsWith(metric + "{reporter=\"" + reporter + "\"", StringComparison.Ordinal))
        .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>
    /// A greeter and its client whose running streams' messages are swept every <paramref name="interval"/>: the
    /// mesh's Telemetry sets its metrics' <c>reportingInterval</c>.
    /// </summary>
    private async Task<(GrpcWorkload Greeter, TestWorkload Client, Greeter.GreeterClient Calls)> StartSweptGreeterAsync(TimeSpan interval)
    {
        ControlPlane.WriteConfig("telemetry.yaml", $$"""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              metrics: [{ reportingInterval: {{(int)interval.TotalMilliseconds}}ms }]
            """);
        var v1 = await StartGreeterAsync("v1");
        var client = await StartGreeterClientAsync();
        await Eventually.TrueAsync(() => client.Endpoints("greeter.default.svc.cluster.local") == 1
            && client.Snapshot.StreamReportingInterval == interval
            && v1.Services.GetRequiredService<MeshKit.Snapshot.MeshSnapshotProvider>().Current.StreamReportingInterval == interval, "the greeter is known, both under the interval");
        return (v1, client, client.Services.GetRequiredService<Greeter.GreeterClient>());
    }

    private async Task<GrpcWorkload> StartGreeterAsync(string version)
    {
        var greeter = await GrpcWorkload.StartAsync(version, ControlPlane.DiscoveryAddress);
        Owned.Add(greeter);
        return greeter;
    }

    /// <summary>A mesh workload calling the greeter through a gRPC client, with its access log and Istio's metrics served.</summary>
    private Task<TestWorkload> StartGreeterClientAsync() => StartAsync("frontend", "v1", services: s =>
    {
        AccessLogging(s);
        s.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("http://greeter:9080"));
    }, app: a => a.MapMeshMetrics());

    /// <summary>A gRPC server in the mesh (HTTP/2 without TLS) answering with its version.</summary>
    private sealed class GrpcWorkload : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private GrpcWorkload(WebApplication app) => _app = app;

        public IServiceProvider Services => _app.Services;

        public static async Task<GrpcWorkload> StartAsync(string version, Uri controlPlane)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(new GreeterService(version));
            builder.Services.AddMesh(o =>
            {
                o.ServiceName = "greeter";
                o.Labels["version"] = version;
                o.ControlPlaneAddress = controlPlane;
                o.ServicePort = 9080;
                o.DrainDuration = TimeSpan.Zero;
                o.ReconnectBaseDelay = TimeSpan.FromMilliseconds(100);
            });
            var app = builder.Build();
            app.UseMesh();
            app.MapGrpcService<GreeterService>();
            app.MapMeshMetrics();
            await app.StartAsync();
            return new GrpcWorkload(app);
        }

        /// <summary>Returns what it serves at <c>/stats/prometheus</c>.</summary>
        public async Task<string> StatsAsync()
        {
            // Prior-knowledge HTTP/2 in plain text, as the port serves; the scrape is not a call of the mesh.
            using var scraper = new HttpClient { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
            var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return await scraper.GetStringAsync(new Uri(new Uri(address), "/stats/prometheus"));
        }

        /// <summary>Returns the request and response body bytes of the calls it served (its Istio size histograms' sums).</summary>
        public async Task<(double Request, double Response)> ServedBodyBytesAsync()
        {
            var text = await StatsAsync();
            static double Sum(string text, string name) => text.Split('\n')
                .Where(l => l.StartsWith(name + "_sum{", StringComparison.Ordinal) && l.Contains("reporter=\"destination\"", StringComparison.Ordinal))
                .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
            return (Sum(text, "istio_request_bytes"), Sum(text, "istio_response_bytes"));
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    private sealed class GreeterService(string version) : Greeter.GreeterBase
    {
        public override async Task<HelloReply> SayHello(HelloRequest request, ServerCallContext context)
        {
            if (request.Name == "slow")
            {
                // The headers go at once, the reply only after a while: a body the route timeout can cut.
                await context.WriteResponseHeadersAsync([]);
                await Task.Delay(TimeSpan.FromSeconds(5), context.CancellationToken);
            }

            return new HelloReply { Message = $"hello {request.Name} from {version}" };
        }

        public override Task<HelloReply> SayGoodbye(HelloRequest request, ServerCallContext context) =>
            Task.FromResult(new HelloReply { Message = $"goodbye {request.Name} from {version}" });

        // Two replies to every message, read through the request stream until the client completes it.
        public override async Task Chat(IAsyncStreamReader<HelloRequest> requestStream, IServerStreamWriter<HelloReply> responseStream, ServerCallContext context)
        {
            await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
            {
                await responseStream.WriteAsync(new HelloReply { Message = $"hello {request.Name}" });
                await responseStream.WriteAsync(new HelloReply { Message = $"again {request.Name}" });
            }
        }
    }
}
