using System.Net;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// An HTTPRoute attached to a Service (Gateway API for the mesh), end to end: the control plane reads it from its
/// folder, pushes it to the callers of the Service, and their HttpClients route by it; a change applies live, and a
/// rejected one leaves the last good routes in force.
/// </summary>
public sealed class GatewayApiEndToEndTests : MeshTestBase
{
    private const string JasonToRatings = """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: { name: reviews }
        spec:
          parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
          rules:
          - backendRefs: [{ name: reviews, port: 9080 }]
          - matches: [{ path: { type: PathPrefix, value: /reviews }, headers: [{ name: end-user, value: jason }] }]
            filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /ratings } } }]
            backendRefs: [{ name: ratings, port: 9080 }]
        """;

    private static async Task<string> GetAsync(HttpClient client, string user)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/reviews/1");
        request.Headers.Add("end-user", user);
        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        return string.Join('|', body.Split('|').Take(3)); // service|version|path
    }

    [Fact]
    public async Task AnHttpRoute_RoutesTheServicesCallers_LiveUpdatesApply_ARejectedOneKeepsTheLastGood()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("ratings", "v1");
        var productpage = await StartAsync("productpage", "v1");
        var client = productpage.CreateClient();
        ControlPlane.WriteConfig("reviews-route.yaml", JasonToRatings);

        // The more specific match (a header besides the path) wins, though written after the catch-all.
        await Eventually.TrueAsync(async () => await GetAsync(client, "jason") == "ratings|v1|/ratings/1", "jason's calls go to ratings, the prefix rewritten");
        Assert.Equal("reviews|v1|/reviews/1", await GetAsync(client, "alice"));

        ControlPlane.WriteConfig("reviews-route.yaml", JasonToRatings.Replace("value: jason", "value: alice", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () => await GetAsync(client, "alice") == "ratings|v1|/ratings/1", "the change applies");
        Assert.Equal("reviews|v1|/reviews/1", await GetAsync(client, "jason"));

        // An unsupported filter rejects the file: the last good routes stay in force.
        ControlPlane.WriteConfig("reviews-route.yaml", JasonToRatings.Replace("type: URLRewrite", "type: ExtensionRef", StringComparison.Ordinal).Replace("urlRewrite:", "extensionRef:", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/config")).EnumerateArray().Any(f =>
            f.GetProperty("file").GetString()!.EndsWith("reviews-route.yaml", StringComparison.Ordinal) && !f.GetProperty("accepted").GetBoolean()
            && f.GetProperty("diagnostics").EnumerateArray().Any(d => d.GetProperty("path").GetString() == "spec.rules[1].filters[0].extensionRef")), "the control plane rejects the file");
        Assert.Equal("ratings|v1|/ratings/1", await GetAsync(client, "alice"));
        Assert.Equal("reviews|v1|/reviews/1", await GetAsync(client, "jason"));
    }

    [Fact]
    public async Task TheCorsFilter_IsAppliedByTheDestination_WithItsWildcardsAnsweredAsGatewayApiSays()
    {
        var reviews = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("reviews-route.yaml", """
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews }]
              rules:
              - filters:
                - type: CORS
                  cors:
                    allowOrigins: ["https://*.partner.example"]
                    allowMethods: ["*"]
                    allowHeaders: ["*"]
                    exposeHeaders: ["*"]
                    allowCredentials: true
                backendRefs: [{ name: reviews, port: 9080 }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.OwnService?.HasCors == true, "the route reaches the destination");
        var http = productpage.CreateClient();

        Task<HttpResponseMessage> Send(HttpMethod method, string origin, bool preflight) => preflight
            ? CorsRequests.SendAsync(http, "http://reviews/items", method, origin, "PUT", "x-user,x-tenant")
            : CorsRequests.SendAsync(http, "http://reviews/items", method, origin);

        // With credentials, '*' cannot go back as it is (browsers read it literally): the preflight gets what it asked.
        using var preflight = await Send(HttpMethod.Options, "https://eu.shop.partner.example", preflight: true);
        Assert.Equal(HttpStatusCode.OK, preflight.StatusCode);
        Assert.Equal("https://eu.shop.partner.example", preflight.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal("PUT", preflight.Headers.GetValues("Access-Control-Allow-Methods").Single());
        Assert.Equal("x-user,x-tenant", preflight.Headers.GetValues("Access-Control-Allow-Headers").Single());
        Assert.Equal("5", preflight.Headers.GetValues("Access-Control-Max-Age").Single()); // Gateway API's default
        Assert.Equal("true", preflight.Headers.GetValues("Access-Control-Allow-Credentials").Single());

        // The wildcard takes labels to the left of the domain only: the domain itself, or another port, is not allowed.
        foreach (var other in new[] { "https://partner.example", "https://eu.partner.example:8443", "http://eu.partner.example" })
        {
            using var refused = await Send(HttpMethod.Options, other, preflight: true);
            Assert.StartsWith("reviews|", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal); // on to the app
            Assert.False(refused.Headers.Contains("Access-Control-Allow-Origin"), other);
        }

        // The actual request exposes the response's own headers (not the CORS ones).
        using var actual = await Send(HttpMethod.Get, "https://eu.partner.example", preflight: false);
        Assert.Equal("https://eu.partner.example", actual.Headers.GetValues("Access-Control-Allow-Origin").Single());
        var exposed = actual.Headers.GetValues("Access-Control-Expose-Headers").Single().Split(',');
        Assert.Contains("Content-Type", exposed);
        Assert.DoesNotContain(exposed, h => h.StartsWith("Access-Control", StringComparison.Ordinal));
    }
}
