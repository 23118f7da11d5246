using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

/// <summary>HTTPRoutes attached to a Service, compiled: Gateway API's order across routes, producer and consumer routes, ports.</summary>
public class GatewayRouteCompileTests
{
    private static CompiledMesh Compile(string yaml)
    {
        var result = ConfigParser.Parse(yaml, "routes.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        return MeshCompiler.Compile(new ConfigSet(result.Resources), [Workload("reviews", "shop"), Workload("ratings", "shop"), Workload("reviews-v2", "shop")]);
    }

    private static WorkloadAnnouncement Workload(string service, string ns)
    {
        var w = new WorkloadAnnouncement { Service = service, Namespace = ns, InstanceId = service, Address = "10.0.0.1", ServiceAccount = "sa" };
        w.Ports.Add(new WorkloadPort { Name = "http", TargetPort = 8080, ServicePort = 9080, Protocol = "http" });
        return w;
    }

    private static ServiceRoutes Routes(CompiledMesh mesh, string viewer, string host = "reviews.shop.svc.cluster.local") =>
        mesh.ViewFor(viewer).OfType(ResourceTypes.Routes)[host].Resource_.Unpack<ServiceRoutes>();

    private static string HttpRoute(string name, string ns, string rules, string? created = null) => $$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: { name: {{name}}, namespace: {{ns}}{{(created is null ? string.Empty : $", creationTimestamp: \"{created}\"")}} }
        spec:
          parentRefs: [{ group: "", kind: Service, name: reviews, namespace: shop }]
          rules:
        {{rules}}

        """;

    [Fact]
    public void MatchesOfEveryRouteOfTheService_AreOrderedByGatewayApiPrecedence()
    {
        var mesh = Compile(
            HttpRoute("a-catch-all", "shop", """
              - backendRefs: [{ name: reviews, port: 9080 }]
              - matches: [{ path: { type: PathPrefix, value: /api } }]
                backendRefs: [{ name: reviews-v2, port: 9080 }]
            """, created: "2026-01-01T00:00:00Z")
            + "---\n" + HttpRoute("b-specific", "shop", """
              - matches: [{ path: { type: PathPrefix, value: /api } , method: GET }]
                backendRefs: [{ name: ratings, port: 9080 }]
              - matches: [{ path: { type: Exact, value: /api/login } }, { path: { type: PathPrefix, value: /api/users }, headers: [{ name: x-a, value: "1" }] }]
                backendRefs: [{ name: ratings, port: 9080 }]
            """));

        var routes = Routes(mesh, "default"); // a producer route applies to callers of every namespace
        string Describe(HttpRoute r) => $"{(r.Matches[0].Uri?.KindCase switch { StringMatch.KindOneofCase.Exact => "=" + r.Matches[0].Uri.Exact, StringMatch.KindOneofCase.PathPrefix => r.Matches[0].Uri.PathPrefix, _ => "?" })}{(r.Matches[0].Method is null ? string.Empty : " " + r.Matches[0].Method.Exact)}>{r.Destinations[0].Host.Split('.')[0]}";
        Assert.Equal(
            ["=/api/login>ratings", "/api/users>ratings", "/api GET>ratings", "/api>reviews-v2", "/>reviews"],
            routes.HttpRoutes.Select(Describe));
        Assert.Equal(["HTTPRoute shop/a-catch-all", "HTTPRoute shop/b-specific"], routes.Sources.Order());
        Assert.Equal(100u, routes.HttpRoutes[0].Destinations[0].Weight);
    }

    [Fact]
    public void OfEquallySpecificMatches_TheOlderRouteComes_ThenTheFirstByNamespaceAndName()
    {
        var mesh = Compile(
            HttpRoute("a", "shop", "  - backendRefs: [{ name: ratings, port: 9080 }]")
            + "---\n" + HttpRoute("b", "shop", "  - backendRefs: [{ name: reviews-v2, port: 9080 }]", created: "2026-01-01T00:00:00Z")
            + "---\n" + HttpRoute("c", "shop", "  - backendRefs: [{ name: reviews, port: 9080 }]", created: "2025-01-01T00:00:00Z"));

        Assert.Equal(["reviews", "reviews-v2", "ratings"], Routes(mesh, "shop").HttpRoutes.Select(r => r.Destinations[0].Host.Split('.')[0]));
    }

    [Fact]
    public void AConsumerRoute_RoutesItsOwnNamespacesCalls_InsteadOfTheProducers()
    {
        var mesh = Compile(
            HttpRoute("producer", "shop", "  - backendRefs: [{ name: reviews, port: 9080 }]")
            + "---\n" + HttpRoute("consumer", "web", """
              - matches: [{ path: { value: /special } }]
                backendRefs: [{ name: ratings, namespace: shop, port: 9080 }]
            """));

        var web = Routes(mesh, "web");
        Assert.Equal(["ratings.shop.svc.cluster.local"], web.HttpRoutes.Select(r => r.Destinations[0].Host)); // /other is not routed for web's calls
        Assert.Equal(["HTTPRoute web/consumer"], web.Sources);
        Assert.Equal(["reviews.shop.svc.cluster.local"], Routes(mesh, "other").HttpRoutes.Select(r => r.Destinations[0].Host));
        Assert.Equal(["reviews.shop.svc.cluster.local"], Routes(mesh, "shop").HttpRoutes.Select(r => r.Destinations[0].Host));
    }

    [Fact]
    public void AParentsPort_RestrictsEveryMatch_AndBackendsAreQualifiedInTheClusterDomain()
    {
        var mesh = Compile("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { clusterDomain: corp.local }
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews, namespace: shop }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
              rules: [{ backendRefs: [{ name: ratings, port: 9080 }] }]
            """);

        var route = Assert.Single(Routes(mesh, "shop", "reviews.shop.svc.corp.local").HttpRoutes);
        Assert.Equal((0u, 9080u), (Assert.Single(route.Matches).Port, route.Matches[0].ServicePort)); // the port the call goes to, not the URL's
        Assert.Equal("ratings.shop.svc.corp.local", route.Destinations[0].Host);
    }

    [Fact]
    public void AVirtualServiceAndAnHttpRouteForOneService_AreAFinding_TheVirtualServicesRulesComeFirst()
    {
        var mesh = Compile(HttpRoute("reviews", "shop", "  - backendRefs: [{ name: ratings, port: 9080 }]") + "---\n" + """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews, namespace: shop }
            spec:
              hosts: [reviews]
              http: [{ match: [{ uri: { prefix: /vs } }], route: [{ destination: { host: reviews-v2 } }] }]
            """);

        Assert.Equal(["reviews-v2", "ratings"], Routes(mesh, "shop").HttpRoutes.Select(r => r.Destinations[0].Host.Split('.')[0]));
        var finding = Assert.Single(mesh.Diagnostics, d => d.Resource == "HTTPRoute shop/reviews");
        Assert.Equal(DiagnosticSeverity.Warning, finding.Severity);
        Assert.Equal("spec.parentRefs[0]", finding.Path);
        Assert.Contains("VirtualService shop/reviews", finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AGrpcRouteAndAnHttpRouteOnOneServicePort_TheGrpcRouteRoutes_TheOtherIsAFinding()
    {
        var mesh = Compile(HttpRoute("http", "shop", "  - backendRefs: [{ name: ratings, port: 9080 }]") + "---\n" + """
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: grpc, namespace: shop }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews, namespace: shop }]
              rules: [{ backendRefs: [{ name: reviews-v2, port: 9080 }] }]
            """);

        var routes = Routes(mesh, "shop");
        Assert.Equal(["reviews-v2"], routes.HttpRoutes.Select(r => r.Destinations[0].Host.Split('.')[0]));
        Assert.Equal(["GRPCRoute shop/grpc"], routes.Sources);
        var finding = Assert.Single(mesh.Diagnostics, d => d.Resource == "HTTPRoute shop/http");
        Assert.Contains("GRPCRoute shop/grpc", finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ARouteAttachedToAServiceEntry_RoutesItsHosts_AnUnknownOneIsAFinding()
    {
        var mesh = Compile("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: httpbin, namespace: shop }
            spec:
              hosts: [httpbin.example.com]
              location: MESH_EXTERNAL
              resolution: DNS
              ports: [{ number: 80, name: http, protocol: HTTP }]
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: egress, namespace: shop }
            spec:
              parentRefs: [{ group: networking.istio.io, kind: ServiceEntry, name: httpbin }, { group: networking.istio.io, kind: ServiceEntry, name: missing }]
              rules:
              - matches: [{ path: { value: /v2 } }]
                backendRefs: [{ group: networking.istio.io, kind: Hostname, name: httpbin.example.com, port: 80 }, { name: ratings, port: 9080 }]
            """);

        var route = Assert.Single(Routes(mesh, "shop", "httpbin.example.com").HttpRoutes);
        Assert.Equal(["httpbin.example.com", "ratings.shop.svc.cluster.local"], route.Destinations.Select(d => d.Host));
        var finding = Assert.Single(mesh.Diagnostics, d => d.Resource == "HTTPRoute shop/egress");
        Assert.Equal("spec.parentRefs[1]", finding.Path);
        Assert.Contains("names no ServiceEntry", finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ASectionName_IsThePortOfThatName_OfTheKubernetesService_OrOfTheServiceEntry()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, namespace: shop }
            spec:
              selector: { app: reviews }
              ports: [{ name: http, port: 9080 }, { name: admin, port: 9443 }]
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: httpbin, namespace: shop }
            spec:
              hosts: [httpbin.example.com]
              location: MESH_EXTERNAL
              resolution: DNS
              ports: [{ number: 80, name: http, protocol: HTTP }, { number: 8080, name: alt, protocol: HTTP }]
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: admin, namespace: shop }
            spec:
              parentRefs:
              - { group: "", kind: Service, name: reviews, sectionName: admin }
              - { group: networking.istio.io, kind: ServiceEntry, name: httpbin, sectionName: alt }
              - { group: "", kind: Service, name: reviews, sectionName: metrics }
              - { group: "", kind: Service, name: reviews, sectionName: admin, port: 9080 }
              rules: [{ backendRefs: [{ name: ratings, port: 9080 }] }]
            """);

        Assert.Equal(9443u, Assert.Single(Routes(mesh, "shop").HttpRoutes).Matches[0].ServicePort);
        Assert.Equal(8080u, Assert.Single(Routes(mesh, "shop", "httpbin.example.com").HttpRoutes).Matches[0].ServicePort);

        // A name none of the Service's ports has, or one that is not the port given with it: the parent takes no calls.
        var findings = mesh.Diagnostics.Where(d => d.Resource == "HTTPRoute shop/admin").OrderBy(d => d.Path, StringComparer.Ordinal).ToArray();
        Assert.Equal(["spec.parentRefs[2]", "spec.parentRefs[3]"], findings.Select(f => f.Path));
        Assert.Contains("sectionName 'metrics' names no port of Service shop/reviews", findings[0].Message, StringComparison.Ordinal);
        Assert.Contains("sectionName 'admin' names no port 9080 of Service shop/reviews", findings[1].Message, StringComparison.Ordinal);
    }
}
