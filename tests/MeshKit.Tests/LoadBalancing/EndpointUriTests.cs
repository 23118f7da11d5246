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
}
