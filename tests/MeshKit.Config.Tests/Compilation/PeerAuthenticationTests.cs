using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

/// <summary>Istio's PeerAuthentication precedence, as compiled into each workload's inbound policy and its endpoints.</summary>
public sealed class PeerAuthenticationTests
{
    private static readonly Dictionary<string, string> Reviews = new() { ["app"] = "reviews" };

    private static PeerAuthenticationPolicy Resolve(string yaml, string ns = "default", IReadOnlyDictionary<string, string>? labels = null)
    {
        var result = ConfigParser.Parse(yaml, "test.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        var mesh = MeshCompiler.Compile(new ConfigSet(result.Resources), []);
        var view = mesh.ViewFor(ns, labels ?? Reviews);
        return view.OfType(ResourceTypes.Inbound)[ResourceTypes.InboundResourceName].Resource_.Unpack<InboundPolicy>().PeerAuthentication;
    }

    private static string Policy(string name, string ns, string mode, string selector = "", string ports = "") => $$"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: { name: {{name}}, namespace: {{ns}} }
        spec:
          {{selector}}
          mtls: { mode: {{mode}} }
          {{ports}}
        ---
        """ + "\n";

    [Fact]
    public void NoPolicy_IsPermissive()
    {
        Assert.Equal(MtlsMode.Permissive, Resolve("apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec: {}\n").Mode);
    }

    [Fact]
    public void Workload_BeatsNamespace_BeatsMesh()
    {
        var mesh = Policy("mesh", "istio-system", "STRICT");
        var space = Policy("ns", "default", "PERMISSIVE");
        var workload = Policy("w", "default", "DISABLE", "selector: { matchLabels: { app: reviews } }");

        Assert.Equal(MtlsMode.Strict, Resolve(mesh).Mode);
        Assert.Equal(MtlsMode.Permissive, Resolve(mesh + space).Mode);
        Assert.Equal(MtlsMode.Disable, Resolve(mesh + space + workload).Mode);
        Assert.Equal(MtlsMode.Permissive, Resolve(mesh + space + workload, labels: new Dictionary<string, string> { ["app"] = "ratings" }).Mode);
        Assert.Equal(MtlsMode.Strict, Resolve(mesh + space + workload, ns: "other").Mode);
    }

    [Fact]
    public void Unset_Inherits_AndPortLevelOverrides()
    {
        var mesh = Policy("mesh", "istio-system", "STRICT");
        var workload = Policy("w", "default", "UNSET", "selector: { matchLabels: { app: reviews } }", "portLevelMtls: { 9080: { mode: DISABLE }, 9090: { mode: UNSET } }");

        var resolved = Resolve(mesh + workload);

        Assert.Equal(MtlsMode.Strict, resolved.Mode);
        Assert.Equal(MtlsMode.Disable, resolved.PortModes[9080]);
        Assert.Equal(MtlsMode.Strict, resolved.PortModes[9090]);
        Assert.Equal(["PeerAuthentication istio-system/mesh", "PeerAuthentication default/w"], resolved.Sources);
    }

    [Fact]
    public void EndpointPorts_WhereMtlsIsDisabled_AreMarked_ForAutomaticMtls()
    {
        var result = ConfigParser.Parse(Policy("w", "default", "STRICT", "selector: { matchLabels: { app: reviews } }", "portLevelMtls: { 9080: { mode: DISABLE } }"), "test.yaml");
        var workload = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = "r1", Address = "10.0.0.1", Identity = "spiffe://cluster.local/ns/default/sa/reviews" };
        workload.Labels["app"] = "reviews";
        workload.Ports.Add(new WorkloadPort { Name = "http", TargetPort = 9080, ServicePort = 80 });
        workload.Ports.Add(new WorkloadPort { Name = "grpc", TargetPort = 9090, ServicePort = 90 });

        var mesh = MeshCompiler.Compile(new ConfigSet(result.Resources), [workload]);
        var cluster = mesh.ViewFor("default").OfType(ResourceTypes.Cluster)["reviews.default.svc.cluster.local"].Resource_.Unpack<ServiceCluster>();

        var endpoint = Assert.Single(cluster.Endpoints);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", endpoint.Identity);
        Assert.True(endpoint.Ports.Single(p => p.TargetPort == 9080).MtlsDisabled);
        Assert.False(endpoint.Ports.Single(p => p.TargetPort == 9090).MtlsDisabled);
    }

    [Fact]
    public void AuthorizationPolicies_ApplyMeshWide_NamespaceWide_OrToTheWorkloadsTheySelect()
    {
        static string Policy(string name, string ns, string selector = "") => $$"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: {{name}}, namespace: {{ns}} }
            spec:
              {{selector}}
              action: DENY
              rules: [{}]
            ---

            """;
        var yaml = Policy("mesh", "istio-system") + Policy("ns", "default") + Policy("other-ns", "other")
            + Policy("selects", "default", "selector: { matchLabels: { app: reviews } }")
            + Policy("selects-other", "default", "selector: { matchLabels: { app: ratings } }");
        var result = ConfigParser.Parse(yaml, "test.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        var mesh = MeshCompiler.Compile(new ConfigSet(result.Resources), []);

        string[] Names(string ns, IReadOnlyDictionary<string, string> labels) =>
            [.. mesh.ViewFor(ns, labels).OfType(ResourceTypes.Inbound)[ResourceTypes.InboundResourceName].Resource_.Unpack<InboundPolicy>().Authorization.Select(a => a.Name)];

        Assert.Equal(["default/ns", "default/selects", "istio-system/mesh"], Names("default", Reviews));
        Assert.Equal(["default/ns", "istio-system/mesh"], Names("default", new Dictionary<string, string> { ["app"] = "productpage" }));
        Assert.Equal(["istio-system/mesh", "other/other-ns"], Names("other", Reviews));
    }

    [Fact]
    public void TwoNamespaceWidePolicies_TheSecondByNameIsReported()
    {
        var parsed = ConfigParser.Parse(Policy("b", "default", "STRICT") + Policy("a", "default", "PERMISSIVE") + Policy("w", "default", "DISABLE", "selector: { matchLabels: { app: reviews } }"), "test.yaml");

        var finding = Assert.Single(MeshCompiler.Compile(new ConfigSet(parsed.Resources), []).Diagnostics);

        Assert.Equal("PeerAuthentication default/b", finding.Resource);
        Assert.Equal("metadata.name", finding.Path);
    }
}
