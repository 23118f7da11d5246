using System.Net;
using MeshKit.Config.Model;
using MeshKit.ControlPlane.Sources;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.ControlPlane;

/// <summary>
/// The control plane reading a Kubernetes API server, as istiod reads its cluster: Services, EndpointSlices and Istio
/// resources listed and watched, in force beside the config folder's.
/// </summary>
public sealed class KubernetesApiSourceTests : MeshTestBase
{
    private const string Services = "api/v1/services";
    private const string Slices = "apis/discovery.k8s.io/v1/endpointslices";
    private const string VirtualServices = "apis/networking.istio.io/v1/virtualservices";
    private const string DestinationRules = "apis/networking.istio.io/v1/destinationrules";
    private const string Pods = "api/v1/pods";

    private FakeKubernetesApi _api = null!;

    public override async Task InitializeAsync()
    {
        // Telemetry's CRD is not installed; Sidecar is served in v1beta1 only (an Istio before 1.22).
        _api = await FakeKubernetesApi.StartAsync(notServed: ["apis/telemetry.istio.io/v1/telemetries", "apis/telemetry.istio.io/v1alpha1/telemetries", "apis/networking.istio.io/v1/sidecars"]);
        Owned.Add(_api);
        ControlPlane = await TestControlPlane.StartAsync(configure: _api.Configure);
    }

    private IConfigStore Store => ControlPlane.Services.GetRequiredService<IConfigStore>();

    private bool Holds(string kind, string name) => Store.Current.Resources.Any(r => r.Kind == kind && r.Name == name);

    // JSON as the API server serves it (managed fields and all); spaces keep the closing braces apart for the interpolation.
    private static string Abort(int status) => $$"""
        { "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": { "name": "reviews", "namespace": "default", "uid": "1", "generation": 1, "creationTimestamp": "2026-11-28T00:00:00Z",
            "managedFields": [ { "manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": { } } ] },
          "spec": { "hosts": ["reviews"], "http": [ { "fault": { "abort": { "httpStatus": {{status}}, "percentage": { "value": 100 } } }, "route": [ { "destination": { "host": "reviews" } } ] } ] } }
        """;

    [Fact]
    public async Task AVirtualServiceInTheCluster_RoutesCalls_AndItsChangesAndDeletionApply()
    {
        var backend = await StartAsync("reviews", "v1");
        var client = await StartAsync("productpage", "v1");
        var http = client.CreateClient();
        await Eventually.TrueAsync(() => client.Endpoints(ReviewsHost) == 1, "reviews is known");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("http://reviews/")).StatusCode);

        _api.Put(VirtualServices, Abort(418));
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://reviews/")).StatusCode == (HttpStatusCode)418, "the cluster's VirtualService applies");

        _api.Put(VirtualServices, Abort(429));
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://reviews/")).StatusCode == HttpStatusCode.TooManyRequests, "its change applies");

        _api.Delete(VirtualServices, "default", "reviews");
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://reviews/")).StatusCode == HttpStatusCode.OK, "its deletion applies");
        Assert.True(backend.Served > 0);

        // Its source shows as the object it is; the watch followed the changes, nothing was listed twice.
        Assert.DoesNotContain(Store.Sources, s => s.Name == "kubernetes/VirtualService/default/reviews");
        Assert.Equal(1, _api.Lists(VirtualServices));
    }

    [Fact]
    public async Task AServiceAndItsEndpointSlices_InTheCluster_AreAHostCallsReach()
    {
        await using var database = await ExternalServer.StartAsync("primary");
        var client = await StartAsync("productpage", "v1");
        _api.Put(Services, """{"apiVersion":"v1","kind":"Service","metadata":{"name":"db","namespace":"default"},"spec":{"ports":[{"name":"http","port":80,"protocol":"TCP"}],"clusterIP":"10.0.0.9","type":"ClusterIP"},"status":{"loadBalancer":{}}}""");
        _api.Put(Slices, $$$"""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"db-1","namespace":"default","labels":{"kubernetes.io/service-name":"db"}},
             "addressType":"IPv4","ports":[{"name":"http","port":{{{database.Port}}},"protocol":"TCP"}],"endpoints":[{"addresses":["127.0.0.1"],"conditions":{"ready":true}}]}
            """);

        await Eventually.TrueAsync(() => client.Endpoints("db.default.svc.cluster.local") == 1, "the slice's address is the Service's endpoint");
        Assert.StartsWith("primary:/orders/1:", await client.CreateClient().GetStringAsync("http://db/orders/1"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASelectorsPodsThatRunNoMeshKit_AreReachedThroughKubernetesOwnSlices_AndAMeshKitPodCountsOnce()
    {
        // A mixed Service: one pod runs MeshKit (a registered workload the selector picks), one does not (a server of
        // its own). Kubernetes' endpoints controller lists both in its slices; read live, they are current.
        var meshPod = await StartAsync("web", "canary", o => o.ServicePort = 80);
        await using var plainPod = await ExternalServer.StartAsync("plain");
        var client = await StartAsync("productpage", "v1");
        _api.Put(Services, $$$"""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
             "spec":{"selector":{"version":"canary"},"ports":[{"name":"http","port":80,"targetPort":{{{meshPod.Address.Port}}}}]}}
            """);
        foreach (var (name, port) in new[] { ("web-abcde", meshPod.Address.Port), ("web-fghij", plainPod.Port) })
        {
            _api.Put(Slices, $$$"""
                {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
                 "metadata":{"name":"{{{name}}}","namespace":"default","labels":{"kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
                 "addressType":"IPv4","ports":[{"name":"http","port":{{{port}}},"protocol":"TCP"}],"endpoints":[{"addresses":["127.0.0.1"],"conditions":{"ready":true}}]}
                """);
        }

        await Eventually.TrueAsync(() => client.Endpoints("web.default.svc.cluster.local") == 2, "the MeshKit pod once, and the other pod");
        var http = client.CreateClient();
        var answers = new HashSet<string>();
        for (var i = 0; i < 20 && answers.Count < 2; i++)
        {
            var body = await http.GetStringAsync("http://web/");
            answers.Add(body.StartsWith("plain:", StringComparison.Ordinal) ? "plain" : body.Split('|')[0]);
        }

        Assert.Equal(["plain", "web"], answers.Order());
    }

    [Fact]
    public async Task APodThatRunsNoMeshKit_HasItsPodsLabels_SoASubsetPicksIt_BesideAMeshKitVersion()
    {
        // A service moving over: v1 runs no MeshKit (a server of its own), v2 runs it. Subsets pick by version.
        var v2 = await StartAsync("web", "v2", o => (o.ServicePort, o.Labels["app"]) = (80, "web"));
        await using var v1 = await ExternalServer.StartAsync("legacy");
        var client = await StartAsync("productpage", "v1");
        _api.Put(Services, $$$"""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
             "spec":{"selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":{{{v2.Address.Port}}}}]}}
            """);
        _api.Put(Slices, $$$"""
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
             "metadata":{"name":"web-legacy","namespace":"default","labels":{"kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
             "addressType":"IPv4","ports":[{"name":"http","port":{{{v1.Port}}},"protocol":"TCP"}],
             "endpoints":[{"addresses":["127.0.0.1"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"default","name":"web-v1-7d9c"}}]}
            """);
        var http = client.CreateClient();
        await Eventually.TrueAsync(() => client.Endpoints("web.default.svc.cluster.local") == 2, "both versions are endpoints");
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"web","namespace":"default"},"spec":{"host":"web","subsets":[{"name":"v1","labels":{"version":"v1"}},{"name":"v2","labels":{"version":"v2"}}]} }""");
        _api.Put(VirtualServices, """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"web","namespace":"default"},"spec":{"hosts":["web"],"http":[{"route":[{"destination":{"host":"web","subset":"v1"}}]}]} }""");

        // Its pod not read yet: the v1 subset has no endpoint.
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://web/")).StatusCode == HttpStatusCode.ServiceUnavailable, "the v1 subset is empty while its pod is unknown");

        // The pod (its status and spec as the API server serves them, of which its labels and address are read).
        _api.Put(Pods, """
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-v1-7d9c","namespace":"default","labels":{"app":"web","version":"v1"}},
             "spec":{"containers":[{"name":"web","image":"legacy:1"}],"nodeName":"node-1"},
             "status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}],"conditions":[{"type":"Ready","status":"True"}]}}
            """);
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://web/")).IsSuccessStatusCode, "the v1 subset picks the pod");
        Assert.StartsWith("legacy:/", await http.GetStringAsync("http://web/"), StringComparison.Ordinal);

        // Its node's topology labels are its locality, as Istio reads them (locality-aware balancing places it).
        _api.Put("api/v1/nodes", """{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1","labels":{"topology.kubernetes.io/region":"us-east","topology.kubernetes.io/zone":"us-east-1a","kubernetes.io/os":"linux"}}}""");
        await Eventually.TrueAsync(
            () => client.Snapshot.Services.TryGetValue("web.default.svc.cluster.local", out var web)
                && web.Routes.SelectMany(r => r.Targets).SelectMany(t => t.Endpoints?.Endpoints ?? []).Any(e => !e.IsWorkload && e.Locality.Region == "us-east" && e.Locality.Zone == "us-east-1a"),
            "the pod's endpoint has its node's locality");

        // The route moved to v2: the MeshKit workload.
        _api.Put(VirtualServices, """{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"web","namespace":"default"},"spec":{"hosts":["web"],"http":[{"route":[{"destination":{"host":"web","subset":"v2"}}]}]} }""");
        await Eventually.TrueAsync(async () => (await http.GetStringAsync("http://web/")).StartsWith("web|v2|", StringComparison.Ordinal), "v2 takes the calls");

        // Pods are not configuration: meshctl get does not list them; /debug/kubernetes counts them.
        var resources = await ControlPlane.GetAdminJsonAsync("/config/resources");
        Assert.DoesNotContain(resources.EnumerateArray(), r => r.GetProperty("kind").GetString() == "Pod");
        var kinds = (await ControlPlane.GetAdminJsonAsync("/debug/kubernetes")).EnumerateArray().ToDictionary(k => k.GetProperty("kind").GetString()!, k => k.GetProperty("objects").GetInt32());
        Assert.Equal((1, 1), (kinds["Pod"], kinds["Node"]));
    }

    [Fact]
    public async Task AnExpiredWatch_ListsAgain_AndWhatItMissedIsWithdrawn()
    {
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"a","namespace":"default"},"spec":{"host":"a"}}""");
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"b","namespace":"default"},"spec":{"host":"b"}}""");
        await Eventually.TrueAsync(() => Holds("DestinationRule", "a") && Holds("DestinationRule", "b"), "both rules are read");

        // Deleted while no watch saw it, then the watch's version expires (410): the new list no longer has it.
        _api.Delete(DestinationRules, "default", "a", quietly: true);
        _api.ExpireWatches();

        await Eventually.TrueAsync(() => !Holds("DestinationRule", "a"), "the rule the watch missed is withdrawn");
        Assert.True(Holds("DestinationRule", "b"));
        Assert.True(_api.Lists(DestinationRules) >= 2);
    }

    [Fact]
    public async Task AListLongerThanAPage_IsReadWhole()
    {
        for (var i = 0; i < 501; i++)
        {
            _api.Put(DestinationRules, $$$"""{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"rule-{{{i}}}","namespace":"default"},"spec":{"host":"host-{{{i}}}"} }""");
        }

        await Eventually.TrueAsync(() => Store.Current.Resources.Count(r => r.Kind == "DestinationRule") == 501, "every rule is read");

        // Listed again (the watch expired): 500 and one, in two pages, all of them kept.
        _api.Delete(DestinationRules, "default", "rule-7", quietly: true);
        _api.ExpireWatches();
        await Eventually.TrueAsync(() => !Holds("DestinationRule", "rule-7"), "the list is read again");
        Assert.Equal(500, Store.Current.Resources.Count(r => r.Kind == "DestinationRule"));
    }

    [Fact]
    public async Task AKindServedInAnOlderVersionOnly_IsReadInThatVersion()
    {
        _api.Put("apis/networking.istio.io/v1beta1/sidecars", """{"apiVersion":"networking.istio.io/v1beta1","kind":"Sidecar","metadata":{"name":"default","namespace":"shop"},"spec":{"egress":[{"hosts":["./*"]}]}}""");

        await Eventually.TrueAsync(() => Holds("Sidecar", "default"), "the v1beta1 Sidecar is read");
        Assert.Equal("networking.istio.io/v1beta1", Store.Current.Resources.Single(r => r.Kind == "Sidecar").ApiVersion);
        Assert.Equal(0, _api.Lists("apis/networking.istio.io/v1/sidecars"));
    }

    [Fact]
    public async Task AWatchThatGoesSilent_IsDroppedAndResumed_WithoutListingAgain()
    {
        // The fake never ends a watch on its own, as a dead connection would not: with a short bound, the control
        // plane drops each watch and resumes it from the version it reached.
        await Eventually.TrueAsync(() => _api.Watches(DestinationRules) >= 1, "watching");
        ControlPlane.Services.GetRequiredService<KubernetesConfigStore>().WatchBound = TimeSpan.FromMilliseconds(300);
        var lists = _api.Lists(DestinationRules);
        _api.ExpireWatches();
        await Eventually.TrueAsync(() => _api.Lists(DestinationRules) == lists + 1, "listed again after the expiry");
        var watches = _api.Watches(DestinationRules);

        await Eventually.TrueAsync(() => _api.Watches(DestinationRules) >= watches + 3, "the silent watch is dropped and resumed");
        Assert.Equal(lists + 1, _api.Lists(DestinationRules));

        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"late","namespace":"default"},"spec":{"host":"late"} }""");
        await Eventually.TrueAsync(() => Holds("DestinationRule", "late"), "a change after the resumption arrives");
        Assert.Equal(lists + 1, _api.Lists(DestinationRules));
    }

    [Fact]
    public async Task AWatchThatEndsAtOnce_IsResumedAtMostOnceASecond()
    {
        await Eventually.TrueAsync(() => _api.Watches(DestinationRules) >= 1, "watching");
        _api.EndWatchesAtOnce = true;
        _api.ExpireWatches();
        await Eventually.TrueAsync(() => _api.Watches(DestinationRules) >= 3, "the watch is resumed");
        var watches = _api.Watches(DestinationRules);

        // Before, an empty watch was resumed at once, again and again: thousands of requests a second.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.InRange(_api.Watches(DestinationRules) - watches, 1, 6);

        // And it still follows the kind when the watches last again.
        _api.EndWatchesAtOnce = false;
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"later","namespace":"default"},"spec":{"host":"later"} }""");
        await Eventually.TrueAsync(() => Holds("DestinationRule", "later"), "the change arrives");
    }

    [Fact]
    public async Task AnObjectThatDoesNotValidate_KeepsItsLastGoodVersion_AndShowsItsFindings()
    {
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"default"},"spec":{"host":"reviews"}}""");
        await Eventually.TrueAsync(() => Holds("DestinationRule", "reviews"), "the rule is read");

        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"default"},"spec":{"host":"reviews","trafficPolicy":{"loadBalancer":{"simple":"FASTEST"}}}}""");
        await Eventually.TrueAsync(() => Store.Sources.Any(s => s.Name == "kubernetes/DestinationRule/default/reviews" && !s.Accepted), "the new version is rejected");

        var status = Store.Sources.Single(s => s.Name == "kubernetes/DestinationRule/default/reviews");
        Assert.Contains(status.Diagnostics, d => d.Path.Contains("loadBalancer.simple", StringComparison.Ordinal) && d.File == "kubernetes/DestinationRule/default/reviews");
        var rule = Assert.IsType<DestinationRule>(Store.Current.Resources.Single(r => r.Kind == "DestinationRule"));
        Assert.Null(rule.TrafficPolicy);
    }

    [Fact]
    public async Task AKindTheServerDoesNotServe_HoldsNothingBack_AndTheConfigFoldersDefinitionWins()
    {
        // Telemetry is not served (its CRD is not installed): the first state still came, with the cluster's resources.
        ControlPlane.WriteConfig("rules.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews, namespace: default }
            spec: { host: reviews, trafficPolicy: { loadBalancer: { simple: RANDOM } } }
            """);
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"default"},"spec":{"host":"reviews"}}""");
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"ratings","namespace":"default"},"spec":{"host":"ratings"}}""");

        await Eventually.TrueAsync(() => Holds("DestinationRule", "ratings") && Store.Sources.Any(s => s.Name == "rules.yaml"), "both sources are read");
        await Eventually.TrueAsync(() => Store.Sources.Any(s => s.Name == "kubernetes/DestinationRule/default/reviews" && !s.Accepted), "the conflict is reported");
        var conflict = Store.Sources.Single(s => s.Name == "kubernetes/DestinationRule/default/reviews");
        Assert.Contains(conflict.Diagnostics, d => d.Message.Contains("already defined in rules.yaml", StringComparison.Ordinal));
        var reviews = Store.Current.Resources.Single(r => r.Kind == "DestinationRule" && r.Name == "reviews");
        Assert.Equal("rules.yaml", reviews.Source.File);
        Assert.True(ControlPlane.Services.GetRequiredService<KubernetesConfigStore>().Synced.IsCompletedSuccessfully);

        // /debug/kubernetes shows how each kind is read.
        var kinds = (await ControlPlane.GetAdminJsonAsync("/debug/kubernetes")).EnumerateArray().ToDictionary(k => k.GetProperty("kind").GetString()!);
        Assert.Equal(KubernetesConfigStore.Kinds.Length + 2, kinds.Count); // and the namespaces and nodes, for their labels
        Assert.Equal(("watching", 0), (kinds["Namespace"].GetProperty("state").GetString(), kinds["Namespace"].GetProperty("objects").GetInt32()));
        Assert.Equal("not served", kinds["Telemetry"].GetProperty("state").GetString());
        Assert.Equal(("watching", "networking.istio.io/v1", 2), (kinds["DestinationRule"].GetProperty("state").GetString(), kinds["DestinationRule"].GetProperty("apiVersion").GetString(), kinds["DestinationRule"].GetProperty("objects").GetInt32()));
        Assert.Equal("networking.istio.io/v1beta1", kinds["Sidecar"].GetProperty("apiVersion").GetString());

        // meshctl kubernetes prints the same as a table.
        using var output = new StringWriter();
        using var error = new StringWriter();
        Assert.Equal(0, MeshKit.Cli.MeshCtl.Run(["kubernetes", "--admin-address", ControlPlane.AdminAddress.ToString()], output, error));
        var lines = output.ToString().Split('\n');
        Assert.StartsWith("KIND", lines[0], StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("Telemetry ", StringComparison.Ordinal) && l.Contains("not served", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("DestinationRule ", StringComparison.Ordinal) && l.Contains("networking.istio.io/v1 ", StringComparison.Ordinal) && l.Contains("watching", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WithoutTheControlPlanesToken_NothingIsRead_AndTheFailureIsRetried()
    {
        _api.Put(DestinationRules, """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"default"},"spec":{"host":"reviews"}}""");
        await Eventually.TrueAsync(() => Holds("DestinationRule", "reviews"), "the rule is read with the token");

        // The kubelet rotates the token: it is read at each request, so the next one goes with the new file content.
        var logs = new Microsoft.Extensions.Logging.Testing.FakeLogCollector();
        using var provider = new Microsoft.Extensions.Logging.Testing.FakeLoggerProvider(logs);
        ControlPlane.Services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().AddProvider(provider);
        await File.WriteAllTextAsync(_api.TokenFile, "not-the-token");
        _api.ExpireWatches();
        var lists = _api.Lists(DestinationRules);
        await Eventually.TrueAsync(() => _api.Refused(DestinationRules) >= 3, "three tries were refused", TimeSpan.FromSeconds(60));
        Assert.Equal(lists, _api.Lists(DestinationRules)); // refused (401): not counted as a list
        Assert.True(Holds("DestinationRule", "reviews")); // what was read stays in force

        // One warning for the failure while it lasts (the retries after it are at Debug).
        var warning = Assert.Single(logs.GetSnapshot(), r => r.Level == Microsoft.Extensions.Logging.LogLevel.Warning && r.Message.StartsWith("Reading DestinationRule", StringComparison.Ordinal));
        Assert.Contains("Unauthorized", warning.Message, StringComparison.Ordinal);

        await File.WriteAllTextAsync(_api.TokenFile, FakeKubernetesApi.Token);
        await Eventually.TrueAsync(() => _api.Lists(DestinationRules) > lists, "listed again once the token is good", TimeSpan.FromSeconds(60));
    }
}

/// <summary>The control plane reading the namespaces it is told to, each on its own (a Role in each suffices).</summary>
public sealed class KubernetesApiNamespacesTests : MeshTestBase
{
    private const string DestinationRules = "apis/networking.istio.io/v1/destinationrules";

    private FakeKubernetesApi _api = null!;

    public override async Task InitializeAsync()
    {
        _api = await FakeKubernetesApi.StartAsync();
        Owned.Add(_api);
        ControlPlane = await TestControlPlane.StartAsync(configure: o =>
        {
            _api.Configure(o);
            o.KubernetesNamespaces.Add("shop");
            o.KubernetesNamespaces.Add("web");
        });
    }

    [Fact]
    public async Task NamedNamespaces_AreEachReadOnTheirOwn_AndNoOtherIs()
    {
        foreach (var ns in new[] { "shop", "web", "other" })
        {
            _api.Put(DestinationRules, $$"""{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"{{ns}}"},"spec":{"host":"reviews"} }""");
        }

        var store = ControlPlane.Services.GetRequiredService<IConfigStore>();
        await Eventually.TrueAsync(() => store.Current.Resources.Count(r => r.Kind == "DestinationRule") == 2, "the two namespaces' rules are read");
        Assert.Equal(["shop", "web"], store.Current.Resources.Where(r => r.Kind == "DestinationRule").Select(r => r.Namespace).Order());

        // A Role in each namespace is all it needs: nothing was asked of the whole cluster.
        Assert.Equal(0, _api.Lists(DestinationRules));
        Assert.Equal(1, _api.Lists("apis/networking.istio.io/v1/namespaces/shop/destinationrules"));

        // A watch that expires lists its own namespace again, and withdraws only what that namespace lost.
        _api.Delete(DestinationRules, "web", "reviews", quietly: true);
        _api.ExpireWatches();
        await Eventually.TrueAsync(() => store.Current.Resources.Count(r => r.Kind == "DestinationRule") == 1, "web's rule is withdrawn");
        Assert.Equal("shop", store.Current.Resources.Single(r => r.Kind == "DestinationRule").Namespace);
    }
}

/// <summary>Which API server <c>ControlPlane:KubernetesApiServer</c> names.</summary>
public sealed class KubernetesApiServerSettingTests
{
    [Theory]
    [InlineData("http://127.0.0.1:8001", "http://127.0.0.1:8001/")]
    [InlineData("https://api.cluster.example:6443/", "https://api.cluster.example:6443/")]
    [InlineData("", null)]
    public void AUrl_IsThatServer_AndNothingIsNoServer(string setting, string? expected) =>
        Assert.Equal(expected, KubernetesApi.Server(new MeshKit.ControlPlane.ControlPlaneOptions { KubernetesApiServer = setting })?.ToString());

    [Theory]
    [InlineData("kubernetes.default.svc")]
    [InlineData("ftp://api:21")]
    public void AnythingElse_FailsTheStart_NamingTheSetting(string setting)
    {
        var error = Assert.Throws<InvalidOperationException>(() => MeshKit.ControlPlane.ControlPlaneApp.Build(["--kubernetes-api", setting]));
        Assert.Contains("ControlPlane:KubernetesApiServer", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InCluster_IsTheAddressKubernetesGivesThePod()
    {
        // Only this test sets these variables (nothing else reads them but the in-cluster setting).
        Assert.Throws<InvalidOperationException>(() => KubernetesApi.Server(new MeshKit.ControlPlane.ControlPlaneOptions { KubernetesApiServer = "in-cluster" }));
        try
        {
            Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_HOST", "fd00::1");
            Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_PORT", "443");
            Assert.Equal("https://[fd00::1]/", KubernetesApi.Server(new MeshKit.ControlPlane.ControlPlaneOptions { KubernetesApiServer = "in-cluster" })!.ToString());
        }
        finally
        {
            Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_HOST", null);
            Environment.SetEnvironmentVariable("KUBERNETES_SERVICE_PORT", null);
        }
    }
}

/// <summary>The mesh's roots kept in a ConfigMap of every namespace, as istiod keeps <c>istio-ca-root-cert</c>.</summary>
public sealed class KubernetesRootPublisherTests : MeshTestBase
{
    private const string Namespaces = "api/v1/namespaces";
    private const string ConfigMaps = "api/v1/configmaps";

    private FakeKubernetesApi _api = null!;

    public override async Task InitializeAsync()
    {
        _api = await FakeKubernetesApi.StartAsync();
        Owned.Add(_api);
        foreach (var ns in new[] { "shop", "web", "kube-system" })
        {
            _api.Put(Namespaces, $$"""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"{{ns}}"} }""");
        }

        ControlPlane = await TestControlPlane.StartAsync(configure: o =>
        {
            _api.Configure(o);
            o.KubernetesRootCertResync = TimeSpan.FromMilliseconds(200);
        });
    }

    private string? Roots(string ns) => _api.Get(ConfigMaps, ns, "meshkit-root-cert")?["data"]?["root-cert.pem"]?.GetValue<string>();

    [Fact]
    public async Task EveryNamespaceButKubernetesOwn_GetsTheRoots_AndTheyAreKeptRight()
    {
        var roots = string.Concat(ControlPlane.Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>().Bundle.Roots.Select(r => r.ExportCertificatePem() + "\n"));
        await Eventually.TrueAsync(() => Roots("shop") == roots && Roots("web") == roots, "both namespaces have the roots");
        Assert.Null(Roots("kube-system"));
        Assert.Equal("meshkit-controlplane", _api.Get(ConfigMaps, "shop", "meshkit-root-cert")!["metadata"]!["labels"]!["app.kubernetes.io/managed-by"]!.GetValue<string>());

        // Nothing is written while everything is right.
        await Task.Delay(TimeSpan.FromSeconds(1));
        var applies = _api.Applies;
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(applies, _api.Applies);

        // A new namespace gets it; a deleted one comes back; an edited one is set right.
        _api.Put(Namespaces, """{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"new"} }""");
        _api.Delete(ConfigMaps, "shop", "meshkit-root-cert");
        _api.Put(ConfigMaps, """{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"meshkit-root-cert","namespace":"web"},"data":{"root-cert.pem":"not a root"} }""");
        await Eventually.TrueAsync(() => Roots("new") == roots && Roots("shop") == roots && Roots("web") == roots, "every namespace has the roots again");
    }
}
