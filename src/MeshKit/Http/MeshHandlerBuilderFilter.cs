using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Options;

namespace MeshKit.Http;

/// <summary>
/// Puts <see cref="MeshHandler"/> into every <c>IHttpClientFactory</c> client, innermost (next to the primary handler) so
/// that the client's own handlers, retries included, run around it and each attempt is routed afresh. Clients opted out
/// with <c>WithoutMeshHandler()</c>, or that added it explicitly, are left as they are.
/// </summary>
internal sealed class MeshHandlerBuilderFilter(IServiceProvider services, IOptionsMonitor<MeshHttpClientOptions> options) : IHttpMessageHandlerBuilderFilter
{
    public Action<HttpMessageHandlerBuilder> Configure(Action<HttpMessageHandlerBuilder> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return builder =>
        {
            next(builder);
            if (!options.Get(builder.Name).Enabled || builder.AdditionalHandlers.Any(h => h is MeshHandler))
            {
                return;
            }

            builder.AdditionalHandlers.Add(ActivatorUtilities.CreateInstance<MeshHandler>(services));
        };
    }
}
