using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Options;

namespace MeshKit.Http;

/// <summary>
/// Puts <see cref="MeshHandler"/> into every <c>IHttpClientFactory</c> client, innermost (next to the primary handler) so
/// that the client's own handlers, retries included, run around it and each attempt is routed afresh. Clients opted out
/// with <c>WithoutMeshHandler()</c> are left as they are; one that added it explicitly keeps it where it is. The mesh
/// takes the following of redirects, automatic decompression and the cookie container over from the primary handler,
/// and has its proxy settings apply only to calls that leave the mesh.
/// </summary>
internal sealed class MeshHandlerBuilderFilter(IServiceProvider services, IOptionsMonitor<MeshHttpClientOptions> options) : IHttpMessageHandlerBuilderFilter
{
    public Action<HttpMessageHandlerBuilder> Configure(Action<HttpMessageHandlerBuilder> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return builder =>
        {
            next(builder);
            if (!options.Get(builder.Name).Enabled)
            {
                return;
            }

            var mesh = builder.AdditionalHandlers.OfType<MeshHandler>().FirstOrDefault();
            if (mesh is null)
            {
                mesh = ActivatorUtilities.CreateInstance<MeshHandler>(services);
                builder.AdditionalHandlers.Add(mesh);
            }

            DisableGrpcBalancing(builder.PrimaryHandler);

            var taken = TakenOver.GetValue(builder.PrimaryHandler, TakeOver);
            mesh.MaxRedirects = taken.MaxRedirects;
            mesh.Decompress = taken.Decompress;
            mesh.CookieJar = taken.CookieJar;
        };
    }

    // What was taken from each primary handler, kept with it: one handler shared by several clients (a singleton given
    // to ConfigurePrimaryHttpMessageHandler) is turned off once and gives each client the same settings.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<HttpMessageHandler, ClientBehaviour> TakenOver = new();

    private static ClientBehaviour TakeOver(HttpMessageHandler primary)
    {
        // The proxy stays the primary handler's for calls that leave the mesh; calls to its workloads go direct.
        Proxies.TakeOver(primary);
        return Behaviour(primary);
    }

    private static ClientBehaviour Behaviour(HttpMessageHandler primary) => new(
        // Redirects are followed by the mesh, each hop routed, as an application's client follows them through a
        // sidecar; below the mesh they would go out unrouted, to a host name DNS does not know.
        Redirects.TakeOver(primary),
        // Likewise decompression, which the mesh's own connections (mutual TLS) would otherwise not apply.
        Decompression.TakeOver(primary),
        // And cookies, which the primary handler kept by the endpoint's address (and, under mutual TLS, not at all).
        Cookies.TakeOver(primary));

    private sealed record ClientBehaviour(int MaxRedirects, System.Net.DecompressionMethods Decompress, System.Net.CookieContainer? CookieJar);

    /// <summary>
    /// grpc-dotnet balances by itself when it finds a plain <see cref="SocketsHttpHandler"/> under a client, connecting to
    /// the addresses it resolves for the URL's host instead of the endpoint MeshKit picked. A connect callback makes it
    /// treat the handler as custom and leave balancing to the mesh; the callback connects exactly as the default does.
    /// </summary>
    internal static void DisableGrpcBalancing(HttpMessageHandler primary)
    {
        if (primary is SocketsHttpHandler { ConnectCallback: null } sockets)
        {
            sockets.ConnectCallback = static async (context, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }
    }
}
