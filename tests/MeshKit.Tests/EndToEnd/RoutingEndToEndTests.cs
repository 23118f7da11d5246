using System.Net;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// The foundation's promise, end to end: a real control plane, real backends and clients on loopback, real gRPC
/// streams. YAML dropped into the config directory routes HttpClient calls live.
/// </summary>
public sealed class RoutingEndToEndTests : MeshTestBase
{

    private const string Subsets = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: reviews }
        spec:
          host: reviews
          subsets:
          - { name: v1, labels: { version: v1 } }
          - { name: v2, labels: { version: v2 } }
        """;


    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        ControlPlane.WriteConfig("reviews-dr.yaml", Subsets);
    }

    private static string Split(int v1, int v2) => $$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews }
        spec:
          hosts: [reviews]
          http:
          - route:
            - { destination: { host: reviews, subset: v1 }, weight: {{v1}} }
            - { destination: { host: reviews, subset: v2 }, weight: {{v2}} }
        """;

    private static async Task<string> VersionOf(HttpClient client, string url = "http://reviews/")
    {
        var body = await client.GetStringAsync(url);
        return body.Split('|')[1];
    }

    private static bool HasEndpoints(TestWorkload client, string subset, int count)
    {
        var snapshot = client.Snapshot;
        return snapshot.IsReady && snapshot.Services.TryGetValue(ReviewsHost, out var service)
            && service.Routes.SelectMany(r => r.Targets).Any(t => t.Subset == subset && t.Endpoints?.Endpoints.Length == count);
    }

    [Fact]
    public async Task WeightedSplit_80_20_Over1000Calls_IsWithinFivePercent()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("reviews-vs.yaml", Split(80, 20));
        await Eventually.TrueAsync(() => HasEndpoints(productpage, "v1", 2) && HasEndpoints(productpage, "v2", 1), "the client sees both subsets");

        var client = productpage.CreateClient();
        var counts = new Dictionary<string, int> { ["v1"] = 0, ["v2"] = 0 };
        for (var i = 0; i < 1000; i++)
        {
            counts[await VersionOf(client)]++;
        }

        Assert.InRange(counts["v1"], 750, 850);
        Assert.Equal(1000, counts["v1"] + counts["v2"]);
    }

    [Fact]
    public async Task RoundRobin_SpreadsOverEveryInstanceOfASubset()
    {
        var a = await StartAsync("reviews", "v1");
        var b = await StartAsync("reviews", "v1");
        var c = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 3, "three endpoints");

        var client = productpage.CreateClient();
        for (var i = 0; i < 300; i++)
        {
            await client.GetStringAsync("http://reviews/");
        }

        // Evenly, within a request or two: a config push during the loop (the mesh pushes on registry changes) starts a
        // new endpoint set, whose rotation starts anew.
        Assert.Equal(300, a.Served + b.Served + c.Served);
        Assert.All(new[] { a, b, c }, w => Assert.InRange(w.Served, 97, 103));
    }

    [Fact]
    public async Task ChangedFile_ConvergesInEveryClient_WithoutRestart()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var clients = new[] { await StartAsync("productpage", "v1"), await StartAsync("details", "v1") };
        ControlPlane.WriteConfig("reviews-vs.yaml", Split(100, 0));
        foreach (var c in clients)
        {
            await Eventually.TrueAsync(() => HasEndpoints(c, "v1", 1), "routing to v1");
            var http = c.CreateClient();
            for (var i = 0; i < 20; i++)
            {
                Assert.Equal("v1", await VersionOf(http));
            }
        }

        ControlPlane.WriteConfig("reviews-vs.yaml", Split(0, 100));
        foreach (var c in clients)
        {
            var http = c.CreateClient();
            await Eventually.TrueAsync(async () => await VersionOf(http) == "v2", $"{c.Service} converges on v2");
            for (var i = 0; i < 20; i++)
            {
                Assert.Equal("v2", await VersionOf(http));
            }
        }
    }

    [Fact]
    public async Task AKubectlExport_AppliesItsItems()
    {
        // An Istio user's config as `kubectl get virtualservices -o yaml` writes it: a List, bookkeeping and status included.
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("exported.yaml", """
            apiVersion: v1
            kind: List
            metadata: { resourceVersion: "" }
            items:
            - apiVersion: networking.istio.io/v1
              kind: VirtualService
              metadata: { name: reviews, namespace: default, generation: 3, resourceVersion: "48213", uid: 7d5a3f7e-0000-4000-8000-000000000001 }
              spec:
                hosts: [reviews]
                http: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]
              status: { observedGeneration: 3 }
            """);

        var http = productpage.CreateClient();
        await Eventually.TrueAsync(async () => await VersionOf(http) == "v2", "the listed VirtualService applies");
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("v2", await VersionOf(http));
        }
    }

    [Fact]
    public async Task StoppedBackend_LeavesTheEndpoints_AndNoCallFails()
    {
        var staying = await StartAsync("reviews", "v1");
        var leaving = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 2, "two endpoints");

        var client = productpage.CreateClient();
        using var stop = new CancellationTokenSource();
        var failures = new List<string>();
        var calls = 0;
        var load = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await client.GetAsync("http://reviews/");
                    if (!response.IsSuccessStatusCode)
                    {
                        failures.Add(((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
                    }
                }
                catch (HttpRequestException ex)
                {
                    failures.Add(ex.Message);
                }

                calls++;
            }
        });

        await Task.Delay(300);
        await leaving.StopAsync();
        await Eventually.TrueAsync(() => productpage.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Endpoints.Length == 1, "the stopped backend leaves the client's endpoints");
        var servedBefore = staying.Served;
        await Task.Delay(300);
        await stop.CancelAsync();
        await load;

        Assert.True(calls > 20, $"only {calls} calls ran");
        Assert.Empty(failures);
        Assert.True(staying.Served > servedBefore);
        var direct = productpage.CreateClient();
        for (var i = 0; i < 20; i++)
        {
            await direct.GetStringAsync("http://reviews/");
        }
    }

    [Fact]
    public async Task ADrainLongerThanTheHostsShutdownTimeout_IsCutShort_AndTheWorkloadStillStopsWithoutError()
    {
        // Istio's terminationDrainDuration against the host's own limit: the host decides, and stopping must not fail
        // for it (an exception from a stopping service would fail the application's exit after a clean stop).
        var staying = await StartAsync("reviews", "v1");
        var leaving = await StartAsync("reviews", "v1", o => o.DrainDuration = TimeSpan.FromHours(1), s => s.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(1)));
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 2, "two endpoints");

        var watch = System.Diagnostics.Stopwatch.StartNew();
        await leaving.StopAsync();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed}");

        // It left the registry before the drain began.
        await Eventually.TrueAsync(() => productpage.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Endpoints.Length == 1, "the stopped backend leaves the client's endpoints");
        GC.KeepAlive(staying);
    }

    [Fact]
    public async Task InvalidFile_ChangesNothing_AndItsErrorIsReported()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("reviews-vs.yaml", Split(100, 0));

        // Settled first: a registration pushed later (these workloads' own) would change the snapshot by itself.
        await Eventually.TrueAsync(() => HasEndpoints(productpage, "v1", 1) && HasEndpoints(productpage, "v2", 1), "routing to v1");
        string versionBefore;
        do
        {
            versionBefore = productpage.Snapshot.Version;
            await Task.Delay(1000);
        }
        while (productpage.Snapshot.Version != versionBefore);

        ControlPlane.WriteConfig("reviews-vs.yaml", Split(0, 100).Replace("weight: 100", "weight: 1000", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () =>
        {
            var status = await ControlPlane.GetAdminJsonAsync("/debug/config");
            return status.EnumerateArray().Any(f => f.GetProperty("file").GetString() == "reviews-vs.yaml" && !f.GetProperty("accepted").GetBoolean());
        }, "the control plane reports the rejected file");

        var file = (await ControlPlane.GetAdminJsonAsync("/debug/config")).EnumerateArray().Single(f => f.GetProperty("file").GetString() == "reviews-vs.yaml");
        var error = file.GetProperty("diagnostics").EnumerateArray().First(d => d.GetProperty("path").GetString() == "spec.http[0].route[1].weight");
        Assert.Equal("error", error.GetProperty("severity").GetString());
        Assert.Equal("spec.http[0].route[1].weight", error.GetProperty("path").GetString());
        Assert.Equal(9, error.GetProperty("line").GetInt32());
        Assert.Equal(1, file.GetProperty("resources").GetInt32());

        await Task.Delay(500);
        Assert.Equal(versionBefore, productpage.Snapshot.Version);
        var http = productpage.CreateClient();
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("v1", await VersionOf(http));
        }
    }

    [Fact]
    public async Task ControlPlaneRestart_ClientsKeepRoutingOnCachedConfig_AndResyncAfter()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("reviews", "v2");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("reviews-vs.yaml", Split(100, 0));
        await Eventually.TrueAsync(() => HasEndpoints(productpage, "v1", 1) && HasEndpoints(productpage, "v2", 1), "routing to v1");
        var http = productpage.CreateClient();

        var discoveryPort = ControlPlane.DiscoveryAddress.Port;
        var adminPort = ControlPlane.AdminAddress.Port;
        var directory = ControlPlane.ConfigDirectory;
        await ControlPlane.StopAsync();
        Owned.Insert(0, ControlPlane);

        // Down: every call still routes on the cached config.
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal("v1", await VersionOf(http));
            await Task.Delay(20);
        }

        ControlPlane = await TestControlPlane.StartAsync(directory, discoveryPort, adminPort, o => o.StartupSyncDelay = TimeSpan.FromSeconds(2));
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("v1", await VersionOf(http));
            await Task.Delay(50);
        }

        ControlPlane.WriteConfig("reviews-vs.yaml", Split(0, 100));
        await Eventually.TrueAsync(async () => await VersionOf(http) == "v2", "the client resyncs with the restarted control plane");
        await Eventually.TrueAsync(() => HasEndpoints(productpage, "v2", 1) && HasEndpoints(productpage, "v1", 1), "both subsets still have their endpoint");
        var registry = await ControlPlane.GetAdminJsonAsync("/debug/registry");
        Assert.Equal(3, registry.GetArrayLength());
    }

    [Fact]
    public async Task HostForms_AndPorts_ResolveToTheSameService()
    {
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.ContainsKey(ReviewsHost), "the service is known");
        var http = productpage.CreateClient();

        foreach (var url in new[] { "http://reviews/x", "http://reviews:9080/x", "http://reviews.default/x", "http://reviews.default.svc/x", "http://reviews.default.svc.cluster.local:9080/x?q=1" })
        {
            var parts = (await http.GetStringAsync(url)).Split('|');
            Assert.Equal("reviews", parts[0]);
            Assert.StartsWith("/x", parts[2], StringComparison.Ordinal);
            Assert.Equal(new Uri(url).Authority, parts[3]);
        }
    }


    [Fact]
    public async Task SynchronousSend_IsRoutedLikeSendAsync()
    {
        // HttpClient.Send goes down the handlers' synchronous path; a DelegatingHandler that does not override it
        // hands the request straight to the socket handler, which would look the service's name up in DNS.
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.ContainsKey(ReviewsHost), "the service is known");
        var http = productpage.CreateClient();

        using var response = await Task.Run(() => http.Send(new HttpRequestMessage(HttpMethod.Get, "http://reviews/sync")));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("reviews", (await response.Content.ReadAsStringAsync()).Split('|')[0]);
    }

    [Fact]
    public async Task NoMatchingRoute_Is404WithTheNoRouteFlag()
    {
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("reviews-vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { prefix: /api } }]
                route: [{ destination: { host: reviews } }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 1 && s.Routes[0].Matchers.Length == 1, "the route is applied");
        var http = productpage.CreateClient();

        Assert.Equal("reviews", (await http.GetStringAsync("http://reviews/api/1")).Split('|')[0]);
        using var response = await http.GetAsync("http://reviews/other");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("NR", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.Contains("no route", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task OutboundTrafficPolicy_AllowAnyPassesThrough_RegistryOnlyFailsFast()
    {
        var outside = await TestWorkload.StartAsync("outside", "v1", null, o => o.ConfigFile = WriteTemp("apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\n"));
        Owned.Add(outside);
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.IsReady, "ready");
        var http = productpage.CreateClient();

        Assert.StartsWith("outside|", await http.GetStringAsync(outside.Address), StringComparison.Ordinal);

        ControlPlane.WriteConfig("mesh.yaml", "apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n");
        await Eventually.TrueAsync(() => productpage.Snapshot.RegistryOnly, "REGISTRY_ONLY applies");
        using var response = await http.GetAsync(outside.Address);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Contains("REGISTRY_ONLY", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task OptedOutClient_GoesWhereItsUrlSays()
    {
        var productpage = await StartAsync("productpage", "v1", services: s => s.AddHttpClient("direct").WithoutMeshHandler());
        await Eventually.TrueAsync(() => productpage.Snapshot.IsReady, "ready");
        ControlPlane.WriteConfig("mesh.yaml", "apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n");
        await Eventually.TrueAsync(() => productpage.Snapshot.RegistryOnly, "REGISTRY_ONLY applies");

        using var response = await productpage.CreateClient().GetAsync(ControlPlane.AdminAddress + "healthz/ready");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var direct = productpage.Services.GetRequiredService<IHttpClientFactory>().CreateClient("direct");
        Assert.Equal("ok", await direct.GetStringAsync(ControlPlane.AdminAddress + "healthz/ready"));
    }

    [Fact]
    public async Task SpoofedIdentityHeaders_AreStrippedByUseMesh()
    {
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.ContainsKey(ReviewsHost), "the service is known");
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        request.Headers.Add("x-forwarded-client-cert", "By=spiffe://evil");
        request.Headers.Add("X-MeshKit-Peer-Metadata", "w=admin;n=kube-system");
        request.Headers.Add("x-meshkit-response-flags", "-");

        using var response = await productpage.CreateClient().SendAsync(request);
        var parts = (await response.Content.ReadAsStringAsync()).Split('|');
        Assert.Equal(string.Empty, parts[4]);
    }

    private static string WriteTemp(string yaml)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("meshkit-static-").FullName, "mesh.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact]
    public async Task Sidecar_ScopesWhatAWorkloadReceives_AndItsOutboundPolicy()
    {
        await StartAsync("reviews", "v1");
        await StartAsync("ratings", "v1");
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1 && productpage.Endpoints("ratings.default.svc.cluster.local") == 1, "both services are known");

        ControlPlane.WriteConfig("sidecar.yaml", """
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: productpage }
            spec:
              workloadSelector: { labels: { app: productpage } }
              egress: [{ hosts: ["./reviews.default.svc.cluster.local"] }]
              outboundTrafficPolicy: { mode: REGISTRY_ONLY }
            """);
        await Eventually.TrueAsync(() => !productpage.Snapshot.Services.ContainsKey("ratings.default.svc.cluster.local"), "the Sidecar scopes productpage");
        var http = productpage.CreateClient();

        Assert.StartsWith("reviews|v1|", await http.GetStringAsync("http://reviews/"), StringComparison.Ordinal);
        using (var ratings = await http.GetAsync("http://ratings/"))
        {
            Assert.Equal(HttpStatusCode.BadGateway, ratings.StatusCode); // outside its egress, and REGISTRY_ONLY
        }

        // Without it, everything visible is received again.
        ControlPlane.WriteConfig("sidecar.yaml", "");
        await Eventually.TrueAsync(() => productpage.Endpoints("ratings.default.svc.cluster.local") == 1, "the scope is gone");
        Assert.StartsWith("ratings|v1|", await http.GetStringAsync("http://ratings/"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SidecarEgressWithAPort_AdmitsItsHostOnThatPortOnly()
    {
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        var http = productpage.CreateClient();
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "productpage knows reviews");
        string Sidecar(int port) => $$"""
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: productpage }
            spec:
              workloadSelector: { labels: { app: productpage } }
              egress: [{ port: { number: {{port}} }, hosts: ["./reviews.default.svc.cluster.local"] }]
              outboundTrafficPolicy: { mode: REGISTRY_ONLY }
            """;

        // reviews' port is 9080: admitted on 9090 only, a call to it is a host outside the registry (REGISTRY_ONLY: 502).
        ControlPlane.WriteConfig("sidecar.yaml", Sidecar(9090));
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var reviews) && reviews.SidecarPorts is [9090], "the Sidecar applies");
        Assert.Equal(HttpStatusCode.BadGateway, (await http.GetAsync("http://reviews/")).StatusCode);

        ControlPlane.WriteConfig("sidecar.yaml", Sidecar(9080));
        await Eventually.TrueAsync(async () => (await http.GetAsync("http://reviews/")).IsSuccessStatusCode, "reviews is admitted on its port");
        Assert.StartsWith("reviews|v1|", await http.GetStringAsync("http://reviews:9080/"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WorkloadEntry_SelectedByAServiceEntry_IsCalledLikeAnyEndpoint()
    {
        // A process the mesh knows only from a WorkloadEntry, as a VM would be.
        var vm = await StartAsync("legacy", "v1");
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("vm.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: api }
            spec:
              hosts: [api.example.internal]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http, protocol: HTTP }]
              resolution: STATIC
              workloadSelector: { labels: { app: vm-api } }
            ---
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: { name: vm-1 }
            spec:
              address: 127.0.0.1
              ports: { http: {{vm.Address.Port}} }
              labels: { app: vm-api }
            """);
        await Eventually.TrueAsync(() => productpage.Endpoints("api.example.internal") == 1, "the WorkloadEntry is an endpoint");

        Assert.StartsWith("legacy|v1|/", await productpage.CreateClient().GetStringAsync("http://api.example.internal/"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServiceEntry_WithAnIPv6Endpoint_IsCalledAtItsBracketedAddress_UnderTheServicesAuthority()
    {
        // A server on the IPv6 loopback only: the call must go to [::1]:port, and the server must see the service's name.
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://[::1]:0");
        await using var v6 = builder.Build();
        v6.MapGet("/{**path}", (HttpContext c) => $"v6|{c.Request.Host}|{c.Connection.LocalIpAddress}");
        await v6.StartAsync();
        var port = new Uri(v6.Urls.Single()).Port;

        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("v6.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: v6 }
            spec:
              hosts: [v6.example.internal]
              ports: [{ number: 80, name: http, protocol: HTTP }]
              resolution: STATIC
              endpoints: [{ address: "::1", ports: { http: {{port}} } }]
            """);
        await Eventually.TrueAsync(() => productpage.Endpoints("v6.example.internal") == 1, "the IPv6 endpoint is known");

        Assert.Equal("v6|v6.example.internal|::1", await productpage.CreateClient().GetStringAsync("http://v6.example.internal/"));
    }
}
