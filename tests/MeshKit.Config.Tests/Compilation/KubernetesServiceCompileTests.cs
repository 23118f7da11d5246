using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

/// <summary>Kubernetes Services compiled: their endpoints are the live workloads their selector picks.</summary>
public class KubernetesServiceCompileTests
{
    private static CompiledMesh Compile(string yaml, params WorkloadAnnouncement[] workloads)
    {
        var result = ConfigParser.Parse(yaml, "services.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        return MeshCompiler.Compile(new ConfigSet(result.Resources), workloads);
    }

    private static WorkloadAnnouncement Workload(string service, string version, string address, string ns = "shop", params (string Name, uint Target)[] ports)
    {
        var w = new WorkloadAnnouncement { Service = service, Namespace = ns, InstanceId = $"{service}-{version}-{address}", Address = address, ServiceAccount = service };
        w.Labels["app"] = service;
        w.Labels["version"] = version;
        foreach (var (name, target) in ports.Length == 0 ? [("http", 8080u)] : ports)
        {
            w.Ports.Add(new WorkloadPort { Name = name, TargetPort = target, ServicePort = 9080, Protocol = "http" });
        }

        return w;
    }

    private static ServiceCluster Cluster(CompiledMesh mesh, string host) =>
        mesh.ViewFor("shop").OfType(ResourceTypes.Cluster)[host].Resource_.Unpack<ServiceCluster>();

    private static readonly WorkloadAnnouncement[] Reviews =
    [
        Workload("reviews", "v1", "10.0.0.1"), Workload("reviews", "v2", "10.0.0.2"), Workload("reviews", "v2", "10.0.0.3"),
        Workload("reviews", "v2", "10.0.0.4", ns: "other"), Workload("ratings", "v2", "10.0.0.5"),
    ];

    [Fact]
    public void AVersionService_HasTheWorkloadsOfItsNamespaceThatCarryItsLabels()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v2, namespace: shop }
            spec:
              selector: { app: reviews, version: v2 }
              ports: [{ port: 9080, name: http }]
            """, Reviews);

        var cluster = Cluster(mesh, "reviews-v2.shop.svc.cluster.local");
        Assert.Equal(["10.0.0.2", "10.0.0.3"], cluster.Endpoints.Select(e => e.Address).Order());
        Assert.All(cluster.Endpoints, e => Assert.Equal((9080u, 8080u, "reviews"), (e.Ports.Single().ServicePort, e.Ports.Single().TargetPort, e.ServiceAccount)));
        Assert.Empty(mesh.Diagnostics);
    }

    [Fact]
    public void AServiceNamedAsTheWorkloadsOwn_DoesNotCountThemTwice()
    {
        // Bookinfo's bookinfo.yaml: Service reviews, selecting app: reviews, over workloads registered as reviews.
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, namespace: shop }
            spec:
              selector: { app: reviews }
              ports: [{ port: 9080, name: http }]
            """, Reviews);

        Assert.Equal(["10.0.0.1", "10.0.0.2", "10.0.0.3"], Cluster(mesh, "reviews.shop.svc.cluster.local").Endpoints.Select(e => e.Address).Order());
    }

    [Fact]
    public void AServiceNamedAsTheWorkloadsOwn_OnAPortTheyDoNotAnnounce_GivesThemThatPort()
    {
        // Service reviews on port 80 in front of workloads that announce 9080: before, the host had port 80 and its
        // endpoints had none (every call on port 80 was 503, "no healthy upstream").
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, namespace: shop }
            spec:
              selector: { app: reviews }
              ports: [{ port: 80, name: web, targetPort: 8080 }]
            """, Reviews);

        var endpoints = Cluster(mesh, "reviews.shop.svc.cluster.local").Endpoints;
        Assert.Equal(["10.0.0.1", "10.0.0.2", "10.0.0.3"], endpoints.Select(e => e.Address).Order());
        Assert.All(endpoints, e => Assert.Equal([(80u, 8080u), (9080u, 8080u)], e.Ports.Select(p => (p.ServicePort, p.TargetPort)).Order()));
    }

    [Fact]
    public void ANamedTargetPort_IsTheWorkloadsPortOfThatName_AndAWorkloadWithoutItIsNoEndpoint()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: admin, namespace: shop }
            spec:
              selector: { app: reviews }
              ports: [{ port: 80, name: http, targetPort: admin }]
            """,
            Workload("reviews", "v1", "10.0.0.1", ports: [("http", 8080), ("admin", 8081)]),
            Workload("reviews", "v2", "10.0.0.2"));

        var endpoint = Assert.Single(Cluster(mesh, "admin.shop.svc.cluster.local").Endpoints);
        Assert.Equal(("10.0.0.1", 80u, 8081u), (endpoint.Address, endpoint.Ports.Single().ServicePort, endpoint.Ports.Single().TargetPort));
    }

    [Fact]
    public void IstiosExportToAnnotation_LimitsWhoSeesTheHost_TheWorkloadsRegisteredUnderItIncluded()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v2, namespace: shop, annotations: { networking.istio.io/exportTo: "." } }
            spec: { selector: { app: reviews, version: v2 }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: ratings, namespace: shop, annotations: { networking.istio.io/exportTo: " web , shop" } }
            spec: { selector: { app: ratings }, ports: [{ port: 9080, name: http }] }
            """, Reviews);
        string[] Hosts(string ns) => [.. mesh.ViewFor(ns).OfType(ResourceTypes.Cluster).Keys.Where(h => h.EndsWith(".shop.svc.cluster.local", StringComparison.Ordinal)).Order()];

        Assert.Equal(["ratings.shop.svc.cluster.local", "reviews-v2.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"], Hosts("shop"));
        Assert.Equal(["ratings.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"], Hosts("web"));
        Assert.Equal(["reviews.shop.svc.cluster.local"], Hosts("other"));
    }

    [Fact]
    public void APersistentSessionLabel_IsTheClustersSessionPersistence_TheRegisteredWorkloadsHostIncluded()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, namespace: shop, labels: { istio.io/persistent-session: "shop:/cart" } }
            spec: { selector: { app: reviews }, ports: [{ port: 9080, name: http }] }
            """, Reviews);

        var session = Cluster(mesh, "reviews.shop.svc.cluster.local").SessionPersistence;
        Assert.Equal(("shop", "/cart", 0ul), (session.CookieName, session.CookiePath, session.CookieTtlMs));
        Assert.Null(Cluster(mesh, "ratings.shop.svc.cluster.local").SessionPersistence);
    }

    [Fact]
    public void AnExternalNameService_NamingAServiceOfTheMesh_IsThatServiceUnderAnotherName()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: critics, namespace: shop }
            spec: { type: ExternalName, externalName: reviews.shop.svc.cluster.local }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: scores, namespace: shop, annotations: { networking.istio.io/exportTo: "." } }
            spec: { type: ExternalName, externalName: ratings.shop.svc.cluster.local }
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: ratings, namespace: shop }
            spec:
              hosts: [ratings]
              http: [{ route: [{ destination: { host: critics } }], mirror: { host: critics } }]
            """, Reviews);
        ServiceRoutes Routes(string ns, string host) => mesh.ViewFor(ns).OfType(ResourceTypes.Routes)[host].Resource_.Unpack<ServiceRoutes>();

        // Without routes of its own, the service's default: to the service itself.
        var critics = Routes("web", "critics.shop.svc.cluster.local");
        Assert.Equal(("shop", "critics", "reviews.shop.svc.cluster.local"), (critics.Namespace, critics.ShortName, critics.HttpRoutes.Single().Destinations.Single().Host));
        Assert.Equal("Service shop/critics", critics.Sources[0]);
        Assert.Equal([9080u], critics.Ports.Select(p => p.Number));
        Assert.False(mesh.ViewFor("web").OfType(ResourceTypes.Cluster).ContainsKey("critics.shop.svc.cluster.local"));

        // A route to an alias goes to the service it names (and mirrors to it).
        var ratings = Routes("shop", "ratings.shop.svc.cluster.local").HttpRoutes.Single();
        Assert.Equal(("reviews.shop.svc.cluster.local", "reviews.shop.svc.cluster.local"), (ratings.Destinations.Single().Host, ratings.Mirrors.Single().Host));

        // With routes, the same routes; exported to its own namespace only.
        Assert.Equal("reviews.shop.svc.cluster.local", Routes("shop", "scores.shop.svc.cluster.local").HttpRoutes.Single().Destinations.Single().Host);
        Assert.False(mesh.ViewFor("web").OfType(ResourceTypes.Routes).ContainsKey("scores.shop.svc.cluster.local"));
        Assert.Empty(mesh.Diagnostics);
    }

    [Fact]
    public void AnExternalNameService_NamingAnotherHost_SendsItsCallsThereByDns_OnItsPorts()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: payments, namespace: shop }
            spec: { type: ExternalName, externalName: api.payments.example, ports: [{ port: 443, name: https }] }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: mail, namespace: shop }
            spec: { type: ExternalName, externalName: smtp.example }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: ratings, namespace: shop }
            spec: { type: ExternalName, externalName: elsewhere.example }
            """, Reviews);

        var endpoint = Cluster(mesh, "payments.shop.svc.cluster.local").Endpoints.Single();
        Assert.Equal(("api.payments.example", 443u), (endpoint.Address, endpoint.Ports.Single().TargetPort));
        Assert.True(mesh.ViewFor("shop").OfType(ResourceTypes.Routes)["payments.shop.svc.cluster.local"].Resource_.Unpack<ServiceRoutes>().External);
        Assert.Collection(
            mesh.Diagnostics,
            d => Assert.Equal(("Service shop/mail", "spec.externalName"), (d.Resource, d.Path)),
            d => Assert.Equal(("Service shop/ratings", "metadata.name"), (d.Resource, d.Path)));
        Assert.StartsWith("'smtp.example' is no service of the mesh", mesh.Diagnostics[0].Message, StringComparison.Ordinal);
        Assert.StartsWith("'ratings.shop.svc.cluster.local' is a service of the mesh already", mesh.Diagnostics[1].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnHttpRouteOnAVersionService_FindsItsHost()
    {
        // Istio's Gateway API request-routing task: the parent and the backends are Services of bookinfo-versions.yaml.
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v1, namespace: shop }
            spec: { selector: { app: reviews, version: v1 }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v2, namespace: shop }
            spec: { selector: { app: reviews, version: v2 }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews, namespace: shop }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
              rules:
              - matches: [{ headers: [{ name: end-user, value: jason }] }]
                backendRefs: [{ name: reviews-v2, port: 9080 }]
              - backendRefs: [{ name: reviews-v1, port: 9080 }]
            """, Reviews);

        Assert.Empty(mesh.Diagnostics);
        var routes = mesh.ViewFor("shop").OfType(ResourceTypes.Routes)["reviews.shop.svc.cluster.local"].Resource_.Unpack<ServiceRoutes>();
        Assert.Equal(["reviews-v2.shop.svc.cluster.local", "reviews-v1.shop.svc.cluster.local"], routes.HttpRoutes.Select(r => r.Destinations.Single().Host));
        Assert.Equal(["10.0.0.1"], Cluster(mesh, "reviews-v1.shop.svc.cluster.local").Endpoints.Select(e => e.Address));
    }
}
