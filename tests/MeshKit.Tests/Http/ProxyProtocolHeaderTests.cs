using System.Net;
using System.Text;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>The PROXY protocol header as HAProxy's specification writes it (versions 1 and 2).</summary>
public sealed class ProxyProtocolHeaderTests
{
    private static readonly byte[] Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    [Fact]
    public void Version1_NamesTheFamily_TheAddresses_AndThePorts()
    {
        var header = ProxyProtocolHeader.For(1, new IPEndPoint(IPAddress.Parse("10.0.0.1"), 45000), new IPEndPoint(IPAddress.Parse("10.0.0.2"), 8080));

        Assert.Equal("PROXY TCP4 10.0.0.1 10.0.0.2 45000 8080\r\n", Encoding.ASCII.GetString(header));
    }

    [Fact]
    public void Version1_SaysIPv4ForTheMappedAddressesOfADualModeSocket_AndDropsIPv6Scopes()
    {
        var v4 = ProxyProtocolHeader.For(1, new IPEndPoint(IPAddress.Parse("::ffff:127.0.0.1"), 1), new IPEndPoint(IPAddress.Parse("::ffff:127.0.0.2"), 2));
        var v6 = ProxyProtocolHeader.For(1, new IPEndPoint(IPAddress.Parse("fe80::1%2"), 1), new IPEndPoint(IPAddress.Parse("2001:db8::2"), 2));

        Assert.Equal("PROXY TCP4 127.0.0.1 127.0.0.2 1 2\r\n", Encoding.ASCII.GetString(v4));
        Assert.Equal("PROXY TCP6 fe80::1 2001:db8::2 1 2\r\n", Encoding.ASCII.GetString(v6));
    }

    [Fact]
    public void Version2_IsTheSignature_ProxyCommand_Family_Length_AddressesAndPorts_InNetworkOrder()
    {
        var v4 = ProxyProtocolHeader.For(2, new IPEndPoint(IPAddress.Parse("10.0.0.1"), 0x1234), new IPEndPoint(IPAddress.Parse("10.0.0.2"), 0x1F90));
        var v6 = ProxyProtocolHeader.For(2, new IPEndPoint(IPAddress.Parse("2001:db8::1"), 1), new IPEndPoint(IPAddress.Parse("2001:db8::2"), 2));

        Assert.Equal([.. Signature, 0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x12, 0x34, 0x1F, 0x90], v4);
        Assert.Equal(16 + 36, v6.Length);
        Assert.Equal([0x21, 0x21, 0, 36], v6[12..16]);
        Assert.Equal(IPAddress.Parse("2001:db8::1").GetAddressBytes(), v6[16..32]);
        Assert.Equal(IPAddress.Parse("2001:db8::2").GetAddressBytes(), v6[32..48]);
        Assert.Equal([0, 1, 0, 2], v6[48..52]);
    }

    [Fact]
    public void AddressesTheFormatCannotName_AreUnknown_OrTheLocalCommand()
    {
        var unix = new System.Net.Sockets.UnixDomainSocketEndPoint("/run/app.sock");
        var mixed = (new IPEndPoint(IPAddress.Parse("10.0.0.1"), 1), new IPEndPoint(IPAddress.Parse("2001:db8::2"), 2));

        Assert.Equal("PROXY UNKNOWN\r\n", Encoding.ASCII.GetString(ProxyProtocolHeader.For(1, unix, unix)));
        Assert.Equal("PROXY UNKNOWN\r\n", Encoding.ASCII.GetString(ProxyProtocolHeader.For(1, mixed.Item1, mixed.Item2)));
        Assert.Equal([.. Signature, 0x20, 0x00, 0, 0], ProxyProtocolHeader.For(2, null, null));
    }
}
