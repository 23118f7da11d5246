using System.Net;
using MeshKit.Security;
using Microsoft.Extensions.Primitives;

namespace MeshKit.Tests.Security;

/// <summary>The client's address from X-Forwarded-For, as Envoy reads it with xff_num_trusted_hops.</summary>
public sealed class ForwardedForTests
{
    [Theory]
    [InlineData("203.0.113.9, 10.0.0.1", 1, "10.0.0.1")]
    [InlineData("203.0.113.9, 10.0.0.1", 2, "203.0.113.9")]
    [InlineData("203.0.113.9, 10.0.0.1", 3, null)] // fewer entries than trusted proxies
    [InlineData(" 203.0.113.9 ,\t10.0.0.1\t", 2, "203.0.113.9")]
    [InlineData("2001:db8::1, 10.0.0.1", 2, "2001:db8::1")]
    [InlineData("::ffff:203.0.113.9", 1, "203.0.113.9")]
    [InlineData("203.0.113.9:443", 1, null)] // a port: not how a proxy writes it
    [InlineData("[2001:db8::1]", 1, null)]
    [InlineData("fe80::1%2", 1, null)]
    [InlineData("3", 1, null)] // short IPv4 forms TryParse would take
    [InlineData("203.0.113", 1, null)]
    [InlineData("unknown, 10.0.0.1", 2, null)] // the trusted entry is not an address: the peer's is used instead
    [InlineData("", 1, null)]
    [InlineData("10.0.0.1,", 1, null)]
    public void TheClient_IsTheNthAddressFromTheRight(string header, int trustedProxies, string? expected)
    {
        Assert.Equal(expected is null ? null : IPAddress.Parse(expected), ForwardedFor.Client(new StringValues(header), trustedProxies));
    }

    [Fact]
    public void SeveralHeaderLines_ReadAsOneList()
    {
        var lines = new StringValues(["198.51.100.1, 198.51.100.2", "198.51.100.3"]);

        Assert.Equal(IPAddress.Parse("198.51.100.3"), ForwardedFor.Client(lines, 1));
        Assert.Equal(IPAddress.Parse("198.51.100.2"), ForwardedFor.Client(lines, 2));
        Assert.Equal(IPAddress.Parse("198.51.100.1"), ForwardedFor.Client(lines, 3));
        Assert.Null(ForwardedFor.Client(lines, 4));
    }
}
