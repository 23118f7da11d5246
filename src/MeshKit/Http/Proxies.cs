using System.Net;

namespace MeshKit.Http;

/// <summary>
/// The application's HTTP proxy, kept for the calls that leave the mesh. A sidecar never sends a call to a workload of
/// the mesh through a proxy: it connects to the endpoint it picked. In MeshKit the client's primary handler, and the
/// mesh's own connection pools, would otherwise consult the proxy settings (<c>HTTP_PROXY</c>, <c>HTTPS_PROXY</c>,
/// <c>NO_PROXY</c>, or the handler's <c>Proxy</c>) for each endpoint's address: with a proxy set, every mesh call went
/// to the proxy (a workload's address is rarely in <c>NO_PROXY</c>, which .NET matches by host name, not by network),
/// and a mutual-TLS connection, secured by the mesh as it connects, was made to the proxy itself.
/// </summary>
internal static class Proxies
{
    /// <summary>
    /// Gives <paramref name="primary"/> a proxy that sends calls to workloads of the mesh directly and asks the proxy it
    /// had (its own, or the process's default) about every other call; one that uses no proxy is left as it is.
    /// </summary>
    public static void TakeOver(HttpMessageHandler primary)
    {
        try
        {
            switch (primary)
            {
                case SocketsHttpHandler { UseProxy: true } sockets:
                    sockets.Proxy = new MeshProxy(sockets.Proxy);
                    break;
                case HttpClientHandler { UseProxy: true } client:
                    client.Proxy = new MeshProxy(client.Proxy);
                    break;
            }
        }
        catch (InvalidOperationException)
        {
            // The handler has sent already: its settings can no longer change (as for the other takeovers).
        }
    }
}

/// <summary>
/// A proxy that bypasses the addresses of the mesh's workloads (<see cref="WorkloadUri"/>) and asks
/// <c>inner</c> (when null, <see cref="HttpClient.DefaultProxy"/>, read at each call as a handler without a proxy of its
/// own reads it) about every other destination: a host outside the mesh, or a ServiceEntry's endpoint outside it.
/// </summary>
internal sealed class MeshProxy(IWebProxy? inner) : IWebProxy
{
    /// <summary>The process's default proxy, with the mesh's workloads bypassed: for the mesh's own plain-text pools.</summary>
    public static readonly MeshProxy Default = new(null);

    private IWebProxy Inner => inner ?? HttpClient.DefaultProxy;

    /// <inheritdoc/>
    public ICredentials? Credentials
    {
        get => Inner.Credentials;
        set => Inner.Credentials = value;
    }

    /// <inheritdoc/>
    public Uri? GetProxy(Uri destination) => destination is WorkloadUri ? null : Inner.GetProxy(destination);

    /// <inheritdoc/>
    public bool IsBypassed(Uri host) => host is WorkloadUri || Inner.IsBypassed(host);
}

/// <summary>
/// The URL of a call the mesh sends to one of its workloads (a registered instance, a WorkloadEntry, an endpoint of a
/// service inside the mesh): its type tells <see cref="MeshProxy"/> to connect directly, with no lookup per request.
/// </summary>
internal sealed class WorkloadUri(string uriString) : Uri(uriString, UriKind.Absolute);
