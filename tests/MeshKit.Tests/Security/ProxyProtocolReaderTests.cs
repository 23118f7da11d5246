using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using MeshKit.Http;
using MeshKit;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Outcome = MeshKit.Security.ProxyProtocolReader.ParseOutcome;

namespace MeshKit.Tests.Security;

/// <summary>The PROXY protocol header as a trusted load balancer sends it, read as HAProxy's specification says.</summary>
public sealed class ProxyProtocolReaderTests
{
    private static (Outcome Outcome, IPEndPoint? Source, int Length) Parse(byte[] bytes)
    {
        var outcome = ProxyProtocolReader.TryParse(new ReadOnlySequence<byte>(bytes), out var header, out var length);
        return (outcome, header.Source, length);
    }

    private static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);

    [Theory]
    [InlineData("PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\nGET", "203.0.113.7:40000")]
    [InlineData("PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\nGET", "[2001:db8::7]:40000")]
    [InlineData("PROXY UNKNOWN\r\nGET", null)] // the balancer's own connection: the addresses stay
    [InlineData("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nGET", null)]
    public void Version1_NamesTheClient(string text, string? expected)
    {
        var (outcome, source, length) = Parse(Ascii(text));

        Assert.Equal(Outcome.Parsed, outcome);
        Assert.Equal(expected, source?.ToString());
        Assert.Equal(text.IndexOf("\r\n", StringComparison.Ordinal) + 2, length);
    }

    [Theory]
    [InlineData("PROXY TCP4 203.0.113.7 10.0.0.1 40000\r\n")] // a field missing
    [InlineData("PROXY TCP4 2001:db8::7 10.0.0.1 40000 443\r\n")] // the family says IPv4
    [InlineData("PROXY TCP4 203.0.113 10.0.0.1 40000 443\r\n")] // not a dotted quad
    [InlineData("PROXY TCP4 203.0.113.7 10.0.0.1 040000 443\r\n")] // a leading zero
    [InlineData("PROXY TCP4 203.0.113.7 10.0.0.1 70000 443\r\n")]
    [InlineData("PROXY UDP4 203.0.113.7 10.0.0.1 40000 443\r\n")]
    [InlineData("GET / HTTP/1.1\r\n")] // no header at all
    [InlineData("\u0016\u0003\u0001")] // a TLS ClientHello
    public void AnythingElse_IsInvalid(string text)
    {
        Assert.Equal(Outcome.Invalid, Parse(Ascii(text)).Outcome);
    }

    [Fact]
    public void Version1_WithoutItsEnd_WithinItsLongestForm_IsInvalid()
    {
        Assert.Equal(Outcome.NeedMore, Parse(Ascii("PROXY TCP4 203.0.113.7")).Outcome);
        Assert.Equal(Outcome.NeedMore, Parse(Ascii("PRO")).Outcome);
        Assert.Equal(Outcome.Invalid, Parse(Ascii("PROXY " + new string('1', 120))).Outcome);
    }

    [Fact]
    public void Version2_AsMeshKitsCallersWriteIt_IsRead_TlvsIncluded()
    {
        var v4 = ProxyProtocolHeader.For(2, new IPEndPoint(IPAddress.Parse("203.0.113.7"), 40000), new IPEndPoint(IPAddress.Parse("10.0.0.1"), 443));
        var v6 = ProxyProtocolHeader.For(2, new IPEndPoint(IPAddress.Parse("2001:db8::7"), 40000), new IPEndPoint(IPAddress.Parse("2001:db8::1"), 443));
        var local = ProxyProtocolHeader.For(2, null, null);

        var four = Parse([.. v4, .. "GET"u8]);
        Assert.Equal((Outcome.Parsed, "203.0.113.7:40000", v4.Length), (four.Outcome, four.Source?.ToString(), four.Length));
        var six = Parse(v6);
        Assert.Equal((Outcome.Parsed, "[2001:db8::7]:40000"), (six.Outcome, six.Source?.ToString()));
        var own = Parse(local);
        Assert.Equal((Outcome.Parsed, (IPEndPoint?)null), (own.Outcome, own.Source));

        // A balancer's TLVs (AWS NLB adds its VPC endpoint id) follow the addresses, inside the declared length.
        byte[] tlv = [0xEA, 0x00, 0x03, 0x01, 0x02, 0x03];
        var withTlv = v4.ToArray();
        withTlv[15] = (byte)(12 + tlv.Length);
        var (outcome, source, length) = Parse([.. withTlv, .. tlv, .. "GET"u8]);
        Assert.Equal((Outcome.Parsed, "203.0.113.7:40000", v4.Length + tlv.Length), (outcome, source?.ToString(), length));

        Assert.Equal(Outcome.NeedMore, Parse(v4[..20]).Outcome);
        var badVersion = v4.ToArray();
        badVersion[12] = 0x11;
        Assert.Equal(Outcome.Invalid, Parse(badVersion).Outcome);
        var tooShort = v4.ToArray();
        tooShort[15] = 4; // claims TCP over IPv4 with no room for its addresses
        Assert.Equal(Outcome.Invalid, Parse(tooShort).Outcome);
    }

    [Theory]
    [InlineData("10.0.0.0/8", "10.1.2.3", true)]
    [InlineData("10.0.0.0/8", "11.1.2.3", false)]
    [InlineData("127.0.0.1", "127.0.0.1", true)]
    [InlineData("::ffff:127.0.0.1", "127.0.0.1", true)]
    [InlineData("2001:db8::/32", "2001:db8::9", true)]
    public void TheTrustedList_TakesAddressesAndRanges(string entry, string peer, bool trusted)
    {
        Assert.True(Addresses.TryParseNetwork(entry, out var network));
        Assert.Equal(trusted, network.Contains(IPAddress.Parse(peer)));
    }

    [Theory]
    [InlineData("load-balancer")]
    [InlineData("10.0.0.0/40")]
    [InlineData("")]
    public void TheTrustedList_RefusesWhatIsNotAnAddress(string entry)
    {
        Assert.False(Addresses.TryParseNetwork(entry, out _));
    }

    private sealed record Duplex(PipeReader Input, PipeWriter Output) : IDuplexPipe;

    [Theory]
    [InlineData("")] // the balancer connected and sent nothing
    [InlineData("PROXY TCP4 203.0.113.7")] // a header that stops halfway
    public async Task ATrustedPeer_WithoutItsWholeHeader_IsClosedAtTheHeaderTimeout_NotBefore(string sent)
    {
        var time = new FakeTimeProvider();
        var reader = new ProxyProtocolReader([IPNetwork.Parse("127.0.0.0/8")], NullLogger.Instance, time);
        var fromPeer = new Pipe();
        var context = new DefaultConnectionContext("c1", new Duplex(fromPeer.Reader, new Pipe().Writer), new Duplex(new Pipe().Reader, fromPeer.Writer))
        {
            RemoteEndPoint = new IPEndPoint(IPAddress.Loopback, 40000),
        };
        var handedOn = false;
        await fromPeer.Writer.WriteAsync(Ascii(sent));

        var reading = reader.ReadAsync(context, _ => { handedOn = true; return Task.CompletedTask; });
        time.Advance(ProxyProtocolReader.HeaderTimeout - TimeSpan.FromMilliseconds(1));
        await Task.Delay(50);
        Assert.False(reading.IsCompleted);
        Assert.False(context.ConnectionClosed.IsCancellationRequested);

        time.Advance(TimeSpan.FromMilliseconds(1));
        await reading.WaitAsync(TimeSpan.FromSeconds(5)); // well before the system clock's 10 s
        Assert.False(handedOn);
        await Eventually.TrueAsync(() => context.ConnectionClosed.IsCancellationRequested, "the connection is aborted");
    }
}
