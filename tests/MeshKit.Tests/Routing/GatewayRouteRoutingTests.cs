using System.Net;
using MeshKit.Protocol.V1;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Routing;

/// <summary>
/// HTTPRoutes attached to a Service (Gateway API for the mesh) through the real compile path and handler: path
/// prefixes by whole segments, Gateway API's precedence across rules, prefix rewrites and redirects as it defines them.
/// </summary>
public class GatewayRouteRoutingTests
{
    // Besides reviews (v1–v3 on 10.0.0.1), services reviews-v2 on 10.0.0.2 and ratings on 10.0.0.3: the recorder answers with their address.
    private static HttpMessageInvoker Mesh(string rules, string parentPort = "") => InMemoryMesh.Create($$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: { name: reviews }
        spec:
          parentRefs: [{ group: "", kind: Service, name: reviews{{parentPort}} }]
          rules:
        {{rules}}
        """, extraWorkloads: Others);

    private static WorkloadAnnouncement[] Others => [Other("reviews-v2", "10.0.0.2", 2001), Other("ratings", "10.0.0.3", 3001)];

    private static WorkloadAnnouncement Other(string service, string address, uint port)
    {
        var w = new WorkloadAnnouncement { Service = service, Namespace = "default", InstanceId = service, Address = address };
        w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = port });
        return w;
    }

    private static async Task<(int Status, string Body, string? SentTo, string? Location)> Send(HttpMessageInvoker mesh, string url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        using var response = await mesh.SendAsync(request, CancellationToken.None);
        var sentTo = response.Headers.TryGetValues("x-sent-to", out var to) ? to.Single() : null;
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(), sentTo, response.Headers.Location?.ToString());
    }

    [Theory]
    [InlineData("/api", "10.0.0.2:2001")]
    [InlineData("/api/", "10.0.0.2:2001")]
    [InlineData("/api/orders", "10.0.0.2:2001")]
    [InlineData("/api/login", "10.0.0.3:3001")] // exact beats the prefix written before it
    [InlineData("/apix", "reviews")] // a prefix matches whole segments
    [InlineData("/", "reviews")]
    public async Task PathPrefixesMatchWholeSegments_AndTheMostSpecificMatchWins_WhereverItIsWritten(string path, string expected)
    {
        using var mesh = Mesh("""
              - backendRefs: [{ name: reviews, port: 9080 }]
              - matches: [{ path: { type: PathPrefix, value: /api/ } }]
                backendRefs: [{ name: reviews-v2, port: 9080 }]
              - matches: [{ path: { type: Exact, value: /api/login } }]
                backendRefs: [{ name: ratings, port: 9080 }]
            """);

        var (status, body, _, _) = await Send(mesh, "http://reviews" + path);

        Assert.Equal(200, status);
        Assert.Equal(expected, body.StartsWith('v') ? "reviews" : body);
    }

    [Theory]
    [InlineData("/", "/api/users?x=1", "/users?x=1")]
    [InlineData("/", "/api", "/")]
    [InlineData("/v2/", "/api/users", "/v2/users")]
    [InlineData("/v2", "/api/", "/v2/")]
    [InlineData("/v2", "/api", "/v2")]
    public async Task ReplacePrefixMatch_ReplacesTheMatchedSegments(string replacement, string path, string sent)
    {
        using var mesh = Mesh($$"""
              - matches: [{ path: { type: PathPrefix, value: /api } }]
                filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: "{{replacement}}" } } }]
                backendRefs: [{ name: ratings, port: 9080 }]
            """);

        var (_, _, sentTo, _) = await Send(mesh, "http://reviews" + path);

        Assert.Equal("http://10.0.0.3:3001" + sent, sentTo);
    }

    [Fact]
    public async Task ReplaceFullPath_ReplacesAllOfIt_AndARedirectUsesGatewayApisDefaults()
    {
        using var mesh = Mesh("""
              - matches: [{ path: { type: PathPrefix, value: /full } }]
                filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /fixed } } }]
                backendRefs: [{ name: ratings, port: 9080 }]
              - matches: [{ path: { type: PathPrefix, value: /old } }]
                filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } } }]
              - matches: [{ path: { type: PathPrefix, value: /moved } }]
                filters: [{ type: RequestRedirect, requestRedirect: { hostname: elsewhere, statusCode: 301 } }]
              - matches: [{ path: { type: PathPrefix, value: /nothing } }]
              - matches: [{ path: { type: PathPrefix, value: /unknown } }]
                backendRefs: [{ name: nowhere, port: 9080 }]
            """);

        Assert.Equal("http://10.0.0.3:3001/fixed", (await Send(mesh, "http://reviews/full/a/b")).SentTo);

        var redirect = await Send(mesh, "http://reviews:9080/old/x?q=1");
        Assert.Equal((302, "https://reviews/new/x?q=1"), (redirect.Status, redirect.Location)); // the scheme's port, 443
        var moved = await Send(mesh, "http://reviews:9080/moved/y");
        Assert.Equal((301, "http://elsewhere:9080/moved/y"), (moved.Status, moved.Location)); // the request's port

        Assert.Equal(500, (await Send(mesh, "http://reviews/nothing")).Status); // a rule without backends
        Assert.Equal(500, (await Send(mesh, "http://reviews/unknown")).Status); // a backend the mesh does not know
        Assert.Equal(404, (await Send(mesh, "http://reviews/unrouted")).Status); // a route replaces the Service's default routing
    }

    [Theory]
    [InlineData(", port: 9080", "http://reviews/a", 200)] // the call goes to the service's only port, 9080
    [InlineData(", port: 9080", "http://reviews:9080/a", 200)]
    [InlineData(", port: 9999", "http://reviews/a", 404)] // a port the calls do not go to: the route takes none of them
    public async Task AParentsPort_TakesTheCallsToThatServicePort(string parentPort, string url, int status)
    {
        using var mesh = Mesh("  - backendRefs: [{ name: ratings, port: 9080 }]", parentPort);

        Assert.Equal(status, (await Send(mesh, url)).Status);
    }

    [Theory]
    [InlineData("/helloworld.Greeter/SayHello", "10.0.0.3:3001")]
    [InlineData("/helloworld.Greeter/SayGoodbye", "10.0.0.2:2001")]
    [InlineData("/other.Greeter/SayHello", "reviews")]
    public async Task AGrpcRoute_RoutesByServiceAndMethod_TheMoreSpecificFirst(string path, string expected)
    {
        using var mesh = InMemoryMesh.Create("""
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: reviews }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews }]
              rules:
              - matches: [{ method: { service: helloworld.Greeter } }]
                backendRefs: [{ name: reviews-v2, port: 9080 }]
              - backendRefs: [{ name: reviews, port: 9080 }]
              - matches: [{ method: { service: helloworld.Greeter, method: SayHello } }]
                backendRefs: [{ name: ratings, port: 9080 }]
            """, extraWorkloads: Others);

        using var request = new HttpRequestMessage(HttpMethod.Post, "http://reviews" + path);
        using var response = await mesh.SendAsync(request, CancellationToken.None);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(expected, body.StartsWith('v') ? "reviews" : body);
    }
}
