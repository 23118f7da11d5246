using System.Net;
using MeshKit.Http;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.Http;

/// <summary>The identity a mutual TLS connection must prove, as the connection opening it looks it up.</summary>
public sealed class ExpectedPeerTests
{
    [Fact]
    public void TheLatestIdentityRecordedForAnAddressAndPort_IsWhatItsConnectionsMustProve()
    {
        using var transport = new ClusterTransports.Transport(new ConnectionSettings());
        transport.Expect("10.0.0.7", 8080, "spiffe://cluster.local/ns/default/sa/reviews");
        transport.Expect("fd00::7", 8080, "spiffe://cluster.local/ns/default/sa/ratings");
        transport.Expect("Reviews.Example.Com", 443, "spiffe://cluster.local/ns/default/sa/external");

        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", transport.ExpectedFor(new DnsEndPoint("10.0.0.7", 8080)));
        Assert.Null(transport.ExpectedFor(new DnsEndPoint("10.0.0.7", 8081)));
        Assert.Null(transport.ExpectedFor(new DnsEndPoint("10.0.0.8", 8080)));
        Assert.Equal("spiffe://cluster.local/ns/default/sa/ratings", transport.ExpectedFor(new DnsEndPoint("[fd00::7]", 8080)));
        Assert.Equal("spiffe://cluster.local/ns/default/sa/ratings", transport.ExpectedFor(new DnsEndPoint("fd00::7", 8080)));
        Assert.Equal("spiffe://cluster.local/ns/default/sa/external", transport.ExpectedFor(new DnsEndPoint("reviews.example.com", 443)));

        // An address that now belongs to another workload: the newer registration is what counts.
        transport.Expect("10.0.0.7", 8080, "spiffe://cluster.local/ns/default/sa/details");
        Assert.Equal("spiffe://cluster.local/ns/default/sa/details", transport.ExpectedFor(new DnsEndPoint("10.0.0.7", 8080)));
    }
}
