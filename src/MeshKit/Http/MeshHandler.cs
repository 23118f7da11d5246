using System.Buffers;
using System.Diagnostics;
using System.Net;
using MeshKit.LoadBalancing;
using MeshKit.Resilience;
using MeshKit.Routing;
using MeshKit.Telemetry;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Timeout;
using MeshKit.Snapshot;

namespace MeshKit.Http;

/// <summary>
/// The outbound data plane: resolves the request's host to a mesh service, matches its routes in order, picks a
/// weighted destination and an endpoint, and sends the request there. Reads one immutable snapshot per request and
/// takes no locks. Failures are responses with a reason and an Envoy-style response flag, as a sidecar would give.
/// </summary>
internal sealed partial class MeshHandler(MeshSnapshotProvider provider, MeshMetrics? metrics = null, ILoggerFactory? loggers = null, IstioMetrics? istio = null, Sync.WorkloadAnnouncer? announcer = null, Security.WorkloadIdentity? identity = null, Microsoft.Extensions.Options.IOptions<MeshOptions>? options = null) : DelegatingHandler
{
    /// <summary>The access log's category: one structured entry per outbound request, at Information.</summary>
    public const string AccessLogCategory = "MeshKit.AccessLog";

    private readonly ILogger? accessLog = loggers?.CreateLogger(AccessLogCategory);
    private readonly double _sampling = options?.Value.AccessLogSampling ?? 1.0;
    private readonly bool _generateRequestId = options?.Value.GenerateRequestId ?? true;

    private bool Sampled() => _sampling >= 1.0 || (_sampling > 0 && Random.Shared.NextDouble() < _sampling);


    private PeerMetadata? _self;

    /// <summary>Gets whether anything on this side reads the server's metadata (Istio's metrics, the access log).</summary>
    private bool RecordsPeers => istio?.Enabled == true || accessLog?.IsEnabled(LogLevel.Information) == true;

    private PeerMetadata Self => _self ??= announcer is null ? PeerMetadata.Unknown : PeerMetadata.ForWorkload(announcer.Source.Service, announcer.Source.Namespace, announcer.Source.Labels);

    /// <summary>
    /// The response header that carries MeshKit's response flags (Envoy's names: NR, NC, UH, UO, UT, URX, DI, FI) on
    /// responses the mesh made or shaped.
    /// </summary>
    public const string ResponseFlagsHeader = "x-meshkit-response-flags";

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        Decompress == DecompressionMethods.None ? SendHop(request, MaxRedirects > 0, cancellationToken).AsTask() : SendDecompressingAsync(request, cancellationToken);

    /// <summary>
    /// Gets or sets the encodings the handler asks for and decodes for the client, on every call (taken over from the
    /// client's primary handler, which would decode only the calls it carries itself: see <see cref="Decompression"/>).
    /// </summary>
    internal DecompressionMethods Decompress { get; set; }

    /// <summary>
    /// Gets or sets the client's cookie container, kept by the mesh by the URL the application called (taken over from
    /// the client's primary handler, which saw the endpoint's address: see <see cref="Cookies"/>); null: none.
    /// </summary>
    internal CookieContainer? CookieJar { get; set; }

    private async Task<HttpResponseMessage> SendDecompressingAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Decompression.Ask(request, Decompress);

        // Outside the body's watcher: the mesh counts the bytes that crossed the network, as Envoy does.
        return Decompression.Apply(await SendHop(request, MaxRedirects > 0, cancellationToken).ConfigureAwait(false), Decompress);
    }

    /// <summary>
    /// Gets or sets how many redirects the handler follows for the client, each routed as a request of its own (0: none,
    /// the response goes back as it is). Set from the client's primary handler, whose own following of redirects is
    /// turned off (<see cref="MeshHandlerBuilderFilter"/>): below the mesh, a redirect would go out unrouted, to a
    /// mesh host name that DNS does not know, or to the endpoint's address without the mesh.
    /// </summary>
    internal int MaxRedirects { get; set; }

    // One request through the mesh: routed, observed, and (when follow) its redirects followed.
    private ValueTask<HttpResponseMessage> SendHop(HttpRequestMessage request, bool follow, CancellationToken cancellationToken)
    {
        // Before anything reads the request, as Envoy's connection manager gives it before routing: a call the mesh
        // answers itself (no route, no endpoint) has its id in the log too.
        var snapshot = provider.Current;
        if (_generateRequestId && !snapshot.ProxyHeaders.RequestIdDisabled)
        {
            RequestId.EnsureOn(request);
        }

        var log = accessLog is not null && !snapshot.ClientAccessLogOff && accessLog.IsEnabled(LogLevel.Information) && Sampled();
        var reportIstio = istio?.Enabled == true;
        var activity = snapshot.SpansOff ? null : MeshActivity.Source.StartActivity("MeshKit outbound", ActivityKind.Internal);
        if (activity is not null)
        {
            snapshot.SpanTags?.Apply(activity, request);
        }

        if (activity is null && !log && metrics?.ObservesCalls != true && !reportIstio && !follow)
        {
            // Nothing observes this call: no wrapper state machine around the send.
            return SendCoreAsync(request, null, cancellationToken);
        }

        return SendObservedAsync(request, activity, log, reportIstio, follow, cancellationToken);
    }

    /// <summary>
    /// <c>HttpClient.Send</c> takes the same path as <c>SendAsync</c>, blocking until it completes: a
    /// <see cref="DelegatingHandler"/>'s own synchronous path would pass the request straight to the socket handler,
    /// unrouted and without mutual TLS.
    /// </summary>
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, cancellationToken).GetAwaiter().GetResult();

    // The send path returns value tasks, pooled where they await: the task a DelegatingHandler must return is made
    // once, at the top, instead of one per async layer.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpResponseMessage> SendObservedAsync(HttpRequestMessage request, Activity? activity, bool log, bool reportIstio, bool follow, CancellationToken cancellationToken)
    {
        using var owned = activity;
        activity?.SetTag("server.address", request.RequestUri?.IdnHost);
        if (!log && metrics?.ObservesCalls != true && !reportIstio)
        {
            var quick = await SendCoreAsync(request, null, cancellationToken).ConfigureAwait(false);
            activity?.SetTag("http.response.status_code", (int)quick.StatusCode);
            return follow && Redirects.Next(request, quick) is { } to ? Followed(activity, await FollowRedirectsAsync(request, quick, to, cancellationToken).ConfigureAwait(false)) : quick;
        }

        var started = provider.Runtime.Time.GetTimestamp();
        var destination = request.RequestUri?.IdnHost ?? string.Empty;
        var requestBytes = request.Content?.Headers.ContentLength ?? 0;
        // A gRPC call's messages are counted into its stream entry from its first byte; the entry joins the running
        // streams only if the reply's body is still to come.
        var live = reportIstio && IsGrpc(request) ? new CallerStream(this, destination) : null;
        var counted = reportIstio || log ? CountedContent.Install(request, live) : null;
        var answer = RecordsPeers || metrics?.RouteStatsEnabled == true ? PerThread<Answer>.Rent() : null;
        HttpResponseMessage result;
        try
        {
            var response = await SendCoreAsync(request, answer, cancellationToken).ConfigureAwait(false);
            var flags = response.Headers.NonValidated.TryGetValues(ResponseFlagsHeader, out var values) ? values.ToString() : string.Empty;
            if (!reportIstio)
            {
                metrics?.Request(destination, (int)response.StatusCode, flags); // else it rides Istio's report, off the request path
            }

            activity?.SetTag("http.response.status_code", (int)response.StatusCode);
            activity?.SetTag("meshkit.response_flags", flags.Length == 0 ? null : flags);
            if ((reportIstio || log || answer?.StatPrefix is not null) && ResponseDeadline.HasBodyToCome(request, response))
            {
                // Reported when the body ends, as Envoy reports a stream when it completes: the whole duration, the
                // bytes received (a chunked body declares none), what cut it, and a gRPC call's status, which is in
                // the trailers after its messages. A route timeout's body is watched already.
                var watched = response.Content as WatchedContent ?? new WatchedContent(response.Content);
                response.Content = watched;
                if (live is not null)
                {
                    // A long stream's messages are added while it runs (LiveStreams), the rest when it ends.
                    live.Answered(answer?.Principal, answer?.Metadata, answer?.RoutedTo);
                    istio!.Live.Add(live, provider.Current.StreamReportingInterval, weakly: true); // held by the response's body, as long as the application holds that
                }

                watched.Observe(ReportAtEnd.Rent(this, request, response, destination, flags, requestBytes, counted, live, started, answer, reportIstio, log), live);
            }
            else
            {
                var elapsed = Elapsed(started);
                var responseBytes = response.Content.Headers.ContentLength;
                var sent = counted?.Sent ?? requestBytes;
                if (reportIstio)
                {
                    ReportAsSource(request, response, destination, flags, sent, live?.RequestMessages ?? 0, responseBytes, 0, elapsed, answer?.Principal, answer?.Metadata, answer?.RoutedTo);
                }

                if (log)
                {
                    WriteAccessLog(request, response, destination, flags, elapsed, sent, responseBytes, answer?.Principal);
                }

                if (answer?.StatPrefix is { } statPrefix)
                {
                    ReportRoute(statPrefix, destination, (int)response.StatusCode, flags, elapsed);
                }
            }

            result = response;
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            // Envoy's flags for a call without a response: DC when the caller gave up (its token, or HttpClient's
            // timeout, which cancels the same token), UF when the upstream could not be reached or answered no more.
            var flag = ex is OperationCanceledException && cancellationToken.IsCancellationRequested ? "DC" : "UF";
            var elapsed = provider.Runtime.Time.GetElapsedTime(started).TotalMilliseconds;
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            activity?.SetTag("meshkit.response_flags", flag);
            if (reportIstio)
            {
                ReportAsSource(request, null, destination, flag, counted?.Sent ?? requestBytes, live?.RequestMessages ?? 0, null, 0, elapsed, answer?.Principal, answer?.Metadata, answer?.RoutedTo);
            }
            else
            {
                metrics?.Request(destination, 0, flag);
            }

            if (log)
            {
                WriteAccessLog(request, null, destination, flag, elapsed, counted?.Sent ?? requestBytes, null, answer?.Principal);
            }

            if (answer?.StatPrefix is { } statPrefix)
            {
                ReportRoute(statPrefix, destination, 0, flag, elapsed);
            }

            throw;
        }
        finally
        {
            if (answer is not null)
            {
                answer.Clear();
                PerThread<Answer>.Return(answer);
            }
        }

        // This hop is reported; the next ones are requests of their own (as the application's client would send them
        // through a sidecar), each reported by itself.
        return follow && Redirects.Next(request, result) is { } next ? Followed(activity, await FollowRedirectsAsync(request, result, next, cancellationToken).ConfigureAwait(false)) : result;
    }

    // The call's span covers its redirects: it ends with the status the application gets.
    private static HttpResponseMessage Followed(Activity? activity, HttpResponseMessage final)
    {
        activity?.SetTag("http.response.status_code", (int)final.StatusCode);
        return final;
    }

    /// <summary>
    /// Follows redirects as the client's primary handler would have (its limit; a POST that a 301 or 302 answers, and
    /// anything but GET or HEAD that a 303 answers, becomes a GET without a body; the <c>Authorization</c> header is not
    /// sent on; never from https to http), each hop routed through the mesh afresh.
    /// </summary>
    private async ValueTask<HttpResponseMessage> FollowRedirectsAsync(HttpRequestMessage request, HttpResponseMessage response, Uri next, CancellationToken cancellationToken)
    {
        for (var followed = 1; followed <= MaxRedirects; followed++)
        {
            var status = response.StatusCode;
            await DrainAsync(response, cancellationToken).ConfigureAwait(false);
            response.Dispose();
            request.Headers.Authorization = null;
            request.RequestUri = next;
            if (Redirects.RequiresGet(status, request.Method))
            {
                request.Method = HttpMethod.Get;
                request.Content = null;
                if (request.Headers.TransferEncodingChunked == true)
                {
                    request.Headers.TransferEncodingChunked = false;
                }
            }

            response = await SendHop(request, follow: false, cancellationToken).ConfigureAwait(false);
            if (Redirects.Next(request, response) is not { } further)
            {
                return response;
            }

            next = further;
        }

        return response; // past the limit: the last redirect goes to the application, as HttpClient's handler returns it
    }

    /// <summary>
    /// Reads a redirect's own body to its end (64 KiB at most) before it is let go, as the client's handler drains it for
    /// the connection's sake: its hop is then reported as a response that came whole, not one the caller gave up (DC).
    /// </summary>
    private static async ValueTask DrainAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength is 0 || response.Content is not WatchedContent)
        {
            return; // nothing to come, or nothing reports it
        }

        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            for (var left = 64 * 1024; left > 0;)
            {
                var read = await body.ReadAsync(buffer.AsMemory(0, Math.Min(buffer.Length, left)), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                left -= read;
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            // The redirect's body failed: it is reported as it ended, and the redirect is followed all the same.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // The request path is split where it first awaits: the routing decisions (most requests) run synchronously and
    // the send is one small async method whose state lives in the pooled AttemptState, so the state machine boxed per
    // request holds a few fields instead of every routing local.
    private ValueTask<HttpResponseMessage> SendCoreAsync(HttpRequestMessage request, Answer? answer, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            return new(PassThroughAsync(request, cancellationToken));
        }

        var snapshot = provider.Current;
        return snapshot.IsReady ? Resolve(request, uri, snapshot, answer, cancellationToken) : new(SendWhenReadyAsync(request, uri, answer, cancellationToken));
    }

    /// <summary>A call outside the mesh's routes goes out as it is; only what the mesh alone may say is taken off its answer.</summary>
    private async Task<HttpResponseMessage> PassThroughAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri is { IsAbsoluteUri: true } absolute ? absolute : null;
        Routing.HeaderRestore? restore = null;
        if (CookieJar is { } jar && uri is not null)
        {
            Cookies.Send(jar, request, uri, ref restore);
        }

        try
        {
            var response = await SendUpstreamAsync(request, provider.Current.ProxyHeaders, 1, cancellationToken).ConfigureAwait(false);
            if (CookieJar is { } keep && uri is not null)
            {
                Cookies.Store(keep, uri, response);
            }

            return response;
        }
        finally
        {
            restore?.Restore(request);
        }
    }

    /// <summary>
    /// One attempt through the client's own handler to the host the caller named (a call outside the mesh's routes, or
    /// a pass-through route), with the headers a sidecar adds to it (Envoy's passthrough cluster is a route too).
    /// </summary>
    private async Task<HttpResponseMessage> SendUpstreamAsync(HttpRequestMessage request, Protocol.V1.ProxyHeaders headers, int attempt, CancellationToken cancellationToken)
    {
        if (!headers.AttemptCountDisabled)
        {
            ProxyHeaderValues.Set(request.Headers, ProxyHeaderValues.AttemptCount, ProxyHeaderValues.Text(attempt));
        }

        var sentAt = headers.EnvoyDebugHeadersDisabled ? 0 : provider.Runtime.Time.GetTimestamp();
        var response = WithoutUpstreamFlags(await base.SendAsync(request, cancellationToken).ConfigureAwait(false));
        if (sentAt != 0)
        {
            ServiceTime(response, sentAt);
        }

        return response;
    }

    /// <summary>Tells the application how long the upstream took to answer (Envoy's <c>x-envoy-upstream-service-time</c>), replacing what a hop behind it said.</summary>
    private void ServiceTime(HttpResponseMessage response, long sentAt) =>
        ProxyHeaderValues.Set(response.Headers, ProxyHeaderValues.UpstreamServiceTime, ProxyHeaderValues.Text((long)provider.Runtime.Time.GetElapsedTime(sentAt).TotalMilliseconds));

    /// <summary>
    /// Removes response flags an upstream sent: they are this hop's (Envoy's are per hop, never read from the answer),
    /// and a server, or anything it relays, could otherwise set the caller's metrics label and mislead its app.
    /// </summary>
    private static HttpResponseMessage WithoutUpstreamFlags(HttpResponseMessage response)
    {
        if (response.Headers.NonValidated.Contains(ResponseFlagsHeader))
        {
            response.Headers.Remove(ResponseFlagsHeader);
        }

        return response;
    }

    private async Task<HttpResponseMessage> SendWhenReadyAsync(HttpRequestMessage request, Uri uri, Answer? answer, CancellationToken cancellationToken)
    {
        var snapshot = await provider.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
        if (!snapshot.IsReady)
        {
            return Reject(request, HttpStatusCode.ServiceUnavailable, "NC", "mesh configuration not received yet: the control plane did not answer within the initial fetch timeout and no static config file is set");
        }

        return await Resolve(request, uri, snapshot, answer, cancellationToken).ConfigureAwait(false);
    }

    private ValueTask<HttpResponseMessage> Resolve(HttpRequestMessage request, Uri uri, MeshSnapshot snapshot, Answer? answer, CancellationToken cancellationToken)
    {
        // A service the Sidecar admits on other ports only is, on this one, a host outside the registry (Istio's
        // listener per port has no route for it).
        if (!snapshot.TryResolve(uri.Host, out var service) || (service.SidecarPorts is { } admitted && Array.IndexOf(admitted, (uint)ServicePortOf(service.Ports, uri.Port)) < 0))
        {
            if (snapshot.RegistryOnly)
            {
                return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.BadGateway, "NR", $"host '{uri.Host}' is not in the mesh registry and outboundTrafficPolicy is REGISTRY_ONLY"));
            }

            if (snapshot.EgressProxy is not { } egress)
            {
                return new(PassThroughAsync(request, cancellationToken));
            }

            // Through the Sidecar's egress proxy, with the authority the application called; never around it. A TLS
            // call's handshake is with its host, which an HTTP hop cannot carry: it is refused, not sent around.
            if (uri.Scheme != Uri.UriSchemeHttp)
            {
                return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.BadGateway, "NR", $"host '{uri.Host}' is not in the mesh registry and goes through the egress proxy '{egress.Host}', which takes plain HTTP calls only: declare the host with a ServiceEntry to call it over TLS"));
            }

            return egress.Service is { } proxy
                ? Route(request, uri, proxy, proxy.Routes[0], null, false, answer, cancellationToken)
                : new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.ServiceUnavailable, "UH", $"host '{uri.Host}' is not in the mesh registry and goes through the egress proxy '{egress.Host}', which this workload does not see"));
        }

        RouteEntry? route = null;
        RequestMatcher? matched = null;
        var view = new OutboundRequest(request, uri, ServicePortOf(service.Ports, uri.Port));
        foreach (var candidate in service.Routes)
        {
            if (candidate.TryMatch(view, out matched))
            {
                route = candidate;
                break;
            }
        }

        if (route is null)
        {
            return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.NotFound, "NR", $"no route of '{service.Host}' matches {request.Method} {uri.AbsolutePath}"));
        }

        // Every call the block selects counts for its route, whatever answers it (a fault, a redirect, the mesh itself).
        if (answer is not null && matched?.StatPrefix is { } statPrefix && metrics?.RouteStatsEnabled == true)
        {
            answer.StatPrefix = statPrefix;
        }

        var actions = route.Actions;
        if (actions.Redirect is not null)
        {
            return new ValueTask<HttpResponseMessage>(WithResponseHeaders(actions.RedirectResponse(request, uri, matched), null, actions));
        }

        if (actions.DirectResponse is not null)
        {
            return new ValueTask<HttpResponseMessage>(WithResponseHeaders(LocalReply.ForGrpc(actions.DirectResponseMessage(request)), null, actions));
        }

        // Injected faults act before the request leaves, once per request (not per retry), as Envoy's fault filter.
        if (route.Resilience?.Fault is { } fault && fault.ShouldDelay())
        {
            metrics?.Fault(service.Host, "delay");
            return new(DelayThenRouteAsync(request, uri, service, route, matched, fault, answer, cancellationToken));
        }

        return Route(request, uri, service, route, matched, delayed: false, answer, cancellationToken);
    }

    // The backend of a route that holds the endpoint the request's session names, or null.
    private static RouteTarget? SessionTarget(RouteEntry route, string pinned, Uri uri)
    {
        foreach (var target in route.Targets)
        {
            if (target.Weight > 0 && target.Endpoints is { Balancer.IsPassthrough: false } endpoints && SelectPort(target, uri) is var port and > 0
                && endpoints.ForPort(port).Holds(pinned, port))
            {
                return target;
            }
        }

        return null;
    }

    private async Task<HttpResponseMessage> DelayThenRouteAsync(HttpRequestMessage request, Uri uri, ServiceView service, RouteEntry route, RequestMatcher? matched, Resilience.FaultPlan fault, Answer? answer, CancellationToken cancellationToken)
    {
        await Task.Delay(fault.Delay, provider.Runtime.Time, cancellationToken).ConfigureAwait(false);
        return await Route(request, uri, service, route, matched, delayed: true, answer, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Picks the destination, applies the route's request edits and hands the call to <see cref="SendRoutedAsync"/>.</summary>
    private ValueTask<HttpResponseMessage> Route(HttpRequestMessage request, Uri uri, ServiceView service, RouteEntry route, RequestMatcher? matched, bool delayed, Answer? answer, CancellationToken cancellationToken)
    {
        var actions = route.Actions;
        var resilience = route.Resilience;
        if (resilience?.Fault is { } fault && fault.ShouldAbort())
        {
            metrics?.Fault(service.Host, "abort");
            return new ValueTask<HttpResponseMessage>(WithResponseHeaders(Abort(request, fault, delayed), null, actions));
        }

        if (accessLog?.IsEnabled(LogLevel.Information) == true)
        {
            // Only the access log reads it; setting an option allocates the request's option bag.
            request.Options.Set(MeshActivity.RouteName, route.Name);
        }

        // A route's session holds across its backends: the one whose endpoints hold the session's comes first. The
        // session is read once per call, here (from the client's cookie container when the request has no cookie yet).
        var session = route.Session;
        var pinned = session?.Pinned(request, CookieJar, uri);
        var target = pinned is not null && route.Targets.Length > 1 ? SessionTarget(route, pinned, uri) ?? route.PickTarget() : route.PickTarget();
        if (target is null)
        {
            return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.ServiceUnavailable, "UH", $"route '{route.Name}' of '{service.Host}' has no destination with a weight above 0"));
        }

        if (target.Endpoints is null)
        {
            var what = target.Subset.Length == 0 ? $"service '{target.Host}'" : $"subset '{target.Subset}' of '{target.Host}'";
            return new ValueTask<HttpResponseMessage>(Reject(request, (HttpStatusCode)route.UnknownDestinationStatus, "NC", $"{what} is not known to the mesh"));
        }

        var passthrough = target.Endpoints.Balancer.IsPassthrough;
        var port = passthrough ? 0u : SelectPort(target, uri);
        if (!passthrough && port == 0)
        {
            return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.ServiceUnavailable, "NC", $"'{target.Host}' has several ports and neither the route nor the request names one of them"));
        }

        var endpoints = target.Endpoints.ForPort(port);
        if (session is null && endpoints.Session is { } destinationSession)
        {
            // No session of the route's own: the destination's (a Service's persistent-session label).
            session = destinationSession;
            pinned = session.Pinned(request, CookieJar, uri);
        }

        if (!passthrough && endpoints.Endpoints.Length == 0)
        {
            return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.ServiceUnavailable, "UH", NoHealthyUpstream(target, port)));
        }

        // Circuit breaking: over the destination's request limit a call fails at once, it never queues.
        // Requests are counted only where limits read the count.
        var upstream = endpoints.Upstream;
        if (upstream.Counters is { } counters)
        {
            var inFlight = Interlocked.Increment(ref counters._activeRequests);
            if (upstream.Limits is { MaxRequests: > 0 } limits && inFlight > limits.MaxRequests)
            {
                Interlocked.Decrement(ref counters._activeRequests);
                metrics?.Overflow(target.Host);
                var what = target.Subset.Length == 0 ? $"'{target.Host}'" : $"subset '{target.Subset}' of '{target.Host}'";
                return new ValueTask<HttpResponseMessage>(Reject(request, HttpStatusCode.ServiceUnavailable, "UO", $"upstream overflow: {limits.MaxRequests} requests already in flight to {what} (connectionPool)"));
            }
        }

        // Edits are undone after the send: handlers above may resend this message (retries) and must see it as it was.
        HeaderRestore? restore = null;

        // The application's x-envoy-* headers change this call's timeout and retries, and are not sent on.
        if (resilience is not null && EnvoyRequestHeaders.TryRead(request.Headers, out var overrides))
        {
            restore = new HeaderRestore();
            restore.Save(request, EnvoyRequestHeaders.Consumed);
            EnvoyRequestHeaders.RemoveFrom(request.Headers);
            resilience = resilience.WithOverrides(overrides);
        }

        if (target.RequestHeaders is not null || actions.RequestHeaders is not null)
        {
            restore ??= new HeaderRestore();
            restore.Save(request, target.RequestHeaders?.Names ?? []);
            restore.Save(request, actions.RequestHeaders?.Names ?? []);
            target.RequestHeaders?.Apply(request.Headers, request.Content?.Headers);
            actions.RequestHeaders?.Apply(request.Headers, request.Content?.Headers);
        }

        // The client's cookies for the URL it called, as its own handler would have sent them.
        if (CookieJar is { } jar)
        {
            Cookies.Send(jar, request, uri, ref restore);
        }

        // The request goes to the endpoint's address while the upstream still sees the authority the caller used
        // (or the rewritten one). Unvalidated header access: no parsing on the request path.
        var originalHost = request.Headers.NonValidated.TryGetValues("Host", out var hostValues) ? hostValues.ToString() : null;
        var host = actions.RewriteAuthority ?? originalHost ?? service.AuthorityOf(uri);
        var hostChanged = !ReferenceEquals(host, originalHost);
        if (hostChanged)
        {
            request.Headers.Remove("Host");
            request.Headers.TryAddWithoutValidation("Host", host);
        }

        var pathAndQuery = actions.RewritesPath ? actions.RewritePath(uri.AbsolutePath, matched) + uri.Query : uri.PathAndQuery;
        var headers = provider.Current.ProxyHeaders;
        if (!headers.EnvoyDebugHeadersDisabled)
        {
            // Envoy's debug headers, as an Istio sidecar sends them: how long the caller waits, and the path it called.
            if (resilience?.ExpectedTimeoutText is { } expected)
            {
                ProxyHeaderValues.Set(request.Headers, ProxyHeaderValues.ExpectedTimeout, expected);
            }

            if (actions.RewritesPath)
            {
                ProxyHeaderValues.Set(request.Headers, ProxyHeaderValues.OriginalPath, uri.PathAndQuery);
            }
        }

        var state = AttemptState.Rent();
        state.Headers = headers;
        state.Request = request;
        state.Uri = uri;
        state.ServiceHost = service.Host;
        state.Route = route;
        state.Target = target;
        state.Resilience = resilience;
        state.Delayed = delayed;
        state.Passthrough = passthrough;
        state.Authority = host;
        state.OriginalHost = originalHost;
        state.HostChanged = hostChanged;
        state.Restore = restore;
        state.Endpoints = endpoints;
        state.Port = port;
        state.PathAndQuery = pathAndQuery;
        state.Idempotent = RetryConditions.IsIdempotent(request.Method);
        state.Cluster = upstream.Counters;
        state.Limits = upstream.Limits;
        state.CallerToken = cancellationToken;
        state.RetryRemoteLocalities = resilience?.RetryRemoteLocalities ?? false;
        state.AvoidTried = resilience?.AvoidTried ?? true;
        state.Transport = upstream.Transport;
        state.TlsMode = upstream.TlsMode;
        state.Answer = answer;
        state.Session = session;
        state.Pinned = pinned;
        return SendRoutedAsync(state, cancellationToken);
    }

    /// <summary>The send: body made replayable, mirrors started, then the attempts through the route's policy.</summary>
    // Pooled: the state of a call that completes asynchronously (every network call) is reused, not allocated; the
    // task the handler must return is then the only object of its own, smaller than this method's state would be.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpResponseMessage> SendRoutedAsync(AttemptState state, CancellationToken cancellationToken)
    {
        var request = state.Request;
        try
        {
            var wantsReplay = (state.Resilience is { Attempts: > 0 }) || state.Route.Mirrors.Length > 0;
            state.Replayable = request.Content is null || (wantsReplay && await TryMakeReplayableAsync(request.Content, cancellationToken).ConfigureAwait(false));
            if (state.Replayable && state.Route.Mirrors.Length > 0)
            {
                await StartMirrorsAsync(state, cancellationToken).ConfigureAwait(false);
            }

            HttpResponseMessage response;
            var resilience = state.Resilience;
            if (resilience is null)
            {
                response = Unwrap(await SendAttemptAsync(state, cancellationToken).ConfigureAwait(false));
            }
            else
            {
                // The first attempt under the policy's first deadline, here rather than in a method of its own: one
                // async layer less on the path of almost every call.
                var time = provider.Runtime.Time;
                var started = time.GetTimestamp();
                var deadline = resilience.FirstDeadline is { } due ? CallDeadline.Start(due, cancellationToken, time) : (CallDeadline?)null;
                Outcome<HttpResponseMessage> outcome;
                try
                {
                    outcome = await SendAttemptAsync(state, deadline?.Token ?? cancellationToken).ConfigureAwait(false);
                    outcome = await AfterFirstAttempt(state, resilience, outcome, deadline, started, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    deadline?.End();
                }

                if (outcome.Exception is TimeoutRejectedException timedOut)
                {
                    return TimedOutReply(state, timedOut.Timeout);
                }

                response = Unwrap(outcome);

                // The route timeout runs on until the body has arrived, as Envoy's does.
                if (resilience.Timeout is { } route && ResponseDeadline.HasBodyToCome(request, response)
                    && !ResponseDeadline.Cover(response, route - time.GetElapsedTime(started), new UpstreamTimeout(state.Route.Name, state.ServiceHost, route), cancellationToken, time))
                {
                    return TimedOutReply(state, route);
                }
            }

            if (state.SetCookie is not null)
            {
                response.Headers.TryAddWithoutValidation("Set-Cookie", state.SetCookie);
            }

            // The session names the endpoint that answered when the call did not name it (new, moved, or retried).
            if (state.Session is { } sticky && state.ServedBy is { } served && served != state.Pinned)
            {
                sticky.Name(response, served);
            }

            // Kept by the URL the application called, the mesh's own affinity cookie with them (as the application's
            // client keeps the one a sidecar sets).
            if (CookieJar is { } jar)
            {
                Cookies.Store(jar, state.Uri, response);
            }

            if (state.RetryOverflow)
            {
                metrics?.BudgetExhausted(state.Target.Host);
            }

            // URX: the last attempt failed and no retry was left (attempts used up, or the budget refused one).
            var exhausted = resilience is { Attempts: > 0 } && !response.IsSuccessStatusCode && (state.RetryOverflow || state.Attempted > resilience.Attempts);
            var shaped = (state.Delayed ? "DI" : null, exhausted ? "URX" : null) switch
            {
                (null, null) => null,
                ({ } d, null) => d,
                (null, { } x) => x,
                (not null, not null) => "DI,URX",
            };
            if (shaped is not null)
            {
                response.Headers.TryAddWithoutValidation(ResponseFlagsHeader, shaped);
            }

            return WithResponseHeaders(response, state.Target, state.Route.Actions);
        }
        catch (NoEndpointException ex)
        {
            return Reject(request, HttpStatusCode.ServiceUnavailable, "UH", ex.Message);
        }
        finally
        {
            ReleaseReservation(state);
            if (state.Cluster is { } counters)
            {
                Interlocked.Decrement(ref counters._activeRequests);
            }

            request.RequestUri = state.Uri;
            if (state.HostChanged)
            {
                request.Headers.Remove("Host");
                if (state.OriginalHost is not null)
                {
                    request.Headers.TryAddWithoutValidation("Host", state.OriginalHost);
                }
            }

            state.Restore?.Restore(request);
            AttemptState.Return(state);
        }
    }

    private static HttpResponseMessage TimedOutReply(AttemptState state, TimeSpan after) => WithResponseHeaders(
        Reject(state.Request, HttpStatusCode.GatewayTimeout, "UT", new UpstreamTimeout(state.Route.Name, state.ServiceHost, after).Message),
        state.Target,
        state.Route.Actions);

    private async Task StartMirrorsAsync(AttemptState state, CancellationToken cancellationToken)
    {
        var request = state.Request;
        byte[]? body = null;
        foreach (var (mirror, percentage) in state.Route.Mirrors)
        {
            if (Random.Shared.NextDouble() * 100 < percentage)
            {
                // HttpContent is not thread-safe: the copy's body is read here, before the request is sent.
                body ??= request.Content is null ? [] : await request.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
                metrics?.Mirror(mirror.Host);
                StartMirror(request, body, mirror, state.Authority, state.PathAndQuery, state.Uri);
            }
        }
    }

    /// <summary>
    /// What follows the first attempt under the route's policy. The first attempt, the only one of almost every call,
    /// runs under one deadline (the per-try timeout or the route timeout, whichever is sooner) outside any pipeline;
    /// only an outcome the policy may retry enters Polly's retry pipeline, which takes it as its first attempt's
    /// outcome and decides from there (conditions, budget, backoff, per-try timeouts), while the route timeout keeps
    /// running over it. Completes synchronously when no retry follows.
    /// </summary>
    /// <remarks>
    /// Polly's async strategies keep their state on the heap for every call that does not complete synchronously (a
    /// network call never does): entering the pipeline only when a retry may follow keeps that cost, and its timers,
    /// off the path of the call that succeeds, with the retry semantics still Polly's alone. A timeout ends as a
    /// <see cref="TimeoutRejectedException"/> outcome, as Polly's timeout strategies end.
    /// </remarks>
    private ValueTask<Outcome<HttpResponseMessage>> AfterFirstAttempt(AttemptState state, RouteResilience resilience, Outcome<HttpResponseMessage> outcome, CallDeadline? deadline, long started, CancellationToken callerToken)
    {
        if (deadline is { } first && outcome.Exception is OperationCanceledException && first.Passed(callerToken))
        {
            if (!resilience.PerTryFirst)
            {
                return new(TimedOut(resilience.Timeout!.Value));
            }

            outcome = TimedOut(resilience.PerTryTimeout!.Value);
        }

        if (callerToken.IsCancellationRequested || !resilience.MayRetry(state, outcome))
        {
            return new(outcome);
        }

        if (resilience.Timeout is not { } route)
        {
            return RetryAsync(state, resilience, outcome, callerToken);
        }

        // Retries run under what is left of the route timeout: the first deadline moved there when it has not fired.
        var left = route - provider.Runtime.Time.GetElapsedTime(started);
        if (left <= TimeSpan.Zero)
        {
            outcome.Result?.Dispose();
            return new(TimedOut(route));
        }

        return deadline is { } unfired && unfired.TryMove(left)
            ? RetryUntilAsync(state, resilience, outcome, unfired, route, callerToken, owned: false)
            : RetryUntilAsync(state, resilience, outcome, CallDeadline.Start(left, callerToken, provider.Runtime.Time), route, callerToken, owned: true);
    }

    /// <summary>The retries under the route timeout's deadline; a cancellation by that deadline ends as the route's timeout.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Outcome<HttpResponseMessage>> RetryUntilAsync(AttemptState state, RouteResilience resilience, Outcome<HttpResponseMessage> first, CallDeadline deadline, TimeSpan route, CancellationToken callerToken, bool owned)
    {
        try
        {
            var retried = await RetryAsync(state, resilience, first, deadline.Token).ConfigureAwait(false);
            return retried.Exception is OperationCanceledException && deadline.Passed(callerToken) ? TimedOut(route) : retried;
        }
        finally
        {
            if (owned)
            {
                deadline.End();
            }
        }
    }

    private static Outcome<HttpResponseMessage> TimedOut(TimeSpan after) =>
        Outcome.FromException<HttpResponseMessage>(new TimeoutRejectedException($"The operation didn't complete within the allowed timeout of '{after}'.", after));

    /// <summary>Polly's retry pipeline from a first outcome already in hand: its first "attempt" hands that outcome over.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Outcome<HttpResponseMessage>> RetryAsync(AttemptState state, RouteResilience resilience, Outcome<HttpResponseMessage> first, CancellationToken cancellationToken)
    {
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(RouteResilience.StateKey, state);
        state.PendingOutcome = first;
        state.HasPendingOutcome = true;
        try
        {
            // The outcome form: no exception-to-outcome wrapper around the pipeline, and a timeout is read, not caught.
            return await resilience.Pipeline.ExecuteOutcomeAsync(
                static (ctx, handler) =>
                {
                    var s = ctx.Properties.GetValue(RouteResilience.StateKey, null!);
                    if (s.HasPendingOutcome)
                    {
                        s.HasPendingOutcome = false;
                        return new ValueTask<Outcome<HttpResponseMessage>>(s.PendingOutcome);
                    }

                    return handler.SendAttemptAsync(s, ctx.CancellationToken);
                },
                context,
                this).ConfigureAwait(false);
        }
        finally
        {
            state.HasPendingOutcome = false;
            state.PendingOutcome = default;
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private static HttpResponseMessage Unwrap(Outcome<HttpResponseMessage> outcome)
    {
        outcome.ThrowIfException();
        return outcome.Result!;
    }

    // A retry decided but never sent (the caller gave up during its backoff) no longer counts as in flight.
    private static void ReleaseReservation(AttemptState state)
    {
        if (state.RetryReserved && state.Cluster is not null)
        {
            state.RetryReserved = false;
            Interlocked.Decrement(ref state.Cluster._activeRetries);
        }
    }

    /// <summary>
    /// Mutual TLS when the workload has a mesh identity and the endpoint has one too (automatic mutual TLS), unless
    /// the endpoint's policy or the DestinationRule disables it; ISTIO_MUTUAL refuses an endpoint without identity
    /// rather than fall back to plain text. The expected identity goes with the request for secure naming. Null: the
    /// client's own handler.
    /// </summary>
    private HttpMessageInvoker? InvokerFor(AttemptState state, EndpointView endpoint)
    {
        // A pool a newer config retired takes no new requests: a later attempt of this call (a retry) goes to the one
        // that took its place, as Envoy's retries go to the cluster as it is now.
        state.Transport = ClusterTransports.Transport.InService(state.Transport);
        return InvokerFor(state.Transport, state.TlsMode, endpoint, state.Port, state.Request);
    }

    private HttpMessageInvoker? InvokerFor(ClusterTransports.Transport? transport, string tlsMode, EndpointView endpoint, uint port, HttpRequestMessage request)
    {
        // TLS origination (SIMPLE, MUTUAL) is the cluster's own pool; the rule says so, not the endpoint.
        if (tlsMode is "SIMPLE" or "MUTUAL")
        {
            return transport?.Invoker ?? throw new HttpRequestException(HttpRequestError.SecureConnectionError, $"{tlsMode} TLS has no connection pool for this call (the DestinationRule's TLS origination was removed while the call was in flight, or this workload builds snapshots without a runtime)");
        }

        var mesh = tlsMode == "DISABLE" ? null : provider.Runtime.Transports.Mesh;
        if (mesh is not null && (tlsMode == "ISTIO_MUTUAL" ? endpoint.MtlsPossible(port) : endpoint.MtlsOn(port)))
        {
            var pool = transport ?? mesh;
            if (endpoint.TargetPortFor(port) is not { } targetPort)
            {
                throw new HttpRequestException(HttpRequestError.SecureConnectionError, $"endpoint {endpoint.Address} has no port {port}");
            }

            pool.Expect(endpoint.Address, targetPort, endpoint.ExpectedPeer);

            // Only a peer whose identity is verified learns who calls (and is believed about itself in return). The
            // server's metadata back only when this side records it and does not hold it yet (an instance's metadata
            // is fixed: learned from its first answer, then remembered): a header less to write and parse per call.
            var told = RecordsPeers && endpoint.AnsweredMetadata is null ? Self.Encoded : Self.EncodedWithoutReply;
            if (!request.Headers.NonValidated.TryGetValues(PeerMetadata.Header, out var sent) || !ReferenceEquals(sent.ToString(), told))
            {
                // A retry to another endpoint may ask where the first attempt did not (or the reverse).
                request.Headers.Remove(PeerMetadata.Header);
                request.Headers.TryAddWithoutValidation(PeerMetadata.Header, told);
            }

            return pool.MutualTls;
        }

        if (mesh is not null && request.Headers.NonValidated.Contains(PeerMetadata.Header))
        {
            request.Headers.Remove(PeerMetadata.Header); // a retry to a plain-text endpoint
        }


        if (tlsMode == "ISTIO_MUTUAL")
        {
            throw new HttpRequestException(HttpRequestError.SecureConnectionError, mesh is null
                ? "ISTIO_MUTUAL: this workload has no mesh certificate"
                : $"ISTIO_MUTUAL: endpoint {endpoint.Address} has no mesh identity (or disables mutual TLS on port {port})");
        }

        return transport?.Invoker;
    }

    /// <summary>One attempt: an endpoint not tried yet when there is one (Envoy's previous_hosts), then the send.</summary>
    /// <remarks>
    /// Polly's outcome form: a failure comes back as an outcome, not thrown, so that the pipeline runs without its
    /// exception-to-outcome wrapper around the callback (one async layer less per attempt).
    /// </remarks>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Outcome<HttpResponseMessage>> SendAttemptAsync(AttemptState state, CancellationToken cancellationToken)
    {
        try
        {
            if (state.Passthrough)
            {
                return await SendPassthroughAttemptAsync(state, cancellationToken).ConfigureAwait(false);
            }

            // A session's endpoint first, while it is there and healthy (Envoy's stateful session); a retry goes where
            // the balancer picks.
            EndpointView? endpoint = null;
            if (state.Attempted == 0 && state.Pinned is { } pinned)
            {
                endpoint = state.Endpoints.Pinned(pinned, state.Port);
            }

            for (var i = 0; i < 5 && endpoint is null; i++)
            {
                var picked = state.Endpoints.Pick(state.Request, state.Uri, out var setCookie);
                state.SetCookie ??= setCookie;
                if (picked is null || !state.AvoidTried || !state.Tried.Contains(picked) || i == 4)
                {
                    endpoint = picked;
                    break;
                }
            }

            if (endpoint is not null && state.RetryRemoteLocalities && state.Tried.Contains(endpoint))
            {
                endpoint = state.Endpoints.PickUntried(state.Tried) ?? endpoint;
            }

            var authority = endpoint?.AuthorityFor(state.Port);
            if (endpoint is null || authority is null)
            {
                throw new NoEndpointException($"no healthy upstream for port {state.Port}");
            }

            if (state.Attempted++ > 0)
            {
                metrics?.Retry(state.Uri.IdnHost);
            }

            state.ServedBy = authority;
            if (!state.Headers.AttemptCountDisabled)
            {
                ProxyHeaderValues.Set(state.Request.Headers, ProxyHeaderValues.AttemptCount, ProxyHeaderValues.Text(state.Attempted));
            }

            state.Tried.Add(endpoint);
            using var activity = provider.Current.SpansOff ? null : MeshActivity.Source.StartActivity("MeshKit attempt", ActivityKind.Internal);
            if (activity is not null)
            {
                activity.SetTag("meshkit.attempt", state.Attempted);
                activity.SetTag("server.address", authority);
                MeshActivity.AddB3(state.Request, activity);
            }

            var invoker = InvokerFor(state, endpoint);
            state.Request.RequestUri = endpoint.UriFor(state.Uri.Scheme, authority, state.PathAndQuery);
            Interlocked.Increment(ref endpoint.Recent.Active);
            var reserved = state.RetryReserved;
            state.RetryReserved = false;

            var outlier = state.Endpoints.Outlier;
            var version = state.Request.Version;
            var policy = state.Request.VersionPolicy;
            var sentAt = state.Headers.EnvoyDebugHeadersDisabled ? 0 : provider.Runtime.Time.GetTimestamp();
            try
            {
                HttpResponseMessage response;
                if (invoker is not null)
                {
                    var transport = state.Transport;
                    if (transport is not null && transport.UpgradeToHttp2 && version < System.Net.HttpVersion.Version20)
                    {
                        state.Request.Version = System.Net.HttpVersion.Version20;
                        state.Request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
                    }

                    var close = transport is not null && transport.CloseAfterRequest && state.Request.Version < System.Net.HttpVersion.Version20 && state.Request.Headers.ConnectionClose != true;
                    if (close)
                    {
                        state.Request.Headers.ConnectionClose = true;
                    }

                    try
                    {
                        response = await invoker.SendAsync(state.Request, cancellationToken).ConfigureAwait(false);
                    }
                    catch (ObjectDisposedException) when (transport is { Retired: true })
                    {
                        // Retired between the choice above and the send (a disposed pool refuses before sending
                        // anything): the pool that took its place sends it.
                        response = await (InvokerFor(state, endpoint) is { } next
                            ? next.SendAsync(state.Request, cancellationToken)
                            : base.SendAsync(state.Request, cancellationToken)).ConfigureAwait(false);
                    }
                    finally
                    {
                        if (close)
                        {
                            state.Request.Headers.ConnectionClose = null;
                        }
                    }
                }
                else
                {
                    response = await base.SendAsync(state.Request, cancellationToken).ConfigureAwait(false);
                }

                WithoutUpstreamFlags(response);
                if (sentAt != 0)
                {
                    ServiceTime(response, sentAt);
                }

                // The server's metadata is believed when mutual TLS verified who it is; the header never reaches the app.
                // Only metrics and the access log read it: without them it is not parsed.
                if (state.Request.Headers.NonValidated.Contains(PeerMetadata.Header) && RecordsPeers)
                {
                    // Told in the answer when asked; else what the endpoint told before (it was not asked because it had).
                    var told = response.Headers.NonValidated.TryGetValues(PeerMetadata.Header, out var peer)
                        ? PeerMetadata.Parse(peer.ToString(), ref endpoint.Recent.AnsweredMetadata)
                        : endpoint.AnsweredMetadata;
                    if (told is not null && endpoint.IdentityNamespace != told.Namespace)
                    {
                        told = null; // not what the certificate backs
                    }

                    state.Answer?.Set(endpoint.Identity, told ?? endpoint.Described(state.Target.Host), state.Target.Host);
                }
                else
                {
                    // No metadata told (plain text): what the control plane says of the endpoint, as Istio's caller
                    // falls back to the endpoint's metadata; this also replaces an earlier attempt's answer.
                    state.Answer?.Set(null, endpoint.Described(state.Target.Host), state.Target.Host);
                }

                if (response.Headers.NonValidated.Contains(PeerMetadata.Header))
                {
                    response.Headers.Remove(PeerMetadata.Header);
                }

                if (outlier is not null && endpoint.Health is { } health)
                {
                    var status = (int)response.StatusCode;
                    if (health.Record(
                        status is 502 or 503 or 504 ? AttemptResult.GatewayError : status >= 500 ? AttemptResult.ServerError : AttemptResult.Success,
                        outlier,
                        provider.Runtime.Time.GetUtcNow()))
                    {
                        metrics?.Ejection(state.Uri.IdnHost);
                    }
                }

                return Outcome.FromResult(response);
            }
            catch (Exception ex) when (outlier is not null && endpoint.Health is { } health && ex is HttpRequestException or IOException or OperationCanceledException)
            {
                if (state.CallerToken.IsCancellationRequested)
                {
                    health.Abandon();
                }
                else if (health.Record(AttemptResult.LocalOriginFailure, outlier, provider.Runtime.Time.GetUtcNow()))
                {
                    metrics?.Ejection(state.Uri.IdnHost);
                }

                throw;
            }
            finally
            {
                state.Request.Version = version;
                state.Request.VersionPolicy = policy;
                Interlocked.Decrement(ref endpoint.Recent.Active);
                if (reserved && state.Cluster is not null)
                {
                    Interlocked.Decrement(ref state.Cluster._activeRetries);
                }
            }
        }
        catch (Exception ex)
        {
            return Outcome.FromException<HttpResponseMessage>(ex);
        }
    }

    /// <summary>
    /// One attempt to the host the caller named (a ServiceEntry with resolution NONE, or the PASSTHROUGH load
    /// balancer: Envoy's original-destination cluster), through the client's own handler. The route's timeout and
    /// retries govern it as any other call; there is no endpoint to pick, avoid on a retry, or eject.
    /// </summary>
    private async Task<Outcome<HttpResponseMessage>> SendPassthroughAttemptAsync(AttemptState state, CancellationToken cancellationToken)
    {
        if (state.Attempted++ > 0)
        {
            metrics?.Retry(state.Uri.IdnHost);
        }

        var reserved = state.RetryReserved;
        state.RetryReserved = false;
        try
        {
            state.Request.RequestUri = state.Route.Actions.RewritesPath ? new Uri(state.Uri, state.PathAndQuery) : state.Uri;
            return Outcome.FromResult(await SendUpstreamAsync(state.Request, state.Headers, state.Attempted, cancellationToken).ConfigureAwait(false));
        }
        finally
        {
            if (reserved && state.Cluster is not null)
            {
                Interlocked.Decrement(ref state.Cluster._activeRetries);
            }
        }
    }

    /// <summary>
    /// Makes the body sendable again (for retries and mirrors): bodies already in memory are; others are buffered
    /// when their declared length is within the limit. An unsized or larger body is sent once.
    /// </summary>
    private async ValueTask<bool> TryMakeReplayableAsync(HttpContent content, CancellationToken cancellationToken)
    {
        if (content is ByteArrayContent or ReadOnlyMemoryContent or FormUrlEncodedContent)
        {
            return true;
        }

        if (content.Headers.ContentLength is { } length && length <= provider.MaxRetryBufferBytes)
        {
            await content.LoadIntoBufferAsync(provider.MaxRetryBufferBytes, cancellationToken).ConfigureAwait(false);
            return true;
        }

        return false;
    }

    // Fire and forget: the copy's outcome never reaches the caller; its host is the original one with "-shadow".
    // The copy is built here, on the caller's thread, so nothing of the original request is touched concurrently.
    private void StartMirror(HttpRequestMessage request, byte[] body, RouteTarget mirror, string host, string pathAndQuery, Uri uri)
    {
        var port = SelectPort(mirror, uri);
        var destination = mirror.Endpoints?.ForPort(port);
        var endpoint = destination?.Pick();
        var authority = endpoint?.AuthorityFor(port);
        if (endpoint is null || authority is null)
        {
            return;
        }

        var colon = host.LastIndexOf(':');
        var shadowHost = colon > 0 && !host.EndsWith(']') ? string.Concat(host.AsSpan(0, colon), "-shadow", host.AsSpan(colon)) : host + "-shadow";
        var copy = new HttpRequestMessage(request.Method, endpoint.UriFor(uri.Scheme, authority, pathAndQuery))
        {
            Version = request.Version,
            VersionPolicy = request.VersionPolicy,
        };
        foreach (var header in request.Headers.NonValidated)
        {
            if (!string.Equals(header.Key, "Host", StringComparison.OrdinalIgnoreCase))
            {
                copy.Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }

        copy.Headers.TryAddWithoutValidation("Host", shadowHost);
        if (request.Content is not null)
        {
            copy.Content = new ByteArrayContent(body);
            foreach (var header in request.Content.Headers.NonValidated)
            {
                copy.Content.Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }

        _ = Task.Run(async () =>
        {
            using (copy)
            {
                try
                {
                    // The copy goes the way a request to that endpoint would: mutual TLS, TLS origination or plain.
                    var invoker = InvokerFor(ClusterTransports.Transport.InService(destination!.Upstream.Transport), destination.Upstream.TlsMode, endpoint, port, copy);
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30), provider.Runtime.Time);
                    using var response = invoker is not null
                        ? await invoker.SendAsync(copy, timeout.Token).ConfigureAwait(false)
                        : await base.SendAsync(copy, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException or InvalidOperationException)
                {
                    // A mirror's failure is never the caller's.
                }
            }
        });
    }

    private static HttpResponseMessage Abort(HttpRequestMessage request, FaultPlan fault, bool delayed)
    {
        var flags = delayed ? "DI,FI" : "FI";
        if (fault.GrpcStatus is { } grpc)
        {
            var response = new HttpResponseMessage(HttpStatusCode.OK) { RequestMessage = request, Version = request.Version, Content = new ByteArrayContent([]) };
            response.Content.Headers.TryAddWithoutValidation("Content-Type", "application/grpc");
            response.Headers.TryAddWithoutValidation("grpc-status", grpc.ToString(System.Globalization.CultureInfo.InvariantCulture));
            response.Headers.TryAddWithoutValidation("grpc-message", "fault%20filter%20abort");
            response.Headers.TryAddWithoutValidation(ResponseFlagsHeader, flags);
            return response;
        }

        var local = new HttpResponseMessage(fault.AbortStatus) { RequestMessage = request, Content = new StringContent("fault filter abort") };
        local.Headers.TryAddWithoutValidation(ResponseFlagsHeader, flags);
        return LocalReply.ForGrpc(local);
    }

    private static string NoHealthyUpstream(RouteTarget target, uint port) =>
        $"no healthy upstream for '{target.Host}'{(target.Subset.Length > 0 ? $" subset '{target.Subset}'" : string.Empty)} port {port}";

    private sealed class NoEndpointException(string message) : Exception(message);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "{Method} {Host}{Path} route={Route} upstream={Upstream} {Status} {Flags} {DurationMs:F1} ms sent={RequestBytes} received={ResponseBytes} peer={Peer} trace={TraceId} id={RequestId}", EventName = "AccessLog")]
        public static partial void Access(ILogger logger, string method, string host, string path, string route, string upstream, int status, string flags, double durationMs, long requestBytes, long responseBytes, string peer, string traceId, string requestId);
    }

    // Destination edits first, then the route's: on a conflict the route wins.
    private static HttpResponseMessage WithResponseHeaders(HttpResponseMessage response, RouteTarget? target, RouteActions actions)
    {
        target?.ResponseHeaders?.Apply(response.Headers, response.Content?.Headers);
        actions.ResponseHeaders?.Apply(response.Headers, response.Content?.Headers);
        return response;
    }

    // The destination's port if set; else the request's port when the service has it; else the service's only port.
    // The service port a call goes to: the URL's when the service has it, else the service's only port (0: neither).
    private static int ServicePortOf(uint[] ports, int urlPort)
    {
        foreach (var port in ports)
        {
            if (port == (uint)urlPort)
            {
                return urlPort;
            }
        }

        return ports.Length == 1 ? (int)ports[0] : 0;
    }

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
