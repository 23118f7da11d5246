using System.Text.Json.Nodes;
using MeshKit.ControlPlane.Sources;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.ControlPlane;

/// <summary>
/// The status of the cluster's mesh routes (HTTPRoutes and GRPCRoutes attached to Services), written as Gateway API
/// requires and Istio writes it: per Service parent, <c>Accepted</c> and <c>ResolvedRefs</c> at the route's generation,
/// beside other controllers' entries, and only when it changes. Real control plane, a fake API server on loopback.
/// </summary>
public sealed class KubernetesRouteStatusTests : MeshTestBase
{
    private const string Services = "api/v1/services";
    private const string HttpRoutes = "apis/gateway.networking.k8s.io/v1/httproutes";

    private FakeKubernetesApi _api = null!;

    public override async Task InitializeAsync()
    {
        _api = await FakeKubernetesApi.StartAsync();
        Owned.Add(_api);
        foreach (var name in new[] { "reviews", "ratings" })
        {
            _api.Put(Services, $$"""{"apiVersion":"v1","kind":"Service","metadata":{"name":"{{name}}","namespace":"default"},"spec":{"ports":[{"name":"http","port":9080}],"clusterIP":"10.0.0.9"} }""");
        }

        ControlPlane = await TestControlPlane.StartAsync(configure: _api.Configure);
    }

    // A route to reviews' port 9080, also attached to a Gateway whose controller wrote its own entry.
    private static string Route(int generation, string backends, string parent = "reviews", string filters = "", string section = "") => $$"""
        {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
         "metadata":{"name":"reviews","namespace":"default","generation":{{generation}} },
         "spec":{"parentRefs":[{"group":"","kind":"Service","name":"{{parent}}","port":9080{{section}} },{"name":"edge"}],
                 "rules":[{ {{filters}} "backendRefs":[{{backends}}] }]},
         "status":{"parents":[{"parentRef":{"name":"edge"},"controllerName":"istio.io/gateway-controller",
                   "conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"","observedGeneration":1,"lastTransitionTime":"2026-11-01T00:00:00Z"}]}]} }
        """;

    private JsonObject[] Parents => [.. (_api.Get(HttpRoutes, "default", "reviews")?["status"]?["parents"] as JsonArray ?? []).OfType<JsonObject>()];

    private JsonObject? Ours => Parents.FirstOrDefault(p => p["controllerName"]?.GetValue<string>() == KubernetesRouteStatus.ControllerName);

    private string? Condition(string type, string field = "status") =>
        (Ours?["conditions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(c => c["type"]?.GetValue<string>() == type)?[field]?.ToString();

    [Fact]
    public async Task AMeshRoute_IsToldItIsAccepted_AndWhetherItsBackendsResolve_AtItsGeneration_BesideOtherControllersEntries()
    {
        _api.Put(HttpRoutes, Route(1, """{"name":"reviews","port":9080},{"name":"missing","port":9080}"""));
        await Eventually.TrueAsync(() => Condition("ResolvedRefs") == "False", "the route's status is written");
        Assert.Equal(("True", "Accepted"), (Condition("Accepted"), Condition("Accepted", "reason")));
        Assert.Equal("BackendNotFound", Condition("ResolvedRefs", "reason"));
        Assert.Contains("missing.default.svc.cluster.local", Condition("ResolvedRefs", "message"), StringComparison.Ordinal);
        Assert.Equal("1", Condition("Accepted", "observedGeneration"));
        Assert.Equal("""{"group":"","kind":"Service","name":"reviews","port":9080}""", Ours!["parentRef"]!.ToJsonString());

        // The Gateway's entry is its controller's: kept as it was, and none of MeshKit's for it.
        Assert.Equal(2, Parents.Length);
        Assert.Equal("istio.io/gateway-controller", Parents[0]["controllerName"]!.GetValue<string>());

        // Settled: nothing is written again while nothing changes.
        await Task.Delay(TimeSpan.FromSeconds(1));
        var writes = _api.StatusWrites;
        var since = Condition("Accepted", "lastTransitionTime");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(writes, _api.StatusWrites);

        // The backend fixed (generation 2; a spec change leaves the status as it is): resolved, at the new
        // generation; Accepted kept its transition time.
        var changed = JsonNode.Parse(Route(2, """{"name":"ratings","port":9080}"""))!.AsObject();
        changed["status"] = _api.Get(HttpRoutes, "default", "reviews")!["status"]!.DeepClone();
        _api.Put(HttpRoutes, changed.ToJsonString());
        await Eventually.TrueAsync(() => Condition("ResolvedRefs") == "True" && Condition("ResolvedRefs", "observedGeneration") == "2", "the new generation's status is written");
        Assert.Equal(since, Condition("Accepted", "lastTransitionTime"));
    }

    [Theory]
    [InlineData("nowhere", "", "", "NoMatchingParent", "nowhere")]
    [InlineData("reviews", "", ",\"sectionName\":\"metrics\"", "NoMatchingParent", "sectionName 'metrics' names no port 9080")]
    [InlineData("reviews", "\"filters\":[{\"type\":\"ExtensionRef\",\"extensionRef\":{\"group\":\"example.com\",\"kind\":\"Filter\",\"name\":\"x\"}}],", "", "UnsupportedValue", "extensionRef")]
    public async Task ARouteThatIsNotInForce_IsToldWhy(string parent, string filters, string section, string reason, string named)
    {
        _api.Put(HttpRoutes, Route(1, """{"name":"reviews","port":9080}""", parent, filters, section));

        await Eventually.TrueAsync(() => Condition("Accepted") == "False", "the route is told it is not accepted");
        Assert.Equal(reason, Condition("Accepted", "reason"));
        Assert.Contains(named, Condition("Accepted", "message"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARoleWithoutTheStatusPermission_WritesNothing_AndTheRouteStillApplies()
    {
        _api.RefuseStatus = true;
        _api.Put(HttpRoutes, Route(1, """{"name":"ratings","port":9080}"""));

        var store = (IConfigStore)ControlPlane.Services.GetService(typeof(IConfigStore))!;
        await Eventually.TrueAsync(() => store.Current.Resources.Any(r => r.Source.File == "kubernetes/HTTPRoute/default/reviews"), "the route is read");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(0, _api.StatusWrites);
        Assert.Null(Ours);
    }
}
