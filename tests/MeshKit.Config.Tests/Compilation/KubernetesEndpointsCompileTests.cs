using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

/// <summary>EndpointSlices and Endpoints compiled: the endpoints of Services without a selector, as Istio reads them.</summary>
public class KubernetesEndpointsCompileTests
{
    private const string Db = """
        apiVersion: v1
        kind: Service
        metadata: { name: db, namespace: shop }
        spec:
          ports: [{ port: 80, name: http, targetPort: 8080 }, { port: 9000, name: admin }]

        """;

    private static CompiledMesh Compile(string yaml, params WorkloadAnnouncement[] workloads)
    {
        var result = ConfigParser.Parse(yaml, "endpoints.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        return MeshCompiler.Compile(new ConfigSet(result.Resources), workloads);
    }

    private static ServiceCluster Cluster(CompiledMesh mesh, string host) =>
        mesh.ViewFor("shop").OfType(ResourceTypes.Cluster)[host].Resource_.Unpack<ServiceCluster>();

    private static string[] Ports(Endpoint endpoint) => [.. endpoint.Ports.Select(p => $"{p.Name}:{p.ServicePort}->{p.TargetPort}").Order()];

    [Fact]
    public void AServiceWithoutASelector_HasItsSlicesReadyAddresses_OnThePortsOfTheirNames()
    {
        var mesh = Compile(Db + """
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-1, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ name: http, port: 8081 }]
            endpoints:
            - addresses: [10.0.0.1]
            - { addresses: [10.0.0.2], conditions: { ready: false } }
            - { addresses: [10.0.0.3], conditions: { ready: true, terminating: true } }
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-2, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ name: admin, port: 9001 }]
            endpoints: [{ addresses: [10.0.0.1] }, { addresses: [10.0.0.4] }]
            """);

        var cluster = Cluster(mesh, "db.shop.svc.cluster.local");
        Assert.Equal(["10.0.0.1", "10.0.0.4"], cluster.Endpoints.Select(e => e.Address));

        // The slice's port is the one the address listens on (the Service's targetPort is for its selector's pods).
        Assert.Equal(["admin:9000->9001", "http:80->8081"], Ports(cluster.Endpoints[0]));
        Assert.Equal(["admin:9000->9001"], Ports(cluster.Endpoints[1]));
        Assert.All(cluster.Endpoints, e => Assert.Equal(("", 1u), (e.Identity, e.Weight)));
        Assert.Equal("EndpointSlice shop/db-1", cluster.Endpoints[0].Origin);
        Assert.Empty(mesh.Diagnostics);
    }

    [Fact]
    public void PublishNotReadyAddresses_TakesEveryAddress()
    {
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: db, namespace: shop }
            spec: { ports: [{ port: 80 }], publishNotReadyAddresses: true }
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-1, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ port: 8080 }]
            endpoints: [{ addresses: [10.0.0.1] }, { addresses: [10.0.0.2], conditions: { ready: false, terminating: true } }]
            """);

        Assert.Equal(["10.0.0.1", "10.0.0.2"], Cluster(mesh, "db.shop.svc.cluster.local").Endpoints.Select(e => e.Address));
    }

    [Fact]
    public void AnEndpoints_IsReadAsItsMirroredSlice_AndTheTwoCountOnce()
    {
        // An export holds both: the Endpoints someone wrote, and the slice Kubernetes mirrors from it.
        var mesh = Compile(Db + """
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: { name: db, namespace: shop }
            subsets:
            - addresses: [{ ip: 10.0.0.1 }]
              notReadyAddresses: [{ ip: 10.0.0.2 }]
              ports: [{ name: http, port: 8080 }, { name: admin, port: 9000 }]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: db-abcde
              generateName: db-
              namespace: shop
              labels: { kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io }
            addressType: IPv4
            ports: [{ name: http, port: 8080 }, { name: admin, port: 9000 }]
            endpoints: [{ addresses: [10.0.0.1], conditions: { ready: true } }, { addresses: [10.0.0.2], conditions: { ready: false } }]
            """);

        var endpoint = Assert.Single(Cluster(mesh, "db.shop.svc.cluster.local").Endpoints);
        Assert.Equal(("10.0.0.1", "EndpointSlice shop/db-abcde"), (endpoint.Address, endpoint.Origin));
        Assert.Equal(["admin:9000->9000", "http:80->8080"], Ports(endpoint));
    }

    [Fact]
    public void AnAddressThatIsALiveWorkloads_IsThatWorkload_SoMutualTlsReachesIt()
    {
        var workload = new WorkloadAnnouncement
        {
            Service = "postgres", Namespace = "data", InstanceId = "postgres-0", Address = "10.0.0.7", ServiceAccount = "postgres",
            Identity = "spiffe://cluster.local/ns/data/sa/postgres", Ports = { new WorkloadPort { Name = "http", TargetPort = 8080, ServicePort = 8080 } },
        };
        workload.Labels["role"] = "primary";

        var mesh = Compile(Db + """
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-1, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ name: http, port: 8080 }, { name: admin, port: 9000 }]
            endpoints: [{ addresses: [10.0.0.7] }, { addresses: [10.0.0.8] }]
            """, workload);

        var endpoints = Cluster(mesh, "db.shop.svc.cluster.local").Endpoints;
        Assert.Equal(3, endpoints.Count);
        var primary = endpoints.Single(e => e.Origin == "postgres-0");
        Assert.Equal(("10.0.0.7", "spiffe://cluster.local/ns/data/sa/postgres", "postgres", "primary", false), (primary.Address, primary.Identity, primary.ServiceAccount, primary.Labels["role"], primary.AutoMtlsOff));

        // Its address on 9000, no port it listens on, is a plain address of the slice's, as 10.0.0.8 is.
        Assert.Equal(["http:80->8080"], Ports(primary));
        Assert.Equal(
            [("10.0.0.7", "admin:9000->9000"), ("10.0.0.8", "admin:9000->9000"), ("10.0.0.8", "http:80->8080")],
            endpoints.Where(e => e.Origin == "EndpointSlice shop/db-1").SelectMany(e => Ports(e).Select(p => (e.Address, p))).Order());
    }

    [Fact]
    public void ASliceOfOtherHands_AddsToAServiceWithASelector_ButAnEndpointsDoesNot()
    {
        var reviews = new WorkloadAnnouncement { Service = "reviews", Namespace = "shop", InstanceId = "reviews-1", Address = "10.0.0.1", Ports = { new WorkloadPort { Name = "http", TargetPort = 9080, ServicePort = 9080 } } };
        var mesh = Compile("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, namespace: shop }
            spec: { selector: { app: reviews }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: reviews-vm, namespace: shop, labels: { kubernetes.io/service-name: reviews } }
            addressType: IPv4
            ports: [{ name: http, port: 9080 }]
            endpoints: [{ addresses: [10.1.0.1] }, { addresses: [10.0.0.1] }]
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: { name: reviews, namespace: shop }
            subsets: [{ addresses: [{ ip: 10.2.0.1 }], ports: [{ name: http, port: 9080 }] }]
            """, reviews);

        // The registered workload once, the slice's VM; the Endpoints are Kubernetes' controller's (its selector's pods).
        Assert.Equal(["10.0.0.1", "10.1.0.1"], Cluster(mesh, "reviews.shop.svc.cluster.local").Endpoints.Select(e => e.Address).Order());
    }

    [Fact]
    public void AHostTwoResourcesDeclare_WithAWorkloadBothPick_TakesItsSlicesToo()
    {
        // Two ServiceEntries of the Service's host select the same workload: it is an endpoint twice before the slices.
        var db = new WorkloadAnnouncement { Service = "postgres", Namespace = "shop", InstanceId = "postgres-0", Address = "10.0.0.7", Ports = { new WorkloadPort { Name = "http", TargetPort = 8080, ServicePort = 8080 } } };
        db.Labels["app"] = "db";
        var entries = string.Concat(new[] { "a", "b" }.Select(name => $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: db-{{name}}, namespace: shop }
            spec:
              hosts: [db.shop.svc.cluster.local]
              location: MESH_INTERNAL
              resolution: STATIC
              ports: [{ number: 80, name: http, protocol: HTTP, targetPort: 8080 }]
              workloadSelector: { labels: { app: db } }
            ---

            """));
        var mesh = Compile(entries + Db + """
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-1, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ name: http, port: 8080 }]
            endpoints: [{ addresses: [10.0.0.7] }, { addresses: [10.0.0.8] }]
            """, db);

        Assert.Equal(["10.0.0.7", "10.0.0.7", "10.0.0.8"], Cluster(mesh, "db.shop.svc.cluster.local").Endpoints.Select(e => e.Address).Order());
    }

    [Fact]
    public void SlicesThatServeNothing_AreReported_WhereTheyAreWritten()
    {
        var mesh = Compile(Db + """
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-1, namespace: shop, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ port: 8080 }, { name: grpc, port: 9090 }]
            endpoints: [{ addresses: [10.0.0.1] }]
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: { name: cache, namespace: shop }
            subsets: [{ addresses: [{ ip: 10.0.0.9 }], ports: [{ port: 6379 }] }]
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: mail, namespace: shop }
            spec: { type: ExternalName, externalName: smtp.example, ports: [{ port: 25, name: smtp }] }
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: mail-1
              namespace: shop
              labels: { kubernetes.io/service-name: mail }
            addressType: IPv4
            endpoints: [{ addresses: [10.0.0.25] }]
            """);

        Assert.Empty(Cluster(mesh, "db.shop.svc.cluster.local").Endpoints);
        (string Resource, string Path, int Line, string Start)[] expected =
        [
            ("EndpointSlice shop/db-1", "ports[0].name", 11, "an unnamed port serves no port of Service shop/db, whose ports are named"),
            ("EndpointSlice shop/db-1", "ports[1].name", 11, "'grpc' names no port of Service shop/db"),
            ("EndpointSlice shop/mail-1", "metadata.labels.kubernetes.io/service-name", 29, "Service shop/mail is an ExternalName alias"),
            ("Endpoints shop/cache", "metadata.name", 16, "names Service shop/cache, which the configuration does not have"),
        ];
        Assert.Equal(expected.Length, mesh.Diagnostics.Count);
        foreach (var (finding, want) in mesh.Diagnostics.Zip(expected))
        {
            Assert.Equal((want.Resource, want.Path, want.Line), (finding.Resource, finding.Path, finding.Line));
            Assert.StartsWith(want.Start, finding.Message, StringComparison.Ordinal);
        }
    }
}
