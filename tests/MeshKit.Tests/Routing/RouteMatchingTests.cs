using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Routing;

/// <summary>Route matching semantics through the real compile path and handler (see <see cref="InMemoryMesh"/>).</summary>
public class RouteMatchingTests
{
    private static HttpMessageInvoker Mesh(string virtualService, string ns = "default") => InMemoryMesh.Create(InMemoryMesh.Subsets + virtualService, ns);

    private static string Vs(string http) => InMemoryMesh.VirtualService(http);

    private static Task<string> Send(HttpMessageInvoker mesh, string url, string method = "GET", params (string Name, string Value)[] headers) =>
        mesh.SendAsync(url, method, headers);

    [Fact]
    public async Task FirstMatchingRouteWins_ACatchAllShadowsLaterRoutes()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { prefix: /a } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: v2 } }]
              - match: [{ uri: { prefix: /b } }]
                route: [{ destination: { host: reviews, subset: v3 } }]
            """));

        Assert.Equal("v1", await Send(mesh, "http://reviews/a/x"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/b/x"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/"));
    }

    [Theory]
    [InlineData("/api", "v1")]
    [InlineData("/api/", "v2")]
    [InlineData("/apix", "v2")]
    [InlineData("/api/users/42", "v3")]
    [InlineData("/api/users/x", "v2")]
    [InlineData("/API", "404 NR")]
    [InlineData("/other", "404 NR")]
    public async Task ExactThenRegexThenPrefix_MatchTheWholePathAsIstioDoes(string path, string expected)
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { exact: /api } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - match: [{ uri: { regex: "/api/users/[0-9]+" } }]
                route: [{ destination: { host: reviews, subset: v3 } }]
              - match: [{ uri: { prefix: /api } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
            """));

        Assert.Equal(expected, await Send(mesh, "http://reviews" + path + "?query=ignored"));
    }

    [Fact]
    public async Task RegexIsAFullMatch_NotASubstringSearch()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { regex: "/v[0-9]" } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: v2 } }]
            """));

        Assert.Equal("v1", await Send(mesh, "http://reviews/v1"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/v1/more"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/x/v1"));
    }

    [Fact]
    public async Task HeaderMatch_ExactPrefixRegex_AndAllConditionsOfABlockMustHold()
    {
        using var mesh = Mesh(Vs("""
              - match:
                - headers: { end-user: { exact: jason } }
                  method: { exact: POST }
                route: [{ destination: { host: reviews, subset: v1 } }]
              - match:
                - headers: { x-canary: { prefix: "yes" } }
                - headers: { x-tier: { regex: "gold|platinum" } }
                route: [{ destination: { host: reviews, subset: v3 } }]
              - route: [{ destination: { host: reviews, subset: v2 } }]
            """));

        Assert.Equal("v1", await Send(mesh, "http://reviews/", "POST", ("end-user", "jason")));
        Assert.Equal("v2", await Send(mesh, "http://reviews/", "GET", ("end-user", "jason")));
        Assert.Equal("v2", await Send(mesh, "http://reviews/", "POST", ("end-user", "Jason")));
        Assert.Equal("v3", await Send(mesh, "http://reviews/", "GET", ("x-canary", "yes-please")));
        Assert.Equal("v3", await Send(mesh, "http://reviews/", "GET", ("x-tier", "gold")));
        Assert.Equal("v2", await Send(mesh, "http://reviews/", "GET", ("x-tier", "golden")));
        Assert.Equal("v2", await Send(mesh, "http://reviews/"));
    }

    [Fact]
    public async Task AuthoritySchemeAndPort_AreMatched()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ port: 9090 }]
                route: [{ destination: { host: reviews, subset: v3, port: { number: 9080 } } }]
              - match: [{ scheme: { exact: https } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - match: [{ authority: { prefix: "reviews.default" } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: none } }]
            """));

        Assert.Equal("v3", await Send(mesh, "http://reviews:9090/"));
        Assert.Equal("v2", await Send(mesh, "https://reviews/"));
        Assert.Equal("v1", await Send(mesh, "http://reviews.default.svc.cluster.local/"));
        Assert.Equal("503 UH", await Send(mesh, "http://reviews/"));
    }

    [Fact]
    public async Task IgnoreUriCase_MatchesAnyCase()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { prefix: /Reviews }, ignoreUriCase: true }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
            """));

        Assert.Equal("v2", await Send(mesh, "http://reviews/REVIEWS/1"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/reviews"));
        Assert.Equal("v1", await Send(mesh, "http://reviews/other"));
    }

    [Fact]
    public async Task WeightZero_GetsNothing_AndUnknownSubsetIs503()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { prefix: /ghost } }]
                route: [{ destination: { host: reviews, subset: v7 } }]
              - match: [{ uri: { prefix: /empty } }]
                route: [{ destination: { host: reviews, subset: none } }]
              - route:
                - { destination: { host: reviews, subset: v1 }, weight: 0 }
                - { destination: { host: reviews, subset: v2 }, weight: 100 }
            """));

        for (var i = 0; i < 200; i++)
        {
            Assert.Equal("v2", await Send(mesh, "http://reviews/"));
        }

        Assert.Equal("503 NC", await Send(mesh, "http://reviews/ghost"));
        Assert.Equal("503 UH", await Send(mesh, "http://reviews/empty"));
    }

    [Fact]
    public async Task ShortName_ResolvesOnlyInTheCallersNamespace()
    {
        using var local = Mesh(Vs("  - route: [{ destination: { host: reviews, subset: v1 } }]"), ns: "default");
        using var remote = Mesh(Vs("  - route: [{ destination: { host: reviews, subset: v1 } }]"), ns: "other");

        Assert.Equal("v1", await Send(local, "http://reviews/"));
        Assert.Equal("not-mesh", await Send(remote, "http://reviews/"));
        Assert.Equal("v1", await Send(remote, "http://reviews.default/"));
        Assert.Equal("v1", await Send(remote, "http://REVIEWS.default.svc.cluster.local:9080/"));
    }

    [Fact]
    public async Task MeshRewritesTheAddress_KeepsTheAuthority_AndRestoresTheRequest()
    {
        using var mesh = Mesh(Vs("  - route: [{ destination: { host: reviews, subset: v3 } }]"));
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews:9080/p?q=1");

        using var response = await mesh.SendAsync(request, CancellationToken.None);

        Assert.Equal("v3", await response.Content.ReadAsStringAsync());
        Assert.Equal("http://10.0.0.1:1003/p?q=1", response.Headers.GetValues("x-sent-to").Single());
        Assert.Equal("reviews:9080", response.Headers.GetValues("x-sent-host").Single());
        Assert.Equal(new Uri("http://reviews:9080/p?q=1"), request.RequestUri);
        Assert.Null(request.Headers.Host);
    }

    [Theory]
    [InlineData("http://reviews/a/b")]
    [InlineData("http://reviews/a/b?x=1&y=/c")]
    [InlineData("http://reviews/a%20b/%2F?q=%3F")]
    [InlineData("http://reviews/a/b#frag")]
    [InlineData("http://reviews/a/b?#frag")]
    [InlineData("http://reviews")]
    public void OutboundPath_IsTheUrisAbsolutePath(string url)
    {
        var uri = new Uri(url);

        Assert.Equal(uri.AbsolutePath, new MeshKit.Routing.OutboundRequest(new HttpRequestMessage(HttpMethod.Get, uri), uri).Path);
    }

    [Fact]
    public async Task PathMatch_IgnoresTheQuery()
    {
        using var mesh = Mesh(Vs("""
              - match: [{ uri: { exact: /a } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - route: [{ destination: { host: reviews, subset: v2 } }]
            """));

        Assert.Equal("v1", await Send(mesh, "http://reviews/a?b=/c"));
        Assert.Equal("v2", await Send(mesh, "http://reviews/a/?b"));
    }
}
