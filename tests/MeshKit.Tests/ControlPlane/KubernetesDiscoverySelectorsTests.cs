using MeshKit.ControlPlane.Sources;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.ControlPlane;

/// <summary>
/// MeshConfig's <c>discoverySelectors</c>, as istiod applies them: of the cluster, only the namespaces whose labels a
/// selector matches are read (their Services, EndpointSlices and Istio resources; their root ConfigMaps), and a label
/// or selector that changes applies at once. Real control plane, a fake API server on loopback.
/// </summary>
public sealed class KubernetesDiscoverySelectorsTests : MeshTestBase
{
    private const string Namespaces = "api/v1/namespaces";
    private const string DestinationRules = "apis/networking.istio.io/v1/destinationrules";
    private const string ConfigMaps = "api/v1/configmaps";

    private readonly string _config = Directory.CreateTempSubdirectory("meshkit-selectors-").FullName;
    private FakeKubernetesApi _api = null!;

    public override async Task InitializeAsync()
    {
        _api = await FakeKubernetesApi.StartAsync();
        Owned.Add(_api);
        Namespace("shop", "istio-discovery: enabled");
        Namespace("legacy", "team: legacy");
        Namespace("istio-system", string.Empty);
        foreach (var ns in new[] { "shop", "legacy", "istio-system" })
        {
            _api.Put(DestinationRules, $$"""{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"{{ns}}"},"spec":{"host":"reviews"} }""");
        }

        // The selectors are in force from the start: nothing of the other namespaces is ever read or written.
        File.WriteAllText(Path.Combine(_config, "mesh.yaml"), Mesh("""
            discoverySelectors:
              - matchLabels: { istio-discovery: enabled }
              - matchExpressions: [{ key: team, operator: In, values: [payments] }]
            """));
        ControlPlane = await TestControlPlane.StartAsync(_config, configure: o =>
        {
            _api.Configure(o);
            o.KubernetesRootCertResync = TimeSpan.FromMilliseconds(200);
        });
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Directory.Delete(_config, recursive: true);
        Directory.Delete(_config + "-ca", recursive: true);
    }

    private IConfigStore Store => ControlPlane.Services.GetRequiredService<IConfigStore>();

    private string[] RulesIn => [.. Store.Current.Resources.Where(r => r.Kind == "DestinationRule").Select(r => r.Namespace).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task OnlyTheNamespacesASelectorPicks_AreRead_TheRootNamespaceAlways_AndLabelsAndSelectorsApplyAsTheyChange()
    {
        await Eventually.TrueAsync(() => RulesIn.SequenceEqual(["istio-system", "shop"]), "the picked namespace and the root namespace are read");

        // legacy joins the mesh (a label a selector matches), shop leaves it (its label goes).
        Namespace("legacy", "team: payments");
        await Eventually.TrueAsync(() => RulesIn.SequenceEqual(["istio-system", "legacy", "shop"]), "legacy's rule is read once its label matches");
        Namespace("shop", string.Empty);
        await Eventually.TrueAsync(() => RulesIn.SequenceEqual(["istio-system", "legacy"]), "shop's rule is dropped once its label goes");

        // Without selectors, every namespace is read again.
        Selectors(string.Empty);
        await Eventually.TrueAsync(() => RulesIn.SequenceEqual(["istio-system", "legacy", "shop"]), "every namespace is read without selectors");

        // The namespaces are watched: a label change is a watch event (the store lists them once; the root publisher
        // lists them on its own every resync).
        Assert.True(_api.Watches(Namespaces) >= 1);
        Assert.Equal(3, ControlPlane.Services.GetRequiredService<KubernetesConfigStore>().NamespacesRead);
    }

    [Fact]
    public async Task TheRootConfigMap_IsKeptInThePickedNamespacesOnly()
    {
        await Eventually.TrueAsync(() => _api.Get(ConfigMaps, "shop", "meshkit-root-cert") is not null, "the picked namespace gets the roots");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Null(_api.Get(ConfigMaps, "legacy", "meshkit-root-cert"));

        Namespace("legacy", "istio-discovery: enabled");
        await Eventually.TrueAsync(() => _api.Get(ConfigMaps, "legacy", "meshkit-root-cert") is not null, "a namespace that joins gets them");
    }

    private void Namespace(string name, string labels) => _api.Put(Namespaces, $$"""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"{{name}}","labels":{ {{Json(labels)}} } } }""");

    // "a: b" as the JSON members "a": "b".
    private static string Json(string labels) => labels.Length == 0 ? string.Empty : string.Join(",", labels.Split(',').Select(l => l.Split(':')).Select(p => $"\"{p[0].Trim()}\":\"{p[1].Trim()}\""));

    private void Selectors(string yaml) => ControlPlane.WriteConfig("mesh.yaml", Mesh(yaml));

    private static string Mesh(string yaml) => $$"""
        apiVersion: meshkit.dev/v1alpha1
        kind: MeshConfig
        metadata: { name: mesh, namespace: istio-system }
        spec:
          rootNamespace: istio-system
        {{string.Join('\n', yaml.Split('\n').Select(l => "  " + l))}}
        """;
}
