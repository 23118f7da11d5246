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
        ControlPlane.WriteConfig("reviews-route.yaml", JasonToRatings.Replace("type: URLRewrite", "type: CORS", StringComparison.Ordinal).Replace("urlRewrite:", "cors:", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/config")).EnumerateArray().Any(f =>
            f.GetProperty("file").GetString()!.EndsWith("reviews-route.yaml", StringComparison.Ordinal) && !f.GetProperty("accepted").GetBoolean()
            && f.GetProperty("diagnostics").EnumerateArray().Any(d => d.GetProperty("path").GetString() == "spec.rules[1].filters[0].cors")), "the control plane rejects the file");
        Assert.Equal("ratings|v1|/ratings/1", await GetAsync(client, "alice"));
        Assert.Equal("reviews|v1|/reviews/1", await GetAsync(client, "jason"));
    }
}
