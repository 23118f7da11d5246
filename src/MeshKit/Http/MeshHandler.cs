using System.Net;
using MeshKit.LoadBalancing;
using MeshKit.Routing;
using MeshKit.Snapshot;

namespace MeshKit.Http;

/// <summary>
/// The outbound data plane: resolves the request's host to a mesh service, matches its routes in order, picks a
/// weighted destination and an endpoint, and sends the request there. Reads one immutable snapshot per request and
/// takes no locks. Failures are responses with a reason and an Envoy-style response flag, as a sidecar would give.
/// </summary>
internal sealed class MeshHandler(MeshSnapshotProvider provider) : DelegatingHandler
{
    /// <summary>The response header that carries MeshKit's response flags on responses the mesh produced itself.</summary>
    public const string ResponseFlagsHeader = "x-meshkit-response-flags";

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }

        var snapshot = provider.Current;
        if (!snapshot.IsReady)
        {
            snapshot = await provider.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
            if (!snapshot.IsReady)
            {
                return Reject(request, HttpStatusCode.ServiceUnavailable, "NC", "mesh configuration not received yet: the control plane did not answer within the initial fetch timeout and no static config file is set");
            }
        }

        if (!snapshot.TryResolve(uri.Host, out var service))
        {
            return snapshot.RegistryOnly
                ? Reject(request, HttpStatusCode.BadGateway, "NR", $"host '{uri.Host}' is not in the mesh registry and outboundTrafficPolicy is REGISTRY_ONLY")
                : await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }

        RouteEntry? route = null;
        RequestMatcher? matched = null;
        foreach (var candidate in service.Routes)
        {
            if (candidate.TryMatch(request, uri, out matched))
            {
                route = candidate;
                break;
            }
        }

        if (route is null)
        {
            return Reject(request, HttpStatusCode.NotFound, "NR", $"no route of '{service.Host}' matches {request.Method} {uri.AbsolutePath}");
        }

        var actions = route.Actions;
        if (actions.Redirect is not null)
        {
            return WithResponseHeaders(actions.RedirectResponse(request, uri), null, actions);
        }

        if (actions.DirectResponse is not null)
        {
            return WithResponseHeaders(LocalReply.ForGrpc(actions.DirectResponseMessage(request)), null, actions);
        }

        var target = route.PickTarget();
        if (target is null)
        {
            return Reject(request, HttpStatusCode.ServiceUnavailable, "UH", $"route '{route.Name}' of '{service.Host}' has no destination with a weight above 0");
        }

        if (target.Endpoints is null)
        {
            var what = target.Subset.Length == 0 ? $"service '{target.Host}'" : $"subset '{target.Subset}' of '{target.Host}'";
            return Reject(request, HttpStatusCode.ServiceUnavailable, "NC", $"{what} is not known to the mesh");
        }

        EndpointView? endpoint = null;
        string? authority = null;
        string? setCookie = null;
        if (!target.Endpoints.Balancer.IsPassthrough)
        {
            var port = SelectPort(target, uri);
            if (port == 0)
            {
                return Reject(request, HttpStatusCode.ServiceUnavailable, "NC", $"'{target.Host}' has several ports and neither the route nor the request names one of them");
            }

            endpoint = target.Endpoints.ForPort(port).Pick(request, uri, out setCookie);
            authority = endpoint?.AuthorityFor(port);
            if (endpoint is null || authority is null)
            {
                return Reject(request, HttpStatusCode.ServiceUnavailable, "UH", $"no healthy upstream for '{target.Host}'{(target.Subset.Length > 0 ? $" subset '{target.Subset}'" : string.Empty)} port {port}");
            }
        }

        // Edits are undone after the send: handlers above may resend this message (retries) and must see it as it was.
        HeaderRestore? restore = null;
        if (target.RequestHeaders is not null || actions.RequestHeaders is not null)
        {
            restore = new HeaderRestore();
            restore.Save(request, target.RequestHeaders?.Names ?? []);
            restore.Save(request, actions.RequestHeaders?.Names ?? []);
            target.RequestHeaders?.Apply(request.Headers, request.Content?.Headers);
            actions.RequestHeaders?.Apply(request.Headers, request.Content?.Headers);
        }

        // The request goes to the endpoint's address while the upstream still sees the authority the caller used
        // (or the rewritten one). Unvalidated header access: no parsing on the request path.
        var originalHost = request.Headers.NonValidated.TryGetValues("Host", out var hostValues) ? hostValues.ToString() : null;
        var host = actions.RewriteAuthority ?? originalHost ?? uri.Authority;
        var hostChanged = !ReferenceEquals(host, originalHost);
        if (hostChanged)
        {
            request.Headers.Remove("Host");
            request.Headers.TryAddWithoutValidation("Host", host);
        }

        var pathAndQuery = actions.RewritesPath ? actions.RewritePath(uri.AbsolutePath, matched) + uri.Query : uri.PathAndQuery;
        request.RequestUri = authority is null
            ? (actions.RewritesPath ? new Uri(uri, pathAndQuery) : uri)
            : new Uri(string.Concat(uri.Scheme, "://", authority, pathAndQuery), UriKind.Absolute);
        if (endpoint is not null)
        {
            Interlocked.Increment(ref endpoint._active);
        }

        try
        {
            var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
            if (setCookie is not null)
            {
                response.Headers.TryAddWithoutValidation("Set-Cookie", setCookie);
            }

            return WithResponseHeaders(response, target, actions);
        }
        finally
        {
            if (endpoint is not null)
            {
                Interlocked.Decrement(ref endpoint._active);
            }

            request.RequestUri = uri;
            if (hostChanged)
            {
                request.Headers.Remove("Host");
                if (originalHost is not null)
                {
                    request.Headers.TryAddWithoutValidation("Host", originalHost);
                }
            }

            restore?.Restore(request);
        }
    }

    // Destination edits first, then the route's: on a conflict the route wins.
    private static HttpResponseMessage WithResponseHeaders(HttpResponseMessage response, RouteTarget? target, RouteActions actions)
    {
        target?.ResponseHeaders?.Apply(response.Headers, response.Content?.Headers);
        actions.ResponseHeaders?.Apply(response.Headers, response.Content?.Headers);
        return response;
    }

    // The destination's port if set; else the request's port when the service has it; else the service's only port.
    private static uint SelectPort(RouteTarget target, Uri uri)
    {
        if (target.Port != 0)
        {
            return target.Port;
        }

        var ports = target.ServicePorts;
        foreach (var port in ports)
        {
            if (port == (uint)uri.Port)
            {
                return port;
            }
        }

        return ports.Length == 1 ? ports[0] : 0;
    }

    private static HttpResponseMessage Reject(HttpRequestMessage request, HttpStatusCode status, string flag, string reason)
    {
        var response = new HttpResponseMessage(status)
        {
            RequestMessage = request,
            ReasonPhrase = reason,
            Content = new StringContent(reason),
        };
        response.Headers.TryAddWithoutValidation(ResponseFlagsHeader, flag);
        return LocalReply.ForGrpc(response);
    }
}
