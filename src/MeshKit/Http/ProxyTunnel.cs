using System.Net;
using System.Text;

namespace MeshKit.Http;

/// <summary>
/// An HTTP proxy's <c>CONNECT</c> tunnel for a connection the mesh secures itself (a DestinationRule's TLS origination)
/// to an endpoint outside the mesh. The application, without the mesh, would have called <c>https://</c> that host, and
/// its client would have gone through the process's HTTPS proxy (<c>HTTPS_PROXY</c>, <c>NO_PROXY</c>) with a tunnel; a
/// pool that secures its connections as it makes them cannot hand the request to the proxy instead, so it opens the
/// tunnel itself and secures what comes through. The mesh's own workloads are never reached through a proxy.
/// </summary>
internal static class ProxyTunnel
{
    // A proxy's reply to CONNECT is a status line and a few headers; a longer one is not a proxy's.
    private const int MaxReplyHead = 16 * 1024;

    /// <summary>
    /// The proxy a connection for <paramref name="context"/>'s request goes through: the process's proxy for an
    /// <c>https</c> URL of the endpoint, unless the endpoint is a workload of the mesh or the proxy settings bypass it;
    /// null to connect directly.
    /// </summary>
    public static Uri? For(SocketsHttpConnectionContext context)
    {
        if (context.InitialRequestMessage.RequestUri is null or WorkloadUri)
        {
            return null;
        }

        var target = new Uri("https://" + Authority(context.DnsEndPoint) + "/");
        var proxy = HttpClient.DefaultProxy;
        return proxy.IsBypassed(target) ? null : proxy.GetProxy(target);
    }

    /// <summary>
    /// Opens a tunnel to <paramref name="target"/> through <paramref name="proxy"/> over the connection
    /// <paramref name="connect"/> makes to it, with the proxy's Basic credentials when the settings give some (the
    /// proxy URL's user information, as <c>HTTPS_PROXY</c> carries them). A refusal fails the connection with the
    /// proxy's status line.
    /// </summary>
    public static async ValueTask<Stream> OpenAsync(Uri proxy, DnsEndPoint target, Func<DnsEndPoint, CancellationToken, ValueTask<Stream>> connect, CancellationToken cancellationToken)
    {
        if (proxy.Scheme != Uri.UriSchemeHttp)
        {
            // .NET's own client also speaks to https:// and socks proxies; this tunnel only to an http:// one.
            throw new HttpRequestException(HttpRequestError.ProxyTunnelError, $"TLS origination goes through an http:// proxy only; the proxy settings name {proxy.Scheme}://{proxy.Authority}");
        }

        var stream = await connect(new DnsEndPoint(proxy.IdnHost, proxy.Port), cancellationToken).ConfigureAwait(false);
        try
        {
            var authority = Authority(target);
            var head = new StringBuilder().Append("CONNECT ").Append(authority).Append(" HTTP/1.1\r\nHost: ").Append(authority).Append("\r\n");
            if (BasicCredentials(proxy) is { } basic)
            {
                head.Append("Proxy-Authorization: Basic ").Append(basic).Append("\r\n");
            }

            await stream.WriteAsync(Encoding.ASCII.GetBytes(head.Append("\r\n").ToString()), cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);

            var status = await ReadReplyAsync(stream, cancellationToken).ConfigureAwait(false);
            var parts = status.Split(' ', 3);
            if (parts.Length < 2 || !parts[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || parts[1].Length != 3 || parts[1][0] != '2')
            {
                throw new HttpRequestException(HttpRequestError.ProxyTunnelError, $"the HTTP proxy {proxy.Authority} did not open a tunnel to {authority}: '{status}'");
            }

            return stream;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static string Authority(DnsEndPoint endpoint) =>
        (IPAddress.TryParse(endpoint.Host, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "[" + endpoint.Host + "]" : endpoint.Host)
        + ":" + endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string? BasicCredentials(Uri proxy)
    {
        var credential = HttpClient.DefaultProxy.Credentials?.GetCredential(proxy, "Basic");
        return credential is { UserName.Length: > 0 }
            ? Convert.ToBase64String(Encoding.UTF8.GetBytes(credential.UserName + ":" + credential.Password))
            : null;
    }

    // Read a byte at a time up to the blank line that ends the head: what follows is the tunnel's (the TLS server's
    // first bytes come only after the client's hello, but nothing of it is read here either way). Once per connection.
    private static async ValueTask<string> ReadReplyAsync(Stream stream, CancellationToken cancellationToken)
    {
        var head = new byte[MaxReplyHead];
        var length = 0;
        while (length < 4 || head[length - 4] != '\r' || head[length - 3] != '\n' || head[length - 2] != '\r' || head[length - 1] != '\n')
        {
            if (length == head.Length)
            {
                throw new HttpRequestException(HttpRequestError.ProxyTunnelError, $"the HTTP proxy's reply to CONNECT is longer than {MaxReplyHead} bytes");
            }

            if (await stream.ReadAsync(head.AsMemory(length, 1), cancellationToken).ConfigureAwait(false) == 0)
            {
                throw new HttpRequestException(HttpRequestError.ProxyTunnelError, "the HTTP proxy closed the connection before it answered CONNECT");
            }

            length++;
        }

        var text = Encoding.ASCII.GetString(head, 0, length);
        return text[..text.IndexOf('\r', StringComparison.Ordinal)];
    }
}
