using MeshKit.Protocol.V1;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Conformance;

/// <summary>Which rules apply to which host: exact names, wildcards, ServiceEntry hosts and the outbound policy.</summary>
public class HostsConformanceTests
{
    private static WorkloadAnnouncement Ratings()
    {
        var w = new WorkloadAnnouncement { Service = "ratings", Namespace = "default", InstanceId = "ratings", Address = "10.0.0.1" };
        w.Labels["version"] = "v1";
        w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = 1009 });
        return w;
    }

    [Fact]
    public async Task ExactHost_BeatsWildcard_WildcardCoversTheRest()
    {
        using var mesh = InMemoryMesh.Create(InMemoryMesh.Subsets + """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: everything }
            spec:
              hosts: ["*.default.svc.cluster.local"]
              http: [{ directResponse: { status: 418 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]
            """, extraWorkloads: [Ratings()]);

        Assert.Equal("v2", await mesh.SendAsync("http://reviews/"));
        using var teapot = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://ratings/"), CancellationToken.None);
        Assert.Equal(418, (int)teapot.StatusCode);
    }

    [Fact]
    public async Task AVirtualServiceForTheMeshAndAGateway_KeepsItsMeshRules_AndSkipsTheGatewayOnes()
    {
        // As a sidecar reads it in Istio: blocks and rules naming gateways only never apply; a JWT-claim block is
        // valid (the service is also a gateway's) and never matches on the way out.
        using var mesh = InMemoryMesh.Create(InMemoryMesh.Subsets + """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              gateways: [mesh, istio-system/public]
              http:
              - match: [{ gateways: [istio-system/public], uri: { prefix: / } }]
                route: [{ destination: { host: reviews, subset: v3 } }]
              - match: [{ headers: { "@request.auth.claims.group": { exact: admin } } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route: [{ destination: { host: reviews, subset: v1 } }]
            """);

        Assert.Equal("v1", await mesh.SendAsync("http://reviews/"));
    }

    [Theory]
    [InlineData("NONE")]
    [InlineData("DYNAMIC_DNS")]
    public async Task WildcardServiceEntry_WithResolutionNoneOrDynamicDns_PassesThroughToTheNamedHost_EvenUnderRegistryOnly(string resolution)
    {
        using var mesh = InMemoryMesh.Create($$"""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec: { outboundTrafficPolicy: { mode: REGISTRY_ONLY } }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: wikipedia }
            spec:
              hosts: ["*.wikipedia.org"]
              ports: [{ number: 443, name: https, protocol: HTTPS }]
              resolution: {{resolution}}
            """);

        using var response = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "https://en.wikipedia.org/wiki/Mesh"), CancellationToken.None);
        Assert.Equal("not-mesh", await response.Content.ReadAsStringAsync());
        Assert.Equal("https://en.wikipedia.org/wiki/Mesh", response.Headers.GetValues("x-sent-to").Single());
        Assert.Equal("502 NR", await mesh.SendAsync("https://wikipedia.org/"));
        Assert.Equal("502 NR", await mesh.SendAsync("https://example.com/"));
    }

    [Theory]
    [InlineData("ROUND_ROBIN", 0)]
    [InlineData("RANDOM", 60)]
    [InlineData("LEAST_REQUEST", 60)]
    public async Task ServiceEntry_EndpointWeights_AreHonouredByEveryBalancer(string policy, int tolerance)
    {
        using var mesh = InMemoryMesh.Create($$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: weighted }
            spec:
              hosts: [weighted.example]
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              endpoints:
              - { address: 10.0.0.1, ports: { http: 1001 }, weight: 3 }
              - { address: 10.0.0.1, ports: { http: 1002 }, weight: 1 }
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: weighted }
            spec:
              host: weighted.example
              trafficPolicy: { loadBalancer: { simple: {{policy}} } }
            """, withReviews: false);

        var heavy = 0;
        for (var i = 0; i < 800; i++)
        {
            heavy += await mesh.SendAsync("http://weighted.example/") == "v1" ? 1 : 0;
        }

        Assert.InRange(heavy, 600 - tolerance, 600 + tolerance);
    }

    [Fact]
    public async Task ServiceEntry_StaticEndpoints_AreRoutableWithSubsetsLikeMeshServices()
    {
        using var mesh = InMemoryMesh.Create("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: legacy }
            spec:
              hosts: [legacy.corp.example]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              endpoints:
              - { address: 10.0.0.1, ports: { http: 1001 }, labels: { tier: a } }
              - { address: 10.0.0.1, ports: { http: 1002 }, labels: { tier: b } }
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: legacy }
            spec:
              host: legacy.corp.example
              subsets: [{ name: b, labels: { tier: b } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: legacy }
            spec:
              hosts: [legacy.corp.example]
              http: [{ route: [{ destination: { host: legacy.corp.example, subset: b } }] }]
            """);

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("v2", await mesh.SendAsync("http://legacy.corp.example/"));
        }
    }
}
