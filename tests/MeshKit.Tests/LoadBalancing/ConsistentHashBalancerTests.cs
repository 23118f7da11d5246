using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.LoadBalancing;

public class ConsistentHashBalancerTests
{
    private static EndpointView[] Endpoints(params int[] ids) => ids.Select(i =>
    {
        var endpoint = new Endpoint { Address = $"10.0.0.{i}" };
        endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
        return new EndpointView(endpoint);
    }).ToArray();

    private static Dictionary<int, string> Place(EndpointView[] endpoints, ulong ring, ulong maglev)
    {
        var balancer = new ConsistentHashBalancer(endpoints, ring, maglev);
        return Enumerable.Range(0, 2000).ToDictionary(k => k, k => balancer.PickByHash(endpoints, ConsistentHashBalancer.Hash($"key-{k}")).Key);
    }

    [Theory]
    [InlineData(1024ul, 0ul, 0.8)]
    [InlineData(0ul, 65537ul, 0.95)]
    // As in Envoy, the ring is rebuilt for the new membership (entries per endpoint = ring size / endpoints), so a
    // few keys of surviving endpoints move too; most stay.
    public void RemovingAnEndpoint_MovesFewKeysOfOtherEndpoints(ulong ring, ulong maglev, double keptAtLeast)
    {
        var before = Place(Endpoints(1, 2, 3, 4), ring, maglev);
        var after = Place(Endpoints(1, 2, 4), ring, maglev);

        var survivors = before.Where(kv => kv.Value != "10.0.0.3:8080").ToList();
        var kept = survivors.Count(kv => after[kv.Key] == kv.Value);
        Assert.True(kept >= keptAtLeast * survivors.Count, $"{kept} of {survivors.Count} keys stayed");
        Assert.All(after.Values, v => Assert.NotEqual("10.0.0.3:8080", v));
    }

    [Theory]
    [InlineData(1024ul, 0ul)]
    [InlineData(0ul, 65537ul)]
    public void Keys_SpreadEvenly(ulong ring, ulong maglev)
    {
        var placement = Place(Endpoints(1, 2, 3, 4), ring, maglev);
        foreach (var group in placement.GroupBy(kv => kv.Value))
        {
            Assert.InRange(group.Count(), 300, 700);
        }
    }

    [Fact]
    public void Hash_IsStableAcrossProcesses()
    {
        // xxHash64 of "user-42" with seed 0: a constant, so every caller places a key the same way.
        Assert.Equal(ConsistentHashBalancer.Hash("user-42"), System.IO.Hashing.XxHash64.HashToUInt64("user-42"u8));
        Assert.NotEqual(ConsistentHashBalancer.Hash("user-42"), ConsistentHashBalancer.Hash("user-43"));
    }
}
