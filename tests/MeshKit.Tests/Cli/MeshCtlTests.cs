using System.Text.Json;
using MeshKit.Cli;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MeshKit.Tests.Cli;

/// <summary>meshctl against a real control plane and real workloads.</summary>
public sealed class MeshCtlTests : MeshTestBase, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("meshctl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = MeshCtl.Run([.. args, "--admin-address", ControlPlane.AdminAddress.ToString()], output, error);
        return (code, output.ToString(), error.ToString());
    }

    private string Write(string name, string yaml)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact]
    public async Task Analyze_ReportsEverySourcesFindings_AndTheMeshsOwn_AndFailsWhileASourceIsRejected()
    {
        await StartAsync("reviews", "v1");
        var (code, output, _) = Run("analyze");
        Assert.Equal(0, code);
        Assert.Contains("No findings", output, StringComparison.Ordinal);

        // A route to a subset no DestinationRule defines (a finding across resources), and a file that does not validate.
        ControlPlane.WriteConfig("vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: reviews }\nspec:\n  hosts: [reviews]\n  http: [{ route: [{ destination: { host: reviews, subset: v9 } }] }]\n");
        ControlPlane.WriteConfig("bad.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: ratings }\nspec:\n  host: ratings\n  trafficPolicy: { loadBalancer: { simple: FASTEST } }\n");
        await Eventually.TrueAsync(() => Run("analyze") is { Code: 1 } result && result.Output.Contains("subset 'v9'", StringComparison.Ordinal), "both are found");

        (code, output, _) = Run("analyze");
        Assert.Contains("bad.yaml (rejected: its last good version is in force)", output, StringComparison.Ordinal);
        Assert.Contains("bad.yaml:6:", output, StringComparison.Ordinal);
        Assert.Contains("vs.yaml:6:", output, StringComparison.Ordinal);
        Assert.Contains("1 error(s) in 1 rejected source(s), 1 warning(s).", output, StringComparison.Ordinal);

        (code, output, _) = Run("analyze", "-o", "json");
        Assert.Equal(1, code);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal("bad.yaml", json.RootElement.GetProperty("sources")[0].GetProperty("file").GetString());
            Assert.Contains("subset 'v9'", json.RootElement.GetProperty("findings")[0].GetProperty("text").GetString(), StringComparison.Ordinal);
        }

        // Fixed: warnings alone do not fail it.
        File.Delete(Path.Combine(ControlPlane.ConfigDirectory, "bad.yaml"));
        await Eventually.TrueAsync(() => Run("analyze").Code == 0, "nothing is rejected any more");
    }

    [Fact]
    public async Task Apply_RoutesLive_GetListsIt_DeleteRemovesIt()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var productpage = await StartAsync("productpage", "v1");
        var file = Write("reviews-v2.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]
            """);

        var (code, output, error) = Run("apply", "-f", file);

        Assert.True(code == 0, error);
        Assert.Contains("reviews-v2.yaml applied: DestinationRule default/reviews, VirtualService default/reviews", output, StringComparison.Ordinal);
        await Eventually.TrueAsync(async () => (await productpage.CreateClient().GetStringAsync("http://reviews/")).StartsWith("reviews|v2|", StringComparison.Ordinal), "routed to v2");

        (code, output, _) = Run("get", "VirtualService");
        Assert.Equal(0, code);
        Assert.Contains("VirtualService  default    reviews  reviews-v2.yaml:", output, StringComparison.Ordinal);

        // As kubectl and istioctl users type kinds: plural, short name, with the group, any case; 'all'.
        foreach (var typed in new[] { "virtualservices", "vs", "VIRTUALSERVICE", "virtualservices.networking.istio.io" })
        {
            (code, output, _) = Run("get", typed);
            Assert.Equal(0, code);
            Assert.Contains("VirtualService  default    reviews  reviews-v2.yaml:", output, StringComparison.Ordinal);
            Assert.DoesNotContain("DestinationRule", output, StringComparison.Ordinal);
        }

        Assert.Contains("DestinationRule  default    reviews  reviews-v2.yaml:", Run("get", "dr").Output, StringComparison.Ordinal);

        // Gateway API's routes for the mesh are kinds of their own.
        var route = Write("route.yaml", """
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: ratings }
            spec:
              parentRefs: [{ group: "", kind: Service, name: ratings }]
              rules: [{ backendRefs: [{ name: ratings, port: 9080 }] }]
            """);
        Assert.Equal(0, Run("apply", "-f", route).Code);
        Assert.Contains("GRPCRoute  default    ratings  route.yaml:", Run("get", "grpcroutes.gateway.networking.k8s.io").Output, StringComparison.Ordinal);
        Assert.Equal(0, Run("delete", "-f", route).Code);
        Assert.Contains("DestinationRule", Run("get", "all").Output, StringComparison.Ordinal);

        // A Kubernetes Service is a host whose endpoints its selector picks among the live workloads.
        var service = Write("reviews-v1.yaml", """
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v1 }
            spec:
              selector: { app: reviews, version: v1 }
              ports: [{ port: 80, name: http }]
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: critics }
            spec: { type: ExternalName, externalName: reviews-v1.default.svc.cluster.local }
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: reviews-vm, labels: { kubernetes.io/service-name: reviews-v1 } }
            addressType: IPv4
            ports: [{ name: http, port: 9080 }]
            endpoints: [{ addresses: [10.255.255.1], conditions: { ready: false } }]
            """);
        Assert.Equal(0, Run("apply", "-f", service).Code);
        Assert.Contains("Service  default    reviews-v1  reviews-v1.yaml:", Run("get", "svc").Output, StringComparison.Ordinal);
        Assert.Matches(@"EndpointSlice\s+default\s+reviews-vm\s+reviews-v1\.yaml:", Run("get", "endpointslices").Output);
        await Eventually.TrueAsync(async () => (await productpage.CreateClient().GetAsync("http://reviews-v1/")).IsSuccessStatusCode, "the Service is known");
        for (var i = 0; i < 5; i++)
        {
            Assert.StartsWith("reviews|v1|", await productpage.CreateClient().GetStringAsync("http://reviews-v1/"), StringComparison.Ordinal);
        }

        // An ExternalName Service naming it is the same service under another name (the callee sees the name called).
        await Eventually.TrueAsync(async () => (await productpage.CreateClient().GetAsync("http://critics/")).IsSuccessStatusCode, "the alias is known");
        Assert.StartsWith("reviews|v1|/|critics|", await productpage.CreateClient().GetStringAsync("http://critics/"), StringComparison.Ordinal);

        Assert.Equal(0, Run("delete", "-f", service).Code);

        // A kind MeshKit does not read is an error, not an empty list.
        (code, _, error) = Run("get", "gateways");
        Assert.Equal(2, code);
        Assert.Contains("unknown kind 'gateways'", error, StringComparison.Ordinal);

        (code, _, _) = Run("delete", "-f", file);
        Assert.Equal(0, code);
        await Eventually.TrueAsync(async () => !Run("get").Output.Contains("reviews-v2.yaml", StringComparison.Ordinal), "deleted");
    }

    [Fact]
    public async Task Apply_TellsWhatTheFileMeansNextToTheRestOfTheMesh()
    {
        await StartAsync("reviews", "v1");
        Assert.Equal(0, Run("apply", "-f", Write("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }]
            """)).Code);

        // Valid on its own, so applied; but no DestinationRule defines v9, which the control plane would only have logged.
        var (code, output, error) = Run("apply", "-f", Write("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - route:
                - destination: { host: reviews, subset: v9 }
            """));

        Assert.True(code == 0, error);
        Assert.Contains("vs.yaml applied: VirtualService default/reviews", output, StringComparison.Ordinal);
        Assert.Contains("vs.yaml:8:", output, StringComparison.Ordinal);
        Assert.Contains("warning: spec.http[0].route[0].destination.subset: subset 'v9' of 'reviews.default.svc.cluster.local' is defined by no DestinationRule", output, StringComparison.Ordinal);

        // Findings about other files are not this file's to report.
        (code, output, _) = Run("apply", "-f", Write("dr2.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: ratings }
            spec:
              host: ratings
            """));
        Assert.Equal(0, code);
        Assert.DoesNotContain("v9", output, StringComparison.Ordinal);

        // Deleting the DestinationRule a route's subset needs says what it breaks, in the file it breaks.
        Assert.Equal(0, Run("apply", "-f", Write("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - route:
                - destination: { host: reviews, subset: v1 }
            """)).Code);
        // The endpoint meshctl reads: a state newer than the one in force is waited for, up to `wait`.
        var version = (await ControlPlane.GetAdminJsonAsync("/debug/findings")).GetProperty("version").GetInt64();
        using (var admin = new HttpClient { BaseAddress = ControlPlane.AdminAddress })
        {
            using var pending = await admin.GetAsync($"/debug/findings?after={version}&wait=200ms");
            Assert.Equal(System.Net.HttpStatusCode.Accepted, pending.StatusCode);
            using var refused = await admin.GetAsync($"/debug/findings?after={version}&wait=1h");
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
        }

        (code, output, _) = Run("delete", "-f", Path.Combine(_dir, "dr.yaml"));
        Assert.Equal(0, code);
        Assert.Contains("dr.yaml deleted", output, StringComparison.Ordinal);
        Assert.Contains("vs.yaml:8:", output, StringComparison.Ordinal);
        Assert.Contains("subset 'v1' of 'reviews.default.svc.cluster.local' is defined by no DestinationRule", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Apply_AnInvalidFile_IsRefused_WithFileLineAndField_AndNothingChanges()
    {
        var file = Write("bad.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: r }\nspec:\n  hosts: [r]\n  http: [{ route: [{ destination: { host: r }, wieght: 5 }] }]\n");

        var (code, _, error) = Run("apply", "-f", file);

        Assert.Equal(1, code);
        Assert.Contains("bad.yaml:6:", error, StringComparison.Ordinal);
        Assert.Contains("wieght: unknown field", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(ControlPlane.ConfigDirectory, "bad.yaml")));
    }

    [Fact]
    public async Task AResourceAnotherFileDefines_IsRefusedByApply_AndDoesNotDisplaceItWhenDroppedIn()
    {
        static string Route(string subset) => $$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: reviews
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: {{subset}} } }] }]
            """;
        Assert.Equal(0, Run("apply", "-f", Write("reviews.yaml", Route("v1"))).Code);

        // Through the API, as the etcd store does: refused, nothing written.
        var (code, _, error) = Run("apply", "-f", Write("a-reviews.yaml", Route("v2")));
        Assert.Equal(1, code);
        Assert.Contains("VirtualService/default/reviews is already defined in reviews.yaml", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(ControlPlane.ConfigDirectory, "a-reviews.yaml")));

        // Dropped into the folder by hand, under a name that sorts first: the definition in force stays, the newcomer
        // is reported at its metadata.name.
        ControlPlane.WriteConfig("a-reviews.yaml", Route("v2"));
        await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/config")).EnumerateArray()
            .Any(f => f.GetProperty("file").GetString() == "a-reviews.yaml"), "the file is read");
        var sources = await ControlPlane.GetAdminJsonAsync("/debug/config");
        var conflict = Assert.Single(sources.EnumerateArray().Single(f => f.GetProperty("file").GetString() == "a-reviews.yaml").GetProperty("diagnostics").EnumerateArray());
        Assert.Equal("VirtualService default/reviews is already defined in reviews.yaml; this definition is ignored", conflict.GetProperty("message").GetString());
        Assert.Equal((4, 9), (conflict.GetProperty("line").GetInt32(), conflict.GetProperty("column").GetInt32()));
        Assert.Contains("VirtualService  default    reviews  reviews.yaml:", Run("get", "VirtualService").Output, StringComparison.Ordinal);

        // Once the first definition goes, the other one applies.
        Assert.Equal(0, Run("delete", "-f", Path.Combine(_dir, "reviews.yaml")).Code);
        await Eventually.TrueAsync(() => Run("get", "VirtualService").Output.Contains("reviews  a-reviews.yaml:", StringComparison.Ordinal), "the other definition applies");
    }

    [Fact]
    public async Task Status_ShowsEachWorkload_AndANackAfterAnInvalidPush()
    {
        await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => Run("status").Output.Contains("SYNCED", StringComparison.Ordinal), "synced");

        // Valid for the control plane, but a file the workload cannot read: the workload rejects it.
        ControlPlane.WriteConfig("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: productpage }
            spec:
              host: productpage
              trafficPolicy: { tls: { mode: SIMPLE, caCertificates: /nonexistent/ca.pem } }
            """);
        await Eventually.TrueAsync(() => Run("status", "-o", "json").Output.Contains("\"status\":\"NACK\"", StringComparison.Ordinal), "the NACK shows");
        Assert.Contains("productpage.default", Run("status").Output, StringComparison.Ordinal);

        var (code, output, _) = Run("status", "-o", "json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        var connection = Assert.Single(json.RootElement.GetProperty("connections").EnumerateArray());
        Assert.Contains("nonexistent", connection.GetProperty("lastNack").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Config_ShowsWhatAWorkloadIsSent()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => Run("config", "productpage", "endpoints").Output.Contains("reviews.default.svc.cluster.local", StringComparison.Ordinal), "the view is computed");

        var (code, output, _) = Run("config", "productpage", "routes");
        Assert.Equal(0, code);
        Assert.Contains("\"host\": \"reviews.default.svc.cluster.local\"", output, StringComparison.Ordinal);

        // As `meshctl status` names it (service.namespace); another namespace's is not it.
        Assert.Equal(output, Run("config", "productpage.default", "routes").Output);
        Assert.Equal(1, Run("config", "productpage.other", "routes").Code);

        ControlPlane.WriteConfig("telemetry.yaml", """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              metrics: [{ overrides: [{ match: { metric: REQUEST_SIZE }, disabled: true }] }]
            """);
        await Eventually.TrueAsync(() => Run("config", "productpage", "telemetry").Output.Contains("\"metric\": \"REQUEST_SIZE\"", StringComparison.Ordinal), "the resolved Telemetry policy shows");

        (code, _, var error) = Run("config", "nobody");
        Assert.Equal(1, code);
        Assert.Contains("no workload 'nobody'", error, StringComparison.Ordinal);

        (code, output, _) = Run("version");
        Assert.Equal(0, code);
        Assert.Contains("control plane: ", output, StringComparison.Ordinal);
    }

    [Fact]
    public void CaRoot_PrintsTheRootsTheCaHolds_AsAWorkloadsRootCertificateFileTakesThem()
    {
        var (code, output, _) = Run("ca", "root");
        Assert.Equal(0, code);

        var printed = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        printed.ImportFromPem(output);
        var held = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        held.ImportFromPemFile(Path.Combine(ControlPlane.CaDirectory, "root-cert.pem"));
        Assert.NotEmpty(printed);
        Assert.Equal(held.Select(c => c.Thumbprint), printed.Select(c => c.Thumbprint));

        // As ConfigMaps for namespaces (Istio's istio-ca-root-cert), to pipe into kubectl apply.
        (code, output, _) = Run("ca", "root", "-o", "configmap", "-n", "shop", "web");
        Assert.Equal(0, code);
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader(output));
        Assert.Equal(2, stream.Documents.Count);
        foreach (var (document, ns) in stream.Documents.Zip(["shop", "web"]))
        {
            var map = (YamlDotNet.RepresentationModel.YamlMappingNode)document.RootNode;
            Assert.Equal("ConfigMap", map["kind"].ToString());
            Assert.Equal(("meshkit-root-cert", ns), (map["metadata"]["name"].ToString(), map["metadata"]["namespace"].ToString()));
            var inMap = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
            inMap.ImportFromPem(map["data"]["root-cert.pem"].ToString());
            Assert.Equal(held.Select(c => c.Thumbprint), inMap.Select(c => c.Thumbprint));
        }

        Assert.Equal(2, Run("ca", "root", "-o", "configmap").Code);
    }

    [Fact]
    public async Task AnAdminToken_IsRequired_WhenSet()
    {
        await ControlPlane.DisposeAsync();
        ControlPlane = await TestControlPlane.StartAsync(configure: o => o.AdminToken = "s3cret");

        var (code, _, error) = Run("get");
        Assert.Equal(2, code);
        Assert.Contains("401", error, StringComparison.Ordinal);

        (code, _, _) = Run("get", "--admin-token", "s3cret");
        Assert.Equal(0, code);
    }

    [Fact]
    public async Task TheControlPlane_MeasuresPushesAndConvergence()
    {
        using var convergence = new Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<double>(
            ControlPlane.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), "MeshKit.ControlPlane", "meshkit.controlplane.convergence");
        using var pushes = new Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long>(
            ControlPlane.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), "MeshKit.ControlPlane", "meshkit.controlplane.pushes");
        await StartAsync("reviews", "v1");
        ControlPlane.WriteConfig("vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: reviews }\nspec:\n  hosts: [reviews]\n  http: [{ route: [{ destination: { host: reviews } }] }]\n");

        await Eventually.TrueAsync(() => convergence.GetMeasurementSnapshot().Any(m => (string?)m.Tags["type"] == "ServiceRoutes"), "an ACKed route change is measured");
        Assert.True(pushes.GetMeasurementSnapshot().EvaluateAsCounter() >= 4);
    }

    [Fact]
    public void Kubernetes_WithoutAnApiServerToRead_SaysSo()
    {
        var (code, _, error) = Run("kubernetes");

        Assert.NotEqual(0, code);
        Assert.Contains("ControlPlane:KubernetesApiServer", error, StringComparison.Ordinal);
    }

}
