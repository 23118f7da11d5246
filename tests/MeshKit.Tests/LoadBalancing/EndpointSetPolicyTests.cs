using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;

namespace MeshKit.Tests.LoadBalancing;

/// <summary>The policy name a destination reports (the debug dump shows it), as Istio spells its load balancers.</summary>
public sealed class EndpointSetPolicyTests
{
    private static readonly SourceWorkload Source = new("default", new Dictionary<string, string>());

    [Theory]
    [InlineData("", null, "ROUND_ROBIN")] // no policy: Envoy's default
    [InlineData("LEAST_CONN", null, "LEAST_REQUEST")] // Istio's deprecated name for it
    [InlineData("RANDOM", null, "RANDOM")]
    [InlineData("PASSTHROUGH", null, "PASSTHROUGH")]
    [InlineData("CONSISTENT_HASH", "x-user", "CONSISTENT_HASH")]
    public void ThePolicy_IsNamedAsIstioNamesIt(string policy, string? hashHeader, string expected)
    {
        var endpoint = new Endpoint { Address = "10.0.0.1" };
        endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
        var hash = hashHeader is null ? null : new ConsistentHash { HeaderName = hashHeader };

        var set = EndpointSet.Create([new EndpointView(endpoint)], policy, hash, null, Source);

        Assert.Equal(expected, set.Policy);
    }
}
