using System.Net;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Conformance;

/// <summary>
/// VirtualService semantics, field by field, each following Istio's reference documentation. Every test fails when its
/// semantic is broken. (First-match order, uri/method/header matching and weights: see RouteMatchingTests.)
/// </summary>
public class VirtualServiceConformanceTests
{
    private static HttpMessageInvoker Mesh(string http, string ns = "default", Dictionary<string, string>? labels = null) =>
        InMemoryMesh.Create(InMemoryMesh.Subsets + InMemoryMesh.VirtualService(http), ns, labels);

    private static async Task<HttpResponseMessage> Raw(HttpMessageInvoker mesh, string url, Action<HttpRequestMessage>? configure = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        configure?.Invoke(request);
        var response = await mesh.SendAsync(request, CancellationToken.None);

        // HttpClient links the two; the invoker does not.
        response.RequestMessage ??= request;
        return response;
    }

    private static string Sent(HttpResponseMessage response, string header) =>
        response.Headers.TryGetValues(header, out var values) ? string.Join(",", values) : "<none>";

    [Fact]
    public async Task Match_QueryParams_ExactRegexAndPresence()
    {
        using var mesh = Mesh("""
              - match: [{ queryParams: { user: { exact: jason } } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - match: [{ queryParams: { id: { regex: "[0-9]+" } } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - match: [{ queryParams: { debug: {} } }]
                route: [{ destination: { host: reviews, subset: v3 } }]
              - route: [{ destination: { host: reviews, subset: none } }]
            """);

        Assert.Equal("v1", await mesh.SendAsync("http://reviews/?a=1&user=jason"));
        Assert.Equal("v1", await mesh.SendAsync("http://reviews/?user=%6Aason"));
        Assert.Equal("503 UH", await mesh.SendAsync("http://reviews/?user=jasonx"));
        Assert.Equal("v2", await mesh.SendAsync("http://reviews/?id=42"));
        Assert.Equal("503 UH", await mesh.SendAsync("http://reviews/?id=42a"));
        Assert.Equal("v3", await mesh.SendAsync("http://reviews/?debug"));
        Assert.Equal("v3", await mesh.SendAsync("http://reviews/?debug="));
        Assert.Equal("503 UH", await mesh.SendAsync("http://reviews/?debugger=1"));
    }

    [Fact]
    public async Task Match_HeaderPresence_AndWithoutHeaders()
    {
        using var mesh = Mesh("""
              - match: [{ headers: { x-canary: {} }, withoutHeaders: { x-opt-out: { exact: "1" } } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
            """);

        Assert.Equal("v2", await mesh.SendAsync("http://reviews/", headers: ("x-canary", "")));
        Assert.Equal("v2", await mesh.SendAsync("http://reviews/", headers: [("x-canary", "yes"), ("x-opt-out", "0")]));
        Assert.Equal("v1", await mesh.SendAsync("http://reviews/", headers: [("x-canary", "yes"), ("x-opt-out", "1")]));
        Assert.Equal("v1", await mesh.SendAsync("http://reviews/"));
    }

    [Fact]
    public async Task Match_SourceLabelsAndSourceNamespace_AreTheCallersOwn()
    {
        const string Http = """
              - match: [{ sourceLabels: { app: productpage, version: v2 } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - match: [{ sourceNamespace: canary }]
                route: [{ destination: { host: reviews.default.svc.cluster.local, subset: v3 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
            """;
        using var v2Caller = Mesh(Http, labels: new() { ["app"] = "productpage", ["version"] = "v2" });
        using var v1Caller = Mesh(Http, labels: new() { ["app"] = "productpage", ["version"] = "v1" });
        using var canaryCaller = InMemoryMesh.Create(InMemoryMesh.Subsets + InMemoryMesh.VirtualService(Http).Replace("hosts: [reviews]", "hosts: [reviews]\n  exportTo: [\"*\"]", StringComparison.Ordinal), "canary");

        Assert.Equal("v2", await v2Caller.SendAsync("http://reviews/"));
        Assert.Equal("v1", await v1Caller.SendAsync("http://reviews/"));
        Assert.Equal("v3", await canaryCaller.SendAsync("http://reviews.default/"));
    }

    [Fact]
    public async Task Headers_RequestAndResponseEdits_RouteWinsOverDestination()
    {
        using var mesh = Mesh("""
              - headers:
                  request:
                    set: { x-route: route, x-both: route }
                    add: { x-added: two }
                    remove: [x-secret]
                  response:
                    set: { x-served-by: mesh }
                    remove: [x-sent-to]
                route:
                - destination: { host: reviews, subset: v1 }
                  headers:
                    request: { set: { x-both: destination, x-dest: d } }
                    response: { add: { x-dest-response: d } }
            """);

        using var response = await Raw(mesh, "http://reviews/", r =>
        {
            r.Headers.Add("x-secret", "s");
            r.Headers.Add("x-added", "one");
            r.Headers.Add("x-route", "caller");
        });

        Assert.Equal("route", Sent(response, "x-sent-header-x-route"));
        Assert.Equal("route", Sent(response, "x-sent-header-x-both"));
        Assert.Equal("d", Sent(response, "x-sent-header-x-dest"));
        Assert.Equal("one,two", Sent(response, "x-sent-header-x-added"));
        Assert.Equal("<none>", Sent(response, "x-sent-header-x-secret"));
        Assert.Equal("mesh", Sent(response, "x-served-by"));
        Assert.Equal("d", Sent(response, "x-dest-response"));
        Assert.Equal("<none>", Sent(response, "x-sent-to"));

        // The caller's message is restored, so a retry above the mesh does not apply the edits twice.
        var request = response.RequestMessage!;
        Assert.Equal(["s"], request.Headers.GetValues("x-secret"));
        Assert.Equal(["one"], request.Headers.GetValues("x-added"));
        Assert.Equal(["caller"], request.Headers.GetValues("x-route"));
        Assert.False(request.Headers.Contains("x-dest"));
    }

    [Theory]
    [InlineData("prefix: /old", "/new", "/old/items/1?q=1", "/new/items/1?q=1")]
    [InlineData("prefix: /old/", "/", "/old/items", "/items")]
    [InlineData("exact: /old", "/new", "/old?q=1", "/new?q=1")]
    [InlineData("regex: /o.d/.*", "/new", "/old/x", "/new")]
    public async Task Rewrite_Uri_ReplacesTheMatchedPrefixOrTheWholePath(string match, string rewrite, string path, string expected)
    {
        using var mesh = Mesh($$"""
              - match: [{ uri: { {{match}} } }]
                rewrite: { uri: "{{rewrite}}" }
                route: [{ destination: { host: reviews, subset: v1 } }]
            """);

        using var response = await Raw(mesh, "http://reviews" + path);
        Assert.Equal("http://10.0.0.1:1001" + expected, Sent(response, "x-sent-to"));
        Assert.Equal(new Uri("http://reviews" + path), response.RequestMessage!.RequestUri);
    }

    [Fact]
    public async Task Rewrite_UriRegexAndAuthority()
    {
        using var mesh = Mesh("""
              - match: [{ uri: { prefix: /service } }]
                rewrite:
                  authority: backend.internal
                  uriRegexRewrite: { match: "^/service/([^/]+)(/.*)?$", rewrite: "/v2/\\1\\2" }
                route: [{ destination: { host: reviews, subset: v2 } }]
            """);

        using var response = await Raw(mesh, "http://reviews:9080/service/books/12?x=1");
        Assert.Equal("http://10.0.0.1:1002/v2/books/12?x=1", Sent(response, "x-sent-to"));
        Assert.Equal("backend.internal", Sent(response, "x-sent-host"));
        Assert.Null(response.RequestMessage!.Headers.Host);
    }

    [Theory]
    [InlineData("""
          - headers: { request: { set: { ":authority": backend.internal } } }
            route: [{ destination: { host: reviews, subset: v2 } }]
        """)]
    [InlineData("""
          - route: [{ destination: { host: reviews, subset: v2 }, headers: { request: { add: { host: backend.internal } } } }]
        """)]
    public async Task HeaderEdit_OfTheAuthority_RewritesIt_AsRewriteAuthorityDoes(string http)
    {
        // Istio reads a request's set or add of host or :authority as the authority rewrite.
        using var mesh = Mesh(http);

        using var response = await Raw(mesh, "http://reviews:9080/books");
        Assert.Equal("http://10.0.0.1:1002/books", Sent(response, "x-sent-to"));
        Assert.Equal("backend.internal", Sent(response, "x-sent-host"));
        Assert.Null(response.RequestMessage!.Headers.Host); // the caller's message is as it was
    }

    [Theory]
    [InlineData("{ uri: /v1/bookratings }", "http://reviews:9080/v1/getProductRatings?id=1", 301, "http://reviews:9080/v1/bookratings?id=1")]
    [InlineData("{ authority: newratings.default.svc.cluster.local, redirectCode: 308 }", "http://reviews:9080/a?b=c", 308, "http://newratings.default.svc.cluster.local/a?b=c")]
    [InlineData("{ scheme: https, port: 8443 }", "http://reviews:9080/a", 301, "https://reviews:8443/a")]
    [InlineData("{ scheme: https, derivePort: FROM_REQUEST_PORT }", "http://reviews:9080/a", 301, "https://reviews:9080/a")]
    [InlineData("{ scheme: https }", "http://reviews:9080/a", 301, "https://reviews/a")]
    public async Task Redirect_AnswersWithLocation_KeepingTheQuery(string redirect, string url, int status, string location)
    {
        using var mesh = Mesh($$"""
              - redirect: {{redirect}}
            """);

        using var response = await Raw(mesh, url);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal(new Uri(location), response.Headers.Location);
    }

    [Fact]
    public async Task DirectResponse_StringAndBytesBodies()
    {
        using var mesh = Mesh("""
              - match: [{ uri: { prefix: /text } }]
                directResponse: { status: 503, body: { string: "unknown path" } }
                headers: { response: { set: { content-type: text/plain } } }
              - match: [{ uri: { prefix: /bytes } }]
                directResponse: { status: 200, body: { bytes: "aGVsbG8=" } }
              - directResponse: { status: 204 }
            """);

        using var text = await Raw(mesh, "http://reviews/text");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, text.StatusCode);
        Assert.Equal("unknown path", await text.Content.ReadAsStringAsync());
        Assert.Equal("text/plain", text.Content.Headers.ContentType!.MediaType);
        using var bytes = await Raw(mesh, "http://reviews/bytes");
        Assert.Equal("hello", await bytes.Content.ReadAsStringAsync());
        using var empty = await Raw(mesh, "http://reviews/other");
        Assert.Equal(HttpStatusCode.NoContent, empty.StatusCode);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RetryIgnorePreviousHosts_DecidesWhetherARetryMayReturnToTheEndpointTried(bool avoid)
    {
        // Every call's first attempt answers 503; the retry is recorded. RANDOM picks among three endpoints, so a retry
        // that may return does so about a third of the time.
        var upstream = new FirstAttemptFails();
        using var mesh = InMemoryMesh.Create($$"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec: { host: reviews, trafficPolicy: { loadBalancer: { simple: RANDOM } } }
            ---
            {{InMemoryMesh.VirtualService($"  - {{ retries: {{ attempts: 1, retryOn: \"503\", retryIgnorePreviousHosts: {(avoid ? "true" : "false")} }}, route: [{{ destination: {{ host: reviews }} }}] }}")}}
            """, upstream: upstream);

        for (var i = 0; i < 60; i++)
        {
            Assert.Matches("^v[123]$", await mesh.SendAsync("http://reviews/"));
        }

        // Avoiding, the pick is redrawn up to five times (Envoy's host_selection_retry_max_attempts, Istio's 5) and may
        // still land on the endpoint tried: (1/3)^5 per call, about 0.25 returns in 60 calls (4 or more: ~1e-4). Not
        // avoiding, a third return: about 20 (3 or fewer: ~1e-7).
        var returned = upstream.Pairs.Count(p => p.First == p.Retry);
        if (avoid)
        {
            Assert.InRange(returned, 0, 3);
        }
        else
        {
            Assert.InRange(returned, 4, 59);
        }
    }

    /// <summary>Fails the first attempt of each request with 503 and answers the next with the endpoint's subset.</summary>
    private sealed class FirstAttemptFails : HttpMessageHandler
    {
        private readonly System.Runtime.CompilerServices.ConditionalWeakTable<HttpRequestMessage, string> _first = new();

        public System.Collections.Concurrent.ConcurrentQueue<(string First, string Retry)> Pairs { get; } = new();

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var endpoint = request.RequestUri!.Authority;
            if (!_first.TryGetValue(request, out var first))
            {
                _first.Add(request, endpoint);
                return Task.FromResult(new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { Content = new StringContent("busy") });
            }

            Pairs.Enqueue((first, endpoint));
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent($"v{request.RequestUri.Port - 1000}") });
        }
    }
}
