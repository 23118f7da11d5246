using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// A Kubernetes Service without a selector, its endpoints in EndpointSlices someone else writes (a database's primary, a
/// VM, a server outside the cluster): calls to the Service go to the slice's ready addresses and follow the slice as it
/// changes; an address that is a live workload's is that workload, reached over mutual TLS.
/// </summary>
public sealed class KubernetesEndpointsEndToEndTests : MeshTestBase
{
    private const string DbHost = "db.default.svc.cluster.local";

    private static string Db(string endpoints, int port) => $$"""
        apiVersion: v1
        kind: Service
        metadata: { name: db }
        spec: { ports: [{ port: 80, name: http }] }
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: { name: db-1, labels: { kubernetes.io/service-name: db } }
        addressType: IPv4
        ports: [{ name: http, port: {{port}} }]
        endpoints: {{endpoints}}
        """;

    [Fact]
    public async Task CallsGoToTheSlicesReadyAddresses_AndFollowTheSliceAsItChanges()
    {
        await using var primary = await ExternalServer.StartAsync("primary");
        await using var replica = await ExternalServer.StartAsync("replica");
        var client = await StartAsync("productpage", "v1");
        var http = client.CreateClient();

        // Both listen on 127.0.0.1 on ports of their own: a slice per port, as Kubernetes groups endpoints by ports.
        string Slices(string primaryConditions, string replicaConditions) => Db($"[{{ addresses: [127.0.0.1], conditions: {primaryConditions} }}]", primary.Port) + $$"""

            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-2, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            ports: [{ name: http, port: {{replica.Port}} }]
            endpoints: [{ addresses: [127.0.0.1], conditions: {{replicaConditions}} }]
            """;

        ControlPlane.WriteConfig("db.yaml", Slices("{ ready: true }", "{ ready: false }"));
        await Eventually.TrueAsync(() => client.Endpoints(DbHost) == 1, "the slice's ready address is the Service's endpoint");
        for (var i = 0; i < 4; i++)
        {
            Assert.StartsWith("primary:/orders/1:", await http.GetStringAsync("http://db/orders/1"), StringComparison.Ordinal);
        }

        // The primary terminates and the replica is ready: the calls follow.
        ControlPlane.WriteConfig("db.yaml", Slices("{ ready: false, serving: true, terminating: true }", "{ ready: true }"));
        await Eventually.TrueAsync(async () => (await http.GetStringAsync("http://db/orders/1")).StartsWith("replica:", StringComparison.Ordinal), "the slice's change applies");
        for (var i = 0; i < 4; i++)
        {
            Assert.StartsWith("replica:/orders/1:", await http.GetStringAsync("http://db/orders/1"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AnAddressThatIsALiveWorkloads_IsThatWorkload_ReachedOverMutualTls()
    {
        var postgres = await StartSecureAsync("postgres", "postgres-sa");
        postgres.Behavior = context => Task.FromResult<IResult?>(Results.Text(MeshPeer.Of(context)?.ToString() ?? "plain"));
        var client = await StartSecureAsync("productpage", "productpage");
        ControlPlane.WriteConfig("db.yaml", Db("[{ addresses: [127.0.0.1] }]", postgres.Address.Port));
        await Eventually.TrueAsync(
            () => client.Snapshot.Services.TryGetValue(DbHost, out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints is [{ Identity: "spiffe://cluster.local/ns/default/sa/postgres-sa" }],
            "the slice's address is known as the workload it is");

        Assert.Equal("spiffe://cluster.local/ns/default/sa/productpage", await client.CreateClient().GetStringAsync("http://db/"));
    }
}
