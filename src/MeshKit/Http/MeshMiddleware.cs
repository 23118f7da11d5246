using Microsoft.AspNetCore.Http;

namespace MeshKit.Http;

/// <summary>
/// The inbound side of the mesh. Identity headers are set by the mesh alone: any a client sends (a forwarded client
/// certificate, any <c>x-meshkit-</c> header) is removed before the application or policy can read it.
/// </summary>
internal sealed class MeshMiddleware(RequestDelegate next)
{
    internal const string ForwardedClientCertHeader = "x-forwarded-client-cert";
    internal const string MeshHeaderPrefix = "x-meshkit-";

    public Task InvokeAsync(HttpContext context)
    {
        StripSpoofableHeaders(context.Request.Headers);
        return next(context);
    }

    internal static void StripSpoofableHeaders(IHeaderDictionary headers)
    {
        headers.Remove(ForwardedClientCertHeader);
        List<string>? remove = null;
        foreach (var header in headers)
        {
            if (header.Key.StartsWith(MeshHeaderPrefix, StringComparison.OrdinalIgnoreCase))
            {
                (remove ??= []).Add(header.Key);
            }
        }

        if (remove is not null)
        {
            foreach (var key in remove)
            {
                headers.Remove(key);
            }
        }
    }
}
