using MeshKit.Routing;
using MeshKit.Snapshot;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace MeshKit.Http;

/// <summary>
/// The inbound side of the mesh. Identity headers are set by the mesh alone: any a client sends (a forwarded client
/// certificate, any <c>x-meshkit-</c> header) is removed before the application or policy can read it. Then the
/// <c>corsPolicy</c> of the route the request matches on this workload's own service is applied, as Envoy's CORS filter
/// does at the destination. Under STRICT mutual TLS a request without a verified peer is refused.
/// </summary>
internal sealed class MeshMiddleware(RequestDelegate next, MeshSnapshotProvider provider, Security.WorkloadIdentity identity)
{
    internal const string ForwardedClientCertHeader = "x-forwarded-client-cert";
    internal const string MeshHeaderPrefix = "x-meshkit-";

    public Task InvokeAsync(HttpContext context)
    {
        StripSpoofableHeaders(context.Request.Headers);
        var snapshot = provider.Current;

        // Connections are checked when they open; a policy that became STRICT since then is enforced per request.
        if (identity.Enabled && Security.MeshPeer.Of(context) is null
            && Security.InboundTlsSetup.ModeOn(snapshot.PeerAuthentication, context.Connection.LocalPort) == Protocol.V1.MtlsMode.Strict)
        {
            context.Abort();
            return Task.CompletedTask;
        }

        var own = snapshot.OwnService;
        if (own is { HasCors: true } && context.Request.Headers.TryGetValue(HeaderNames.Origin, out var origin) && CorsFor(own, context.Request) is { } cors)
        {
            return ApplyCors(context, cors, origin.ToString());
        }

        return next(context);
    }

    private static CorsRule? CorsFor(ServiceView service, HttpRequest request)
    {
        var view = new InboundRequest(request);
        foreach (var route in service.Routes)
        {
            if (route.TryMatch(view, out _))
            {
                return route.Actions.Cors;
            }
        }

        return null;
    }

    private Task ApplyCors(HttpContext context, CorsRule cors, string origin)
    {
        var request = context.Request;
        var response = context.Response;
        var allowed = cors.AllowsOrigin(origin);
        var preflight = HttpMethods.IsOptions(request.Method) && request.Headers.ContainsKey(HeaderNames.AccessControlRequestMethod);
        if (preflight)
        {
            if (!allowed)
            {
                if (!cors.IgnoreUnmatchedPreflights)
                {
                    return next(context);
                }

                response.StatusCode = StatusCodes.Status200OK;
                return Task.CompletedTask;
            }

            response.StatusCode = StatusCodes.Status200OK;
            response.Headers[HeaderNames.AccessControlAllowOrigin] = origin;
            SetIfAny(response, HeaderNames.AccessControlAllowMethods, cors.AllowMethods);
            SetIfAny(response, HeaderNames.AccessControlAllowHeaders, cors.AllowHeaders);
            SetIfAny(response, HeaderNames.AccessControlMaxAge, cors.MaxAge);
            if (cors.AllowCredentials)
            {
                response.Headers[HeaderNames.AccessControlAllowCredentials] = "true";
            }

            response.Headers.Append(HeaderNames.Vary, HeaderNames.Origin);
            return Task.CompletedTask;
        }

        if (allowed)
        {
            response.OnStarting(() =>
            {
                response.Headers[HeaderNames.AccessControlAllowOrigin] = origin;
                SetIfAny(response, HeaderNames.AccessControlExposeHeaders, cors.ExposeHeaders);
                if (cors.AllowCredentials)
                {
                    response.Headers[HeaderNames.AccessControlAllowCredentials] = "true";
                }

                response.Headers.Append(HeaderNames.Vary, HeaderNames.Origin);
                return Task.CompletedTask;
            });
        }

        return next(context);
    }

    private static void SetIfAny(HttpResponse response, string name, string? value)
    {
        if (value is not null)
        {
            response.Headers[name] = value;
        }
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
