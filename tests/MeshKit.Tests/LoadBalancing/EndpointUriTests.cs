using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.LoadBalancing;

public class EndpointUriTests
{
    private static EndpointView Endpoint()
    {
        var endpoint = new Endpoint { Address = "10.0.0.7" };
        endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
        endpoint.Ports.Add(new EndpointPort { Name = "grpc", ServicePort = 9090, TargetPort = 8090 });
        return new EndpointView(endpoint);
    }

    [Fact]
    public void ARepeatedPath_ReusesTheUri_AndAnyDifferenceBuildsANewOne()
    {
        var endpoint = Endpoint();
        var http = endpoint.AuthorityFor(9080)!;
        var grpc = endpoint.AuthorityFor(9090)!;

        var first = endpoint.UriFor("http", http, "/reviews/1?x=1");
        Assert.Equal(new Uri("http://10.0.0.7:8080/reviews/1?x=1"), first);
        Assert.Same(first, endpoint.UriFor("http", http, "/reviews/1?x=1"));

        var otherPath = endpoint.UriFor("http", http, "/reviews/2");
        Assert.Equal("/reviews/2", otherPath.PathAndQuery);
        var otherPort = endpoint.UriFor("http", grpc, "/reviews/2");
        Assert.Equal(8090, otherPort.Port);
        var otherScheme = endpoint.UriFor("https", grpc, "/reviews/2");
        Assert.Equal("https", otherScheme.Scheme);
        Assert.Equal(8090, otherScheme.Port);
    }

    [Fact]
    public void Authorities_AreBuiltOnce_AndIpv6AddressesAreBracketed()
    {
        var endpoint = Endpoint();
        Assert.Equal("10.0.0.7:8080", endpoint.AuthorityFor(9080));
        Assert.Same(endpoint.AuthorityFor(9080), endpoint.AuthorityFor(9080));
        Assert.Equal("10.0.0.7:8090", endpoint.AuthorityFor(9090));
        Assert.Null(endpoint.AuthorityFor(1234));
        Assert.Equal("10.0.0.7:8080", endpoint.Key);

        var v6 = new Endpoint { Address = "fd00::7" };
        v6.Ports.Add(new EndpointPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
        Assert.Equal("[fd00::7]:8080", new EndpointView(v6).AuthorityFor(80));
        Assert.Equal("[fd00::7]", new EndpointView(new Endpoint { Address = "fd00::7" }).Key);
    }

    [Fact]
    public void EndpointsOfOneSnapshot_ShareTheirPortLayoutAndIdentityTexts_ButNotTheirAuthorities()
    {
        var shapes = new EndpointShapes();
        EndpointView Make(string address, bool mtlsDisabled)
        {
            // A text of its own per endpoint, as parsing a message gives.
            var endpoint = new Endpoint { Address = address, Identity = new string("spiffe://cluster.local/ns/default/sa/reviews".AsSpan()) };
            endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 9080, TargetPort = 8080, MtlsDisabled = mtlsDisabled });
            return new EndpointView(endpoint, shapes);
        }

        var a = Make("10.0.0.1", false);
        var b = Make("10.0.0.2", false);
        var plain = Make("10.0.0.3", true);

        Assert.Same(a.Identity, b.Identity);
        Assert.Equal("default", a.IdentityNamespace);
        Assert.True(a.MtlsOn(9080));
        Assert.False(plain.MtlsOn(9080));
        Assert.Equal("10.0.0.1:8080", a.AuthorityFor(9080));
        Assert.Equal("10.0.0.2:8080", b.AuthorityFor(9080));
    }
}
