using System.Net;
using System.Text.Json;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.EndToEnd;

/// <summary><c>MapMeshDebug()</c>: what a workload's data plane holds and sees, as an Envoy sidecar's admin endpoints show it.</summary>
public sealed class DebugEndpointTests : MeshTestBase
{
    [Fact]
    public async Task TheDump_ShowsTheConfigInForce_TheDestinations_AndAnEjectedEndpoint()
    {
        var broken = await StartAsync("reviews", "v1");
        var healthy = await StartAsync("reviews", "v1");
        broken.Behavior = _ => Task.FromResult<IResult?>(Results.StatusCode(500));
        ControlPlane.WriteConfig("reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                connectionPool: { http: { http2MaxRequests: 10 } }
                outlierDetection: { consecutive5xxErrors: 1, baseEjectionTime: 5m, maxEjectionPercent: 100 }
              subsets: [{ name: v1, labels: { version: v1 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - name: canary
                match: [{ headers: { x-canary: { exact: "1" } } }]
                route: [{ destination: { host: reviews, subset: v1 } }]
              - name: default
                route: [{ destination: { host: reviews } }]
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: deny-admin }
            spec:
              selector: { matchLabels: { app: productpage } }
              action: DENY
              rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]
            ---
            apiVersion: security.istio.io/v1
            kind: RequestAuthentication
            metadata: { name: idp }
            spec:
              selector: { matchLabels: { app: productpage } }
              jwtRules: [{ issuer: "https://idp.example.test", jwksUri: "https://127.0.0.1:1/jwks" }]
            """);
        var productpage = await StartAsync("productpage", "v1", app: a => a.MapMeshDebug());
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2 && s.Routes[1].Targets[0].Endpoints is { Outlier: not null, Endpoints.Length: 2 } && !productpage.Snapshot.Authorization.IsEmpty && !productpage.Snapshot.Jwt.IsEmpty, "the rules and both endpoints apply");
        var http = productpage.CreateClient();
        for (var i = 0; i < 4; i++)
        {
            using var _ = await http.GetAsync("http://reviews/");
        }

        using var plain = new HttpClient();
        using var response = await plain.GetAsync(new Uri(productpage.Address, "/debug/mesh"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var dump = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = dump.RootElement;

        Assert.Equal("productpage", root.GetProperty("workload").GetProperty("service").GetString());
        Assert.Equal(productpage.Snapshot.Version, root.GetProperty("config").GetProperty("version").GetString());
        Assert.True(root.GetProperty("config").GetProperty("ready").GetBoolean());
        Assert.True(root.GetProperty("config").GetProperty("controlPlaneConnected").GetBoolean());
        var inbound = root.GetProperty("inbound");
        Assert.Equal("PERMISSIVE", inbound.GetProperty("mtls").GetProperty("mode").GetString());
        var policy = Assert.Single(inbound.GetProperty("authorizationPolicies").EnumerateArray());
        Assert.Equal(("DENY", false), (policy.GetProperty("action").GetString(), policy.GetProperty("dryRun").GetBoolean()));
        Assert.Contains("deny-admin", policy.GetProperty("name").GetString(), StringComparison.Ordinal);
        var issuer = Assert.Single(inbound.GetProperty("jwtIssuers").EnumerateArray());
        Assert.Equal("https://idp.example.test", issuer.GetProperty("issuer").GetString());
        Assert.Equal(JsonValueKind.Null, issuer.GetProperty("keys").ValueKind); // a loopback jwksUri is not fetched: its tokens are refused

        var reviews = root.GetProperty("services").EnumerateArray().Single(s => s.GetProperty("host").GetString() == ReviewsHost);
        Assert.Equal(
            [("canary", $"outbound||v1|{ReviewsHost}"), ("default", $"outbound|||{ReviewsHost}")],
            reviews.GetProperty("routes").EnumerateArray().Select(r => (r.GetProperty("name").GetString(), r.GetProperty("destinations")[0].GetProperty("name").GetString())));

        var destinations = root.GetProperty("destinations").EnumerateArray().ToDictionary(d => d.GetProperty("name").GetString()!);
        var service = destinations[$"outbound|||{ReviewsHost}"];
        Assert.Equal("ROUND_ROBIN", service.GetProperty("loadBalancer").GetString());
        Assert.True(service.GetProperty("outlierDetection").GetBoolean());
        Assert.Equal(10, service.GetProperty("maxRequests").GetInt32());
        Assert.Equal(0, service.GetProperty("requestsInFlight").GetInt32());
        var endpoints = service.GetProperty("endpoints").EnumerateArray().ToDictionary(e => e.GetProperty("address").GetString()!);
        var ejected = endpoints[broken.Address.Authority];
        Assert.Equal("ejected", ejected.GetProperty("health").GetString());
        Assert.Equal(1, ejected.GetProperty("timesEjected").GetInt32());
        Assert.InRange(ejected.GetProperty("ejectedUntil").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(3), DateTimeOffset.UtcNow.AddMinutes(6));
        Assert.Equal("healthy", endpoints[healthy.Address.Authority].GetProperty("health").GetString());
        Assert.False(endpoints[healthy.Address.Authority].TryGetProperty("ejectedUntil", out var _));
        Assert.Contains($"outbound||v1|{ReviewsHost}", destinations.Keys);
    }

    [Fact]
    public void MapMeshDebug_WithoutTheMeshServices_SaysWhatIsMissing()
    {
        var builder = WebApplication.CreateSlimBuilder();
        using var app = builder.Build();

        var error = Assert.Throws<InvalidOperationException>(() => app.MapMeshDebug());
        Assert.Contains("AddMesh()", error.Message, StringComparison.Ordinal);
    }
}
