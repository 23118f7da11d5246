using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

public class MeshCompilerTests
{
    private static ConfigSet Config(string yaml)
    {
        var result = ConfigParser.Parse(yaml, "test.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        return new ConfigSet(result.Resources);
    }

    private static WorkloadAnnouncement Workload(string service, string ns, string version, string address = "127.0.0.1", uint port = 8080, uint servicePort = 9080)
    {
        var w = new WorkloadAnnouncement { Service = service, Namespace = ns, InstanceId = $"{service}-{version}-{address}-{port}", Address = address, ServiceAccount = "sa" };
        w.Labels["app"] = service;
        w.Labels["version"] = version;
        w.Ports.Add(new WorkloadPort { Name = "http", TargetPort = port, ServicePort = servicePort, Protocol = "http" });
        return w;
    }

    private static T Get<T>(ResourceView view, string typeUrl, string name)
        where T : Google.Protobuf.IMessage<T>, new() => view.OfType(typeUrl)[name].Resource_.Unpack<T>();

    [Fact]
    public void Compile_Registry_GroupsInstancesIntoServicesWithEndpoints()
    {
        var mesh = MeshCompiler.Compile(ConfigSet.Empty, [Workload("reviews", "default", "v1", port: 1), Workload("reviews", "default", "v2", port: 2)]);
        var view = mesh.ViewFor("default");

        var cluster = Get<ServiceCluster>(view, ResourceTypes.Cluster, "reviews.default.svc.cluster.local");
        Assert.Equal(2, cluster.Endpoints.Count);
        Assert.Equal([1u, 2u], cluster.Endpoints.Select(e => e.Ports[0].TargetPort).Order());
        var routes = Get<ServiceRoutes>(view, ResourceTypes.Routes, "reviews.default.svc.cluster.local");
        Assert.Equal("reviews", routes.ShortName);
        Assert.Equal(9080u, Assert.Single(routes.Ports).Number);
        Assert.Empty(routes.HttpRoutes);
        Assert.Equal("ALLOW_ANY", Get<MeshSettings>(view, ResourceTypes.Mesh, "mesh").OutboundTrafficPolicy);
    }

    [Fact]
    public void Compile_VirtualService_QualifiesShortHostsInItsNamespaceAndKeepsRouteOrder()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews, namespace: shop }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { prefix: /a }, statPrefix: reviews-a }, { uri: { prefix: /b } }]
                route: [{ destination: { host: ratings } }]
              - route:
                - { destination: { host: reviews, subset: v1 }, weight: 3 }
                - { destination: { host: reviews.other.svc.cluster.local, subset: v2 }, weight: 1 }
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1")]);
        var routes = Get<ServiceRoutes>(mesh.ViewFor("shop"), ResourceTypes.Routes, "reviews.shop.svc.cluster.local");

        Assert.Equal(2, routes.HttpRoutes.Count);
        Assert.Equal("/a", routes.HttpRoutes[0].Matches[0].Uri.Prefix);
        Assert.Equal(["reviews-a", ""], routes.HttpRoutes[0].Matches.Select(m => m.StatPrefix));
        Assert.Equal("ratings.shop.svc.cluster.local", routes.HttpRoutes[0].Destinations[0].Host);
        Assert.Equal(100u, routes.HttpRoutes[0].Destinations[0].Weight);
        Assert.Equal(3u, routes.HttpRoutes[1].Destinations[0].Weight);
        Assert.Equal("reviews.other.svc.cluster.local", routes.HttpRoutes[1].Destinations[1].Host);
        Assert.Contains("VirtualService shop/reviews", routes.Sources);
    }

    [Fact]
    public void Compile_DestinationRulePrecedence_CallerNamespaceThenServiceNamespaceThenRoot()
    {
        const string Rule = """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: r, namespace: NS }
            spec:
              host: reviews.shop.svc.cluster.local
              trafficPolicy: { loadBalancer: { simple: LB } }
            ---

            """;
        var config = Config(Rule.Replace("NS", "istio-system", StringComparison.Ordinal).Replace("LB", "RANDOM", StringComparison.Ordinal)
            + Rule.Replace("NS", "shop", StringComparison.Ordinal).Replace("LB", "LEAST_REQUEST", StringComparison.Ordinal)
            + Rule.Replace("NS", "caller", StringComparison.Ordinal).Replace("LB", "PASSTHROUGH", StringComparison.Ordinal));
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1")]);

        string Lb(string viewer) => Get<ServiceCluster>(mesh.ViewFor(viewer), ResourceTypes.Cluster, "reviews.shop.svc.cluster.local").LoadBalancer;
        Assert.Equal("PASSTHROUGH", Lb("caller"));
        Assert.Equal("LEAST_REQUEST", Lb("shop"));
        Assert.Equal("LEAST_REQUEST", Lb("elsewhere"));

        var rootOnly = MeshCompiler.Compile(Config(Rule.Replace("NS", "istio-system", StringComparison.Ordinal).Replace("LB", "RANDOM", StringComparison.Ordinal)), [Workload("reviews", "shop", "v1")]);
        Assert.Equal("RANDOM", Get<ServiceCluster>(rootOnly.ViewFor("x"), ResourceTypes.Cluster, "reviews.shop.svc.cluster.local").LoadBalancer);
    }

    [Fact]
    public void Compile_ExportTo_LimitsWhichNamespacesSeeRulesAndServiceEntries()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: private, namespace: shop }
            spec:
              hosts: [reviews]
              exportTo: ["."]
              http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: ext, namespace: shop }
            spec:
              hosts: [api.example.com]
              exportTo: [shop, partner]
              ports: [{ number: 80, name: http }]
              resolution: DNS
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1")]);

        Assert.Single(Get<ServiceRoutes>(mesh.ViewFor("shop"), ResourceTypes.Routes, "reviews.shop.svc.cluster.local").HttpRoutes);
        Assert.Empty(Get<ServiceRoutes>(mesh.ViewFor("other"), ResourceTypes.Routes, "reviews.shop.svc.cluster.local").HttpRoutes);
        Assert.True(mesh.ViewFor("partner").OfType(ResourceTypes.Routes).ContainsKey("api.example.com"));
        Assert.False(mesh.ViewFor("other").OfType(ResourceTypes.Routes).ContainsKey("api.example.com"));
    }

    [Fact]
    public void Compile_MeshConfigsDefaultExportTo_AppliesToResourcesThatSetNone()
    {
        var config = Config("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec:
              defaultServiceExportTo: ["."]
              defaultVirtualServiceExportTo: ["."]
              defaultDestinationRuleExportTo: ["."]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews, namespace: shop }
            spec:
              hosts: [reviews.shop.svc.cluster.local]
              http: [{ route: [{ destination: { host: reviews.shop.svc.cluster.local, subset: v1 } }] }]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews, namespace: shop }
            spec:
              host: reviews.shop.svc.cluster.local
              trafficPolicy: { loadBalancer: { simple: RANDOM } }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: public, namespace: shop }
            spec:
              hosts: [api.example.com]
              exportTo: ["*"]
              ports: [{ number: 80, name: http }]
              resolution: DNS
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1"), Workload("ratings", "other", "v1")]);
        string[] Hosts(string ns) => [.. mesh.ViewFor(ns).OfType(ResourceTypes.Routes).Keys.Order()];

        // Services without exportTo stay in their namespace; one that sets its own goes where it says.
        Assert.Equal(["api.example.com", "reviews.shop.svc.cluster.local"], Hosts("shop"));
        Assert.Equal(["api.example.com", "ratings.other.svc.cluster.local"], Hosts("other"));

        // The rules apply in their own namespace only.
        Assert.Single(Get<ServiceRoutes>(mesh.ViewFor("shop"), ResourceTypes.Routes, "reviews.shop.svc.cluster.local").HttpRoutes);
        Assert.Equal("RANDOM", Get<ServiceCluster>(mesh.ViewFor("shop"), ResourceTypes.Cluster, "reviews.shop.svc.cluster.local").LoadBalancer);
    }

    [Fact]
    public void Compile_TrustDomainAliases_ExpandPrincipalsInAnyOfThem_ToEachOfThem()
    {
        var config = Config("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { trustDomain: new.example, trustDomainAliases: [old.example] }
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: callers }
            spec:
              rules:
              - from: [{ source: { principals: ["old.example/ns/default/sa/a", "*/ns/default/sa/c"], notPrincipals: ["other.example/ns/x/sa/y"] } }]
                when: [{ key: source.principal, values: ["new.example/ns/default/sa/b"] }, { key: "request.headers[x-user]", values: ["old.example/ns/default/sa/a"] }]
            """);
        var inbound = Get<InboundPolicy>(MeshCompiler.Compile(config, []).ViewFor("default"), ResourceTypes.Inbound, ResourceTypes.InboundResourceName);

        var rule = inbound.Authorization.Single().Rules.Single();
        Assert.Equal(["new.example/ns/default/sa/a", "old.example/ns/default/sa/a", "*/ns/default/sa/c"], rule.From.Single().Principals);
        Assert.Equal(["other.example/ns/x/sa/y"], rule.From.Single().NotPrincipals);
        Assert.Equal(["new.example/ns/default/sa/b", "old.example/ns/default/sa/b"], rule.When[0].Values);
        Assert.Equal(["old.example/ns/default/sa/a"], rule.When[1].Values); // not a principal: as written
    }

    [Fact]
    public void Compile_ServiceEntry_StaticEndpointsMapPortsAndDnsUsesTheHost()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: static }
            spec:
              hosts: [db.internal]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http, targetPort: 8080 }]
              resolution: STATIC
              endpoints:
              - { address: 10.0.0.1 }
              - { address: 10.0.0.2, ports: { http: 9999 }, labels: { version: v2 } }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: dns }
            spec:
              hosts: [api.example.com]
              ports: [{ number: 443, name: https, protocol: HTTPS }]
              resolution: DNS
            """);
        var view = MeshCompiler.Compile(config, []).ViewFor("default");

        var db = Get<ServiceCluster>(view, ResourceTypes.Cluster, "db.internal");
        Assert.Equal(8080u, db.Endpoints[0].Ports[0].TargetPort);
        Assert.Equal(9999u, db.Endpoints[1].Ports[0].TargetPort);
        Assert.Equal("v2", db.Endpoints[1].Labels["version"]);
        Assert.False(Get<ServiceRoutes>(view, ResourceTypes.Routes, "db.internal").External);
        var api = Get<ServiceCluster>(view, ResourceTypes.Cluster, "api.example.com");
        Assert.Equal("api.example.com", Assert.Single(api.Endpoints).Address);
        Assert.True(Get<ServiceRoutes>(view, ResourceTypes.Routes, "api.example.com").External);
    }

    [Fact]
    public void Compile_UnknownHostOrSubset_IsWarned()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: ghost }
            spec:
              hosts: [ghost]
              http: [{ route: [{ destination: { host: ghost, subset: v9 } }] }]
            """);
        var mesh = MeshCompiler.Compile(config, []);

        Assert.All(mesh.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        var host = Assert.Single(mesh.Diagnostics, d => d.Path == "spec.hosts[0]");
        Assert.Contains("names no known service", host.Message, StringComparison.Ordinal);
        var subset = Assert.Single(mesh.Diagnostics, d => d.Path == "spec.http[0].route[0].destination.subset");
        Assert.Contains("'v9'", subset.Message, StringComparison.Ordinal);

        // Found after parsing, by path, yet located as the parser's findings are: at the value, not the document.
        Assert.Equal((5, 11), (host.Line, host.Column));
        Assert.Equal((6, 58), (subset.Line, subset.Column));
    }

    [Fact]
    public void Compile_CustomPolicy_CarriesItsProvider_AndAnUndefinedOneIsWarned()
    {
        var config = Config("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              extensionProviders: [{ name: opa, envoyExtAuthzHttp: { service: opa.example.com, port: 8181, timeout: 2s, headersToUpstreamOnAllow: [x-user] } }]
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: checked }
            spec: { action: CUSTOM, provider: { name: opa }, rules: [{}] }
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: unchecked }
            spec:
              action: CUSTOM
              provider: { name: nowhere }
              rules: [{}]
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("r", "default", "v1")]);

        var finding = Assert.Single(mesh.Diagnostics);
        Assert.Equal(("spec.provider.name", DiagnosticSeverity.Warning, 17), (finding.Path, finding.Severity, finding.Line));
        Assert.Contains("'nowhere'", finding.Message, StringComparison.Ordinal);
        var policies = Get<InboundPolicy>(mesh.ViewFor("default"), ResourceTypes.Inbound, ResourceTypes.InboundResourceName).Authorization;
        var checkedPolicy = policies.Single(p => p.Name == "default/checked");
        Assert.Equal(("opa", "opa.example.com", 8181u, 2000ul, "x-user"), (checkedPolicy.Provider, checkedPolicy.ExtAuthz.Service, checkedPolicy.ExtAuthz.Port, checkedPolicy.ExtAuthz.TimeoutMs, checkedPolicy.ExtAuthz.HeadersToUpstreamOnAllow.Single()));
        var uncheckedPolicy = policies.Single(p => p.Name == "default/unchecked");
        Assert.Equal(("nowhere", null), (uncheckedPolicy.Provider, uncheckedPolicy.ExtAuthz));
    }

    [Fact]
    public void Compile_SidecarEgressWithAPort_AdmitsItsHostsOnThatPortOnly_AsIstiosListenerPerPort()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: default, namespace: shop }
            spec:
              egress:
              - port: { number: 9080, protocol: HTTP, name: http }
                hosts: ["./reviews.shop.svc.cluster.local", "./ratings.shop.svc.cluster.local"]
              - port: { number: 9443 }
                hosts: ["./reviews.shop.svc.cluster.local"]
              - hosts: ["./ratings.shop.svc.cluster.local", "other/*"]
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1"), Workload("ratings", "shop", "v1"), Workload("details", "other", "v1"), Workload("web", "shop", "v1")]);
        var routes = mesh.ViewFor("shop", new Dictionary<string, string> { ["app"] = "web" }).OfType(ResourceTypes.Routes);

        // reviews only on the ports its entries name; ratings and details on every port (an entry without one names them).
        Assert.Equal([9080u, 9443u], routes["reviews.shop.svc.cluster.local"].Resource_.Unpack<ServiceRoutes>().SidecarPorts);
        Assert.Empty(routes["ratings.shop.svc.cluster.local"].Resource_.Unpack<ServiceRoutes>().SidecarPorts);
        Assert.Empty(routes["details.other.svc.cluster.local"].Resource_.Unpack<ServiceRoutes>().SidecarPorts);
    }

    [Fact]
    public void Compile_Sidecar_ScopesWhatAWorkloadReceives_SelectorThenNamespaceThenMesh()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: default, namespace: istio-system }
            spec:
              egress: [{ hosts: ["./*", "shop/*"] }]
            ---
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: default, namespace: shop }
            spec:
              egress: [{ hosts: ["./reviews.shop.svc.cluster.local", "*/*.example.com"] }]
            ---
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: tight, namespace: shop }
            spec:
              workloadSelector: { labels: { app: productpage } }
              egress: [{ hosts: ["./ratings.shop.svc.cluster.local"] }]
              outboundTrafficPolicy: { mode: REGISTRY_ONLY }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: api, namespace: other }
            spec:
              hosts: [api.example.com]
              ports: [{ number: 443, name: https, protocol: HTTPS }]
              resolution: DNS
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1"), Workload("ratings", "shop", "v1"), Workload("details", "other", "v1")]);
        string[] Hosts(string ns, Dictionary<string, string> labels) => [.. mesh.ViewFor(ns, labels).OfType(ResourceTypes.Cluster).Keys.Order()];

        // The namespace's own Sidecar: its reviews, and example.com hosts of any namespace.
        Assert.Equal(["api.example.com", "reviews.shop.svc.cluster.local"], Hosts("shop", new() { ["app"] = "reviews" }));

        // A workload always receives its own service (its inbound side reads its routes), egress or not.
        var ratings = new Dictionary<string, string> { ["app"] = "ratings" };
        Assert.Equal(["api.example.com", "ratings.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"], mesh.ViewFor("shop", ratings, "ratings").OfType(ResourceTypes.Routes).Keys.Order());
        Assert.DoesNotContain("ratings.shop.svc.cluster.local", mesh.ViewFor("shop", ratings, "reviews").OfType(ResourceTypes.Routes).Keys);

        // A selecting Sidecar beats it, and sets the outbound policy of the workloads it selects.
        var productpage = new Dictionary<string, string> { ["app"] = "productpage" };
        Assert.Equal(["ratings.shop.svc.cluster.local"], Hosts("shop", productpage));
        Assert.Equal("REGISTRY_ONLY", Get<MeshSettings>(mesh.ViewFor("shop", productpage), ResourceTypes.Mesh, "mesh").OutboundTrafficPolicy);
        Assert.Equal("ALLOW_ANY", Get<MeshSettings>(mesh.ViewFor("shop", new Dictionary<string, string>()), ResourceTypes.Mesh, "mesh").OutboundTrafficPolicy);

        // Elsewhere the mesh's default: the workload's own namespace ("." in the root namespace's Sidecar; the
        // ServiceEntry api is in "other" too) and shop.
        Assert.Equal(["api.example.com", "details.other.svc.cluster.local", "ratings.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"], Hosts("other", new() { ["app"] = "details" }));
    }

    [Fact]
    public void Compile_WorkloadEntries_AreEndpointsOfTheServiceEntriesSelectingThem()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: vm-api, namespace: shop }
            spec:
              hosts: [api.shop.internal]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http, protocol: HTTP, targetPort: 8080 }]
              resolution: STATIC
              workloadSelector: { labels: { app: api } }
            ---
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: { name: vm-1, namespace: shop }
            spec:
              address: 10.1.0.7
              labels: { app: api, security.istio.io/tlsMode: istio }
              serviceAccount: api
              ports: { http: 9090 }
            ---
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: { name: vm-2, namespace: shop }
            spec: { address: 10.1.0.8, labels: { app: api } }
            ---
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: { name: elsewhere, namespace: other }
            spec: { address: 10.1.0.9, labels: { app: api } }
            """);
        var cluster = Get<ServiceCluster>(MeshCompiler.Compile(config, []).ViewFor("shop"), ResourceTypes.Cluster, "api.shop.internal");

        Assert.Equal(["10.1.0.7", "10.1.0.8"], cluster.Endpoints.Select(e => e.Address).Order());
        var vm1 = cluster.Endpoints.Single(e => e.Address == "10.1.0.7");
        Assert.Equal(("spiffe://cluster.local/ns/shop/sa/api", false, 9090u, "WorkloadEntry shop/vm-1"), (vm1.Identity, vm1.AutoMtlsOff, vm1.Ports.Single().TargetPort, vm1.Origin));
        var vm2 = cluster.Endpoints.Single(e => e.Address == "10.1.0.8");
        Assert.Equal((string.Empty, 8080u), (vm2.Identity, vm2.Ports.Single().TargetPort));
    }

    [Fact]
    public void Compile_SameInput_GivesSameVersions_ChangedInput_ChangesOnlyAffectedResources()
    {
        var workloads = new[] { Workload("a", "default", "v1"), Workload("b", "default", "v1", port: 2) };
        var first = MeshCompiler.Compile(ConfigSet.Empty, workloads).ViewFor("default");
        var again = MeshCompiler.Compile(ConfigSet.Empty, workloads).ViewFor("default");
        var changed = MeshCompiler.Compile(ConfigSet.Empty, [workloads[0], Workload("b", "default", "v1", port: 3)]).ViewFor("default");

        string V(ResourceView v, string host) => v.OfType(ResourceTypes.Cluster)[host].Version;
        Assert.Equal(V(first, "a.default.svc.cluster.local"), V(again, "a.default.svc.cluster.local"));
        Assert.Equal(V(first, "a.default.svc.cluster.local"), V(changed, "a.default.svc.cluster.local"));
        Assert.NotEqual(V(first, "b.default.svc.cluster.local"), V(changed, "b.default.svc.cluster.local"));
    }

    [Fact]
    public void Compile_DestinationRuleWorkloadSelector_AppliesOnlyToSelectedWorkloadsOfItsNamespace()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: everyone, namespace: shop }
            spec:
              host: reviews.shop.svc.cluster.local
              trafficPolicy: { loadBalancer: { simple: RANDOM } }
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: canary-callers, namespace: shop }
            spec:
              host: reviews.shop.svc.cluster.local
              workloadSelector: { matchLabels: { track: canary } }
              trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } }
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "shop", "v1")]);

        string Lb(string ns, Dictionary<string, string> labels) => Get<ServiceCluster>(mesh.ViewFor(ns, labels), ResourceTypes.Cluster, "reviews.shop.svc.cluster.local").LoadBalancer;
        Assert.Equal("LEAST_REQUEST", Lb("shop", new() { ["track"] = "canary", ["app"] = "x" }));
        Assert.Equal("RANDOM", Lb("shop", new() { ["track"] = "stable" }));
        Assert.Equal("RANDOM", Lb("other", new() { ["track"] = "canary" }));
    }

    [Fact]
    public void Compile_ServiceEntryWorkloadSelector_TakesTheMatchingWorkloadsAsEndpoints()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: legacy-api }
            spec:
              hosts: [api.legacy.internal]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              workloadSelector: { labels: { app: reviews, version: v2 } }
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("reviews", "default", "v1", port: 1), Workload("reviews", "default", "v2", port: 2), Workload("reviews", "other", "v2", port: 3)]);

        var cluster = Get<ServiceCluster>(mesh.ViewFor("default"), ResourceTypes.Cluster, "api.legacy.internal");
        var endpoint = Assert.Single(cluster.Endpoints);
        Assert.Equal(80u, endpoint.Ports[0].ServicePort);
        Assert.Equal(2u, endpoint.Ports[0].TargetPort);
    }

    [Fact]
    public void Compile_SeveralVirtualServicesForOneHost_AreMergedInNamespaceAndNameOrder()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: b-catch-all }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: a-api }
            spec:
              hosts: [reviews.default.svc.cluster.local]
              http: [{ match: [{ uri: { prefix: /api } }], route: [{ destination: { host: reviews, subset: v2 } }] }]
            """);
        var routes = Get<ServiceRoutes>(MeshCompiler.Compile(config, [Workload("reviews", "default", "v1")]).ViewFor("default"), ResourceTypes.Routes, "reviews.default.svc.cluster.local");

        Assert.Equal(["VirtualService default/a-api", "VirtualService default/b-catch-all"], routes.Sources);
        Assert.Equal(["v2", "v1"], routes.HttpRoutes.Select(r => r.Destinations[0].Subset));
    }

    [Fact]
    public void Compile_Retries_SplitsConditionsFromStatusCodes()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: r }
            spec:
              hosts: [r]
              http: [{ timeout: 2s, retries: { attempts: 3, perTryTimeout: 250ms, retryOn: "5xx,gateway-error,503,429" }, route: [{ destination: { host: r } }] }]
            """);
        var route = Get<ServiceRoutes>(MeshCompiler.Compile(config, [Workload("r", "default", "v1")]).ViewFor("default"), ResourceTypes.Routes, "r.default.svc.cluster.local").HttpRoutes[0];

        Assert.Equal(["5xx", "gateway-error"], route.Retries.RetryOn);
        Assert.Equal([503u, 429u], route.Retries.RetriableStatusCodes);
        Assert.Equal(250ul, route.Retries.PerTryTimeoutMs);
        Assert.Equal(2000ul, route.TimeoutMs);
    }

    [Theory]
    [InlineData("{ http: { http2MaxRequests: 50 } }", 50u)]
    [InlineData("{ tcp: { maxConnections: 10 }, http: { http1MaxPendingRequests: 5 } }", 15u)]
    [InlineData("{ tcp: { maxConnections: 10 } }", 1034u)]
    [InlineData("{ tcp: { connectTimeout: 1s } }", 0u)]

    // 0 is a proto3 default, valid in Istio (non-negative): the field's default applies, as if it were left out.
    [InlineData("{ tcp: { maxConnections: 10 }, http: { http2MaxRequests: 0, http1MaxPendingRequests: 0, maxConcurrentStreams: 0 } }", 1034u)]
    [InlineData("{ tcp: { maxConnections: 0 }, http: { http1MaxPendingRequests: 0 } }", 0u)]
    public void Compile_ConnectionPool_BoundsRequestsInFlight(string pool, uint expected)
    {
        Assert.Equal(expected, ClusterWithPool(pool).Upstream.Limits.MaxRequests);
    }

    [Theory]
    [InlineData("{ tcp: { idleTimeout: 0s } }", ulong.MaxValue)] // 0s: never closed, as Istio documents
    [InlineData("{ tcp: { idleTimeout: 90s } }", 90_000ul)]
    [InlineData("{ tcp: { idleTimeout: 0s }, http: { idleTimeout: 5s } }", 5_000ul)]
    public void Compile_IdleTimeout_ZeroTcpTimeoutKeepsConnections(string pool, ulong expected)
    {
        Assert.Equal(expected, ClusterWithPool(pool).Upstream.Connection.IdleTimeoutMs);
    }

    /// <summary>Compiles a DestinationRule with <paramref name="pool"/> as its connectionPool and returns its service's cluster.</summary>
    private static ServiceCluster ClusterWithPool(string pool)
    {
        var config = Config($$"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: r }
            spec:
              host: r
              trafficPolicy: { connectionPool: {{pool}} }
            """);
        return Get<ServiceCluster>(MeshCompiler.Compile(config, [Workload("r", "default", "v1")]).ViewFor("default"), ResourceTypes.Cluster, "r.default.svc.cluster.local");
    }

    [Fact]
    public void Compile_SubsetAndPortPolicies_ResolveIstiosPrecedence_FieldByField()
    {
        // Precedence per field (connectionPool, outlierDetection, tls, retryBudget): the subset's port-level
        // settings, the subset's, the rule's port-level settings, the rule's.
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: r }
            spec:
              host: r
              trafficPolicy:
                connectionPool: { http: { http2MaxRequests: 100 } }
                outlierDetection: { consecutive5xxErrors: 7 }
                retryBudget: { percent: 20 }
                portLevelSettings:
                - port: { number: 9080 }
                  connectionPool: { http: { http2MaxRequests: 50 } }
                  tls: { mode: DISABLE }
                - port: { number: 9090 }
                  loadBalancer: { simple: RANDOM }
              subsets:
              - name: v1
                labels: { version: v1 }
                trafficPolicy:
                  connectionPool: { http: { http2MaxRequests: 10 } }
              - name: v2
                labels: { version: v2 }
                trafficPolicy:
                  portLevelSettings:
                  - port: { number: 9080 }
                    outlierDetection: { consecutive5xxErrors: 2 }
                    tls: { mode: ISTIO_MUTUAL }
              - { name: v3, labels: { version: v3 } }
            """);
        var cluster = Get<ServiceCluster>(MeshCompiler.Compile(config, [Workload("r", "default", "v1")]).ViewFor("default"), ResourceTypes.Cluster, "r.default.svc.cluster.local");

        Assert.Equal(100u, cluster.Upstream.Limits.MaxRequests);
        Assert.Equal(20, cluster.Upstream.Limits.RetryBudgetPercent);
        Assert.Equal(string.Empty, cluster.Upstream.TlsMode);
        var port = Assert.Single(cluster.PortUpstreams); // 9090 sets a balancer only
        Assert.Equal((9080u, 50u, 7u, "DISABLE", 20d), (port.Port, port.Policy.Limits.MaxRequests, port.Policy.OutlierDetection.Consecutive5XxErrors, port.Policy.TlsMode, port.Policy.Limits.RetryBudgetPercent));

        var v1 = cluster.Subsets.Single(s => s.Name == "v1");
        Assert.Equal((10u, 7u), (v1.Upstream.Limits.MaxRequests, v1.Upstream.OutlierDetection.Consecutive5XxErrors));
        var v1Port = Assert.Single(v1.PortUpstreams);
        Assert.Equal((9080u, 10u, "DISABLE"), (v1Port.Port, v1Port.Policy.Limits.MaxRequests, v1Port.Policy.TlsMode)); // the subset's pool over the rule's port-level one

        var v2 = cluster.Subsets.Single(s => s.Name == "v2");
        Assert.Null(v2.Upstream); // its trafficPolicy sets port-level settings only
        var v2Port = Assert.Single(v2.PortUpstreams);
        Assert.Equal((50u, 2u, "ISTIO_MUTUAL"), (v2Port.Policy.Limits.MaxRequests, v2Port.Policy.OutlierDetection.Consecutive5XxErrors, v2Port.Policy.TlsMode));

        var v3 = cluster.Subsets.Single(s => s.Name == "v3");
        Assert.Null(v3.Upstream);
        Assert.Equal(50u, Assert.Single(v3.PortUpstreams).Policy.Limits.MaxRequests);
    }

    [Fact]
    public void Compile_ProxyProtocol_IsAConnectionSetting_ThatSubsetsAndPortsInherit_AndASubsetReplaces()
    {
        // As Istio merges it: a subset's proxyProtocol replaces the rule's; ports have none of their own.
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: r }
            spec:
              host: r
              trafficPolicy:
                proxyProtocol: {}
                portLevelSettings:
                - port: { number: 9080 }
                  connectionPool: { tcp: { maxConnections: 5 } }
              subsets:
              - name: v1
                labels: { version: v1 }
                trafficPolicy:
                  proxyProtocol: { version: V2 }
              - name: v2
                labels: { version: v2 }
                trafficPolicy:
                  outlierDetection: { consecutive5xxErrors: 2 }
            """);
        var cluster = Get<ServiceCluster>(MeshCompiler.Compile(config, [Workload("r", "default", "v1")]).ViewFor("default"), ResourceTypes.Cluster, "r.default.svc.cluster.local");

        Assert.Equal(1u, cluster.Upstream.Connection.ProxyProtocolVersion); // V1, Istio's default
        var port = Assert.Single(cluster.PortUpstreams);
        Assert.Equal((1u, 5u), (port.Policy.Connection.ProxyProtocolVersion, port.Policy.Connection.MaxConnections));
        Assert.Equal(2u, cluster.Subsets.Single(s => s.Name == "v1").Upstream.Connection.ProxyProtocolVersion);
        Assert.Equal(1u, cluster.Subsets.Single(s => s.Name == "v2").Upstream.Connection.ProxyProtocolVersion);
    }

    [Fact]
    public void Compile_ProxyProtocol_ToMeshKitWorkloads_IsWarned_ToAServiceEntrysEndpoints_IsNot()
    {
        var config = Config("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: r }
            spec:
              host: r
              trafficPolicy: { proxyProtocol: {} }
              subsets: [{ name: v1, labels: { version: v1 }, trafficPolicy: { proxyProtocol: { version: V2 } } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: lb }
            spec:
              hosts: [lb.example.com]
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              endpoints: [{ address: 10.1.0.1 }]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: lb }
            spec: { host: lb.example.com, trafficPolicy: { proxyProtocol: {} } }
            """);

        var mesh = MeshCompiler.Compile(config, [Workload("r", "default", "v1")]);

        Assert.Equal(
            ["spec.subsets[0].trafficPolicy.proxyProtocol", "spec.trafficPolicy.proxyProtocol"],
            mesh.Diagnostics.Where(d => d.Message.Contains("PROXY protocol", StringComparison.Ordinal)).Select(d => d.Path).Order());
        Assert.All(mesh.Diagnostics, d => Assert.Equal(("DestinationRule default/r", DiagnosticSeverity.Warning), (d.Resource, d.Severity)));
        Assert.Empty(MeshCompiler.Compile(config, [Workload("r", "default", "v1")], registryKnown: false).Diagnostics);
    }

    [Fact]
    public void Compile_MeshConfig_SetsSettings()
    {
        var config = Config("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec:
              trustDomain: example.org
              rootNamespace: mesh-root
              clusterDomain: corp.local
              outboundTrafficPolicy: { mode: REGISTRY_ONLY }
            """);
        var mesh = MeshCompiler.Compile(config, [Workload("a", "default", "v1")]);

        Assert.Equal("REGISTRY_ONLY", mesh.Settings.OutboundTrafficPolicy);
        Assert.Equal("mesh-root", mesh.Settings.RootNamespace);
        Assert.Contains("a.default.svc.corp.local", mesh.ServiceHosts);
    }
}
