using System.Net;
using System.Text;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>The CONNECT tunnel a TLS origination pool opens through an HTTP proxy: what it sends, what it takes from the reply.</summary>
public sealed class ProxyTunnelTests
{
    private static readonly Uri Proxy = new("http://proxy.example.test:3128");

    [Fact]
    public async Task ATunnel_NamesItsTarget_AndLeavesWhatFollowsTheReplyToTheTunnel()
    {
        var wire = new Scripted("HTTP/1.1 200 Connection established\r\nVia: proxy\r\n\r\nTLS"u8.ToArray());
        DnsEndPoint? dialed = null;

        var tunnel = await ProxyTunnel.OpenAsync(Proxy, new DnsEndPoint("::1", 8443), (at, _) => { dialed = at; return ValueTask.FromResult<Stream>(wire); }, default);

        Assert.Equal(("proxy.example.test", 3128), (dialed!.Host, dialed.Port));
        Assert.StartsWith("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n", wire.Sent, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n", wire.Sent, StringComparison.Ordinal);
        var rest = new byte[8];
        Assert.Equal("TLS", Encoding.ASCII.GetString(rest, 0, await tunnel.ReadAsync(rest)));
    }

    [Theory]
    [InlineData("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", "did not open a tunnel to api.example.test:443: 'HTTP/1.1 407 Proxy Authentication Required'")]
    [InlineData("SSH-2.0-OpenSSH_9.2\r\n\r\n", "did not open a tunnel to api.example.test:443: 'SSH-2.0-OpenSSH_9.2'")]
    [InlineData("HTTP/1.1 200 OK\r\n", "closed the connection before it answered CONNECT")]
    public async Task AnythingButA2xxReply_FailsTheConnection_AndClosesIt(string reply, string message)
    {
        var wire = new Scripted(Encoding.ASCII.GetBytes(reply));

        var failed = await Assert.ThrowsAsync<HttpRequestException>(async () => await ProxyTunnel.OpenAsync(Proxy, new DnsEndPoint("api.example.test", 443), (_, _) => ValueTask.FromResult<Stream>(wire), default));

        Assert.Equal(HttpRequestError.ProxyTunnelError, failed.HttpRequestError);
        Assert.Contains(message, failed.Message, StringComparison.Ordinal);
        Assert.True(wire.Disposed);
    }

    [Fact]
    public async Task AProxyThatIsNotPlainHttp_IsRefused_BeforeAnyConnection()
    {
        var dialed = false;

        var failed = await Assert.ThrowsAsync<HttpRequestException>(async () => await ProxyTunnel.OpenAsync(new Uri("socks5://proxy.example.test:1080"), new DnsEndPoint("api.example.test", 443), (_, _) => { dialed = true; return ValueTask.FromResult<Stream>(Stream.Null); }, default));

        Assert.Contains("http:// proxy only", failed.Message, StringComparison.Ordinal);
        Assert.False(dialed);
    }

    /// <summary>A connection whose far side answers with a script and records what it was sent.</summary>
    private sealed class Scripted(byte[] reply) : Stream
    {
        private readonly MemoryStream _sent = new();
        private readonly MemoryStream _reply = new(reply);

        public string Sent => Encoding.ASCII.GetString(_sent.ToArray());

        public bool Disposed { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => _reply.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count) => _sent.Write(buffer, offset, count);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }
}
