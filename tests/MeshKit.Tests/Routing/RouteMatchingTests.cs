using System.Net;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Http;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.Extensions.Options;

namespace MeshKit.Tests.Routing;

/// <summary>
/// Route matching semantics through the real compile path (YAML → control-plane compiler → snapshot) and the real
/// handler; the only stand-in is the terminal handler, which records where each request was sent.
/// </summary>
public class RouteMatchingTests
{
    // Endpoint ports encode the subset: v1 → 1001, v2 → 1002, v3 → 1003.
    private static HttpMessageInvoker Mesh(string virtualService, string ns = "default")
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets:
              - { name: v1, labels: { version: v1 } }
              - { name: v2, labels: { version: v2 } }
              - { name: v3, labels: { version: v3 } }
              - { name: none, labels: { version: v9 } }
            ---

            """ + virtualService;
        var parsed = ConfigParser.Parse(yaml, "routes.yaml");
        Assert.False(parsed.HasErrors, string.Join(Environment.NewLine, parsed.Diagnostics));
        var workloads = new[] { "v1", "v2", "v3" }.Select((v, i) =>
        {
            var w = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = v, Address = "10.0.0.1" };
            w.Labels["version"] = v;
            w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = (uint)(1001 + i) });
            return w;
        });
        var view = MeshCompiler.Compile(new ConfigSet(parsed.Resources), workloads).ViewFor(ns);
        var snapshot = SnapshotBuilder.Build(view.Resources, ns, "1", ready: true);
        var provider = new MeshSnapshotProvider(Options.Create(new MeshOptions()), TimeProvider.System);
        provider.PublishFromFile(snapshot);
        return new HttpMessageInvoker(new MeshHandler(provider) { InnerHandler = new Recorder() });
    }

    private static string Vs(string http) => $$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews }
        spec:
          hosts: [reviews]
          http:
        {{http}}
        """;

    private static async Task<string> Send(HttpMessageInvoker mesh, string url, string method = "GET", params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await mesh.SendAsync(request, CancellationToken.None);
        if (response.Headers.TryGetValues(MeshHandler.ResponseFlagsHeader, out var flags))
        {
            return $"{(int)response.StatusCode} {flags.Single()}";
        }

        return await response.Content.ReadAsStringAsync();
    }

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

    /// <summary>Answers with the subset the endpoint port encodes, or "not-mesh" when the request was not rewritten.</summary>
    private sealed class Recorder : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var uri = request.RequestUri!;
            var body = uri.Host == "10.0.0.1" ? $"v{uri.Port - 1000}" : "not-mesh";
            var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(body) };
            response.Headers.Add("x-sent-to", uri.ToString());
            response.Headers.Add("x-sent-host", request.Headers.Host ?? string.Empty);
            return Task.FromResult(response);
        }
    }
}
