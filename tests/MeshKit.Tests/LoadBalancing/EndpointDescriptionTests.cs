using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.LoadBalancing;

/// <summary>What the control plane says of an endpoint as a peer, for a caller whose server told nothing.</summary>
public sealed class EndpointDescriptionTests
{
    private const string Reviews = "reviews.default.svc.cluster.local";

    private static EndpointView Endpoint(string origin, string version = "v2")
    {
        var endpoint = new Endpoint { Address = "10.0.0.7", Origin = origin };
        endpoint.Labels["app"] = "reviews";
        endpoint.Labels["version"] = version;
        return new EndpointView(endpoint);
    }

    [Fact]
    public void ARegisteredWorkload_IsDescribedAsItWouldTellItself_OneObjectForEqualDescriptions()
    {
        var first = Endpoint("instance-1").Described(Reviews);
        Assert.NotNull(first);
        Assert.Equal(("reviews-v2", "default", "reviews", "v2", "reviews"), (first.Workload, first.Namespace, first.App, first.Version, first.Service));
        Assert.Equal(MeshKit.Telemetry.PeerMetadata.ForWorkload("reviews", "default", new Dictionary<string, string> { ["app"] = "reviews", ["version"] = "v2" }), first);

        // Another replica of the same version: the same label object (the metrics store finds series by identity).
        Assert.Same(first, Endpoint("instance-2").Described(Reviews));
        Assert.NotSame(first, Endpoint("instance-3", "v3").Described(Reviews));
    }

    [Fact]
    public void AServiceEntryAddress_OrAHostOutsideKubernetesNaming_IsNotDescribed()
    {
        Assert.Null(Endpoint("ServiceEntry default/payments").Described(Reviews));
        Assert.Null(Endpoint("instance-1").Described("api.example.com"));
        Assert.Null(Endpoint(string.Empty).Described(Reviews));
    }
}
