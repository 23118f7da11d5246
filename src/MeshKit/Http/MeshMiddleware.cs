using MeshKit.Routing;
using MeshKit.Snapshot;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;

namespace MeshKit.Http;

/// <summary>
/// The inbound side of the mesh. Identity headers are set by the mesh alone: any a client sends (a forwarded client
/// certificate, any <c>x-meshkit-</c> header) is removed before the application or policy can read it. Then the
/// <c>corsPolicy</c> of the route the request matches on this workload's own service is applied, as Envoy's CORS filter
/// does at the destination. Under STRICT mutual TLS a request without a verified peer is refused.
/// </summary>
internal sealed partial class MeshMiddleware(RequestDelegate next, MeshSnapshotProvider provider, Security.WorkloadIdentity identity, TimeProvider time, ILogger<MeshMiddleware> logger, Telemetry.IstioMetrics istio, Sync.WorkloadAnnouncer announcer, ILoggerFactory loggers, Microsoft.Extensions.Options.IOptions<MeshOptions> options, Security.ExtAuthzClient extAuthz, Microsoft.Extensions.DependencyInjection.MeshMarkerService marker)
{
    private readonly Microsoft.Extensions.DependencyInjection.MeshMarkerService _marker = marker.MiddlewareMade();
    private readonly ILogger _accessLog = loggers.CreateLogger(MeshHandler.AccessLogCategory);
    private readonly double _sampling = options.Value.AccessLogSampling;
    private readonly bool _generateRequestId = options.Value.GenerateRequestId;
    private readonly int _trustedProxies = options.Value.NumTrustedProxies;
    private readonly bool _readsProxyProtocol = options.Value.ProxyProtocolFrom.Count > 0;
    private bool _hookMissingReported;

    private Telemetry.PeerMetadata? _self;

    // One delegate for every response (the context is its state): no closure per request.
    private Func<object, Task>? _writePeerMetadata;

    private Telemetry.PeerMetadata Self => _self ??= Telemetry.PeerMetadata.ForWorkload(announcer.Source.Service, announcer.Source.Namespace, announcer.Source.Labels);

    internal const string ForwardedClientCertHeader = "x-forwarded-client-cert";

    /// <summary>
    /// The headers a client could send to claim something only the mesh may say: the forwarded client certificate and
    /// every header MeshKit itself writes (a test fails when a new <c>x-meshkit-</c> header is missing here). A fixed
    /// list, as Envoy sanitizes a fixed list of its <c>x-envoy-</c> headers: removing by name is a lookup each, where
    /// finding every name with the prefix enumerates the request's headers (Kestrel boxes the enumerator per request).
    /// </summary>
    internal static readonly string[] SpoofableHeaders = [ForwardedClientCertHeader, Telemetry.PeerMetadata.Header, MeshHandler.ResponseFlagsHeader];

    public Task InvokeAsync(HttpContext context)
    {
        // AddMesh() puts this middleware first, and an app may add it again with UseMesh(): one pass per request. A
        // feature marks the pass (Kestrel keeps extra features in a list it reuses per connection; Items would
        // allocate a dictionary per request), when the app holds more than one mesh middleware: a lookup by type
        // that finds nothing walks every feature the server knows, and the connection's.
        if (_marker.SeveralMiddlewares)
        {
            if (context.Features.Get<MeshPass>() is not null)
            {
                return next(context);
            }

            context.Features.Set(MeshPass.Instance);
        }

        // Read before the spoofable headers go: believed below only if mutual TLS backs the caller.
        var toldMetadata = context.Request.Headers[Telemetry.PeerMetadata.Header].ToString();
        StripSpoofableHeaders(context.Request.Headers);
        var snapshot = provider.Current;
        if (_generateRequestId && !snapshot.ProxyHeaders.RequestIdDisabled)
        {
            // A caller outside the mesh (or one that does not generate ids) sent none: the application gets one.
            RequestId.EnsureOn(context.Request.Headers);
        }

        // Connections are checked when they open; a policy that became STRICT since then is enforced per request.
        // The peer is looked up once (a connection item: a feature lookup and a keyed read).
        Security.VerifiedPeer? peer = null;
        if (identity.Enabled && !Security.MeshPeer.TryOf(context, out peer) && !_hookMissingReported)
        {
            // Kestrel keeps one endpoint-defaults action: an application's own replaced MeshKit's mutual TLS hook.
            _hookMissingReported = true;
            Log.HookMissing(logger, context.Connection.LocalPort);
        }

        if (identity.Enabled && peer is null
            && Security.InboundTlsSetup.ModeOn(snapshot.PeerAuthentication, context.Connection.LocalPort) == Protocol.V1.MtlsMode.Strict)
        {
            context.Abort();
            return Task.CompletedTask;
        }

        // One path for policy and the application: normalized once, here; what cannot be normalized safely is refused.
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (raw is not null && !Security.PathNormalizer.IsAcceptable(raw))
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return Task.CompletedTask;
        }

        var path = context.Request.Path.Value ?? string.Empty;
        var normalized = Security.PathNormalizer.Normalize(path, snapshot.PathNormalization);
        if (!ReferenceEquals(normalized, path) && normalized != path)
        {
            context.Request.Path = new PathString(normalized);
        }

        if (identity.Enabled)
        {
            // The scheme is the connection's, not the client's claim (alternate schemes are allowed for mesh callers).
            context.Request.Scheme = context.Features.Get<ITlsConnectionFeature>() is null ? "http" : "https";
            if (peer?.ForwardedClientCert is { } forwarded && !snapshot.ProxyHeaders.ForwardedClientCertDisabled)
            {
                // As an Istio sidecar tells its application who called over mutual TLS; whatever the client sent was
                // removed above (Envoy's SANITIZE_SET: only the mesh's own element reaches the application).
                context.Request.Headers[ForwardedClientCertHeader] = forwarded;
            }

            if (peer is not null && Telemetry.PeerMetadata.WantsReply(toldMetadata))
            {
                // A verified caller learns who answered (Istio's peer metadata exchange), unless it said it records nothing.
                context.Response.OnStarting(_writePeerMetadata ??= state =>
                {
                    ((HttpContext)state).Response.Headers[Telemetry.PeerMetadata.Header] = Self.Encoded;
                    return Task.CompletedTask;
                }, context);
            }
        }

        var log = !snapshot.ServerAccessLogOff && _accessLog.IsEnabled(LogLevel.Information) && (_sampling >= 1.0 || (_sampling > 0 && Random.Shared.NextDouble() < _sampling));
        if (istio.Enabled || log)
        {
            // Believed only as far as the certificate backs it: its namespace must be the identity's.
            var source = peer is { } verified && Telemetry.PeerMetadata.Parse(toldMetadata, ref verified.ToldMetadata) is { } told && told.Namespace == verified.Namespace ? told : null;
            return ReportAsDestinationAsync(context, snapshot, peer, source, log).AsTask();
        }

        return AfterIdentityAsync(context, snapshot, peer).AsTask();
    }

    /// <summary>
    /// The labels a served gRPC call's messages are added with while it runs; null under a Telemetry policy that gives
    /// labels values (those are the finished request's, so the messages wait for the call's end). Made at each sweep the
    /// call outlives, with the config in force then: a unary call, over long before, never needs them, and a long call
    /// pins no old config.
    /// </summary>
    internal Telemetry.RequestReport? StreamPeers(Security.VerifiedPeer? peer, Telemetry.PeerMetadata? source)
    {
        var snapshot = provider.Current;
        return snapshot.Reports?.Server.HasValues == true ? null : new Telemetry.RequestReport(
            "destination", source ?? Telemetry.PeerMetadata.Unknown, peer?.ToString(), Self, identity.Enabled ? identity.Current?.IdText : null,
            snapshot.OwnService?.Host ?? Self.Service, "grpc", 0, null, string.Empty, peer is not null ? "mutual_tls" : "none", 0, 0, 0, snapshot.Reports);
    }

    // The layers under InvokeAsync are pooled value tasks: when the application's handler completes asynchronously (a
    // gRPC call, any handler that awaits), their states are reused, and the Task the middleware must return is the only
    // object made for the request's wait.

    /// <summary>The server's side of Istio's standard metrics (<c>reporter="destination"</c>), around the rest of the pipeline.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReportAsDestinationAsync(HttpContext context, MeshSnapshot snapshot, Security.VerifiedPeer? peer, Telemetry.PeerMetadata? source, bool log)
    {
        var started = time.GetTimestamp();
        var status = 0;
        var flags = string.Empty;
        var grpc = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;
        ServedStream? live = null;
        if (grpc && istio.Enabled)
        {
            // A long stream's messages are added while it runs, with the peers' labels, known from the start.
            live = new ServedStream(this, peer, source);
            istio.Live.Add(live, snapshot.StreamReportingInterval);
        }

        var bodies = BodyMeter.Install(context, live);

        try
        {
            await AfterIdentityAsync(context, snapshot, peer).ConfigureAwait(false);
            status = context.Response.StatusCode;
            if (status >= 400 && context.Features.Get<ExternalDenial>() is not null)
            {
                flags = "UAEX"; // looked up only for a refusal: an allowed request pays nothing
            }
        }
        catch
        {
            // The caller went away before the response was done: Envoy's DC, with code 0 when no status was sent. Asked
            // only here: Kestrel makes the abort token under a lock on first read, a cost every request would pay.
            (status, flags) = context.RequestAborted.IsCancellationRequested ? (context.Response.HasStarted ? context.Response.StatusCode : 0, "DC") : (500, string.Empty);
            throw;
        }
        finally
        {
            // The mesh's own metrics endpoint is not a call of the mesh: a sidecar serves its stats off its listeners.
            if (istio.Stats is null || context.GetEndpoint()?.Metadata.GetMetadata<Telemetry.IstioStats.Scrape>() is null)
            {
                string? grpcStatus = null;
                if (grpc)
                {
                    grpcStatus = Telemetry.GrpcStatusLabel.Share(context.Response.Headers.TryGetValue("grpc-status", out var h) ? h.ToString()
                        : context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers.TryGetValue("grpc-status", out var t) == true ? t.ToString() : null);
                }

                var self = Self;
                var messages = live?.Remainder() ?? default;
                var elapsed = time.GetElapsedTime(started).TotalMilliseconds;
                var received = bodies.Received(context.Request);
                var sent = HttpMethods.IsHead(context.Request.Method) ? 0 : bodies.Sent; // a server sends no body for HEAD, whatever the application wrote
                if (log && (snapshot.ServerAccessLogFilter is not { } filter
                    || Telemetry.InboundAttributes.Passes(filter, context, status, elapsed, peer?.ToString(), received, sent)))
                {
                    Log.InboundAccess(
                        _accessLog,
                        context.Request.Method,
                        context.Request.Host.Value ?? string.Empty,
                        context.Request.Path.Value ?? string.Empty,
                        status,
                        flags.Length == 0 ? "-" : flags,
                        elapsed,
                        received,
                        sent,
                        peer?.ToString() ?? "-",
                        source?.Workload ?? "-",
                        ClientOf(context.Connection),
                        System.Diagnostics.Activity.Current?.TraceId.ToHexString() ?? "-",
                        RequestId.Of(context.Request.Headers));
                }

                istio.Record(new Telemetry.RequestReport(
                    "destination",
                    source ?? Telemetry.PeerMetadata.Unknown,
                    peer?.ToString(),
                    self,
                    identity.Enabled ? identity.Current?.IdText : null,
                    snapshot.OwnService?.Host ?? self.Service,
                    grpc ? "grpc" : "http",
                    status,
                    grpcStatus,
                    flags,
                    peer is not null ? "mutual_tls" : "none",
                    elapsed,
                    received,
                    sent,
                    snapshot.Reports,
                    Values: snapshot.Reports?.Server is { HasValues: true } side ? Telemetry.InboundAttributes.Values(side, context, status, elapsed, peer?.ToString(), received, sent) : null,
                    RequestMessages: messages.Requests,
                    ResponseMessages: messages.Responses));
            }
        }
    }

    private ValueTask AfterIdentityAsync(HttpContext context, MeshSnapshot snapshot, Security.VerifiedPeer? peer)
    {
        if (!snapshot.Jwt.IsEmpty || !snapshot.Authorization.IsEmpty)
        {
            return AuthenticateAndAuthorizeAsync(context, snapshot, peer);
        }

        Security.MeshIdentityFeature.Set(context, peer, null);
        return new ValueTask(ContinueAsync(context, snapshot));
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AuthenticateAndAuthorizeAsync(HttpContext context, MeshSnapshot snapshot, Security.VerifiedPeer? peer)
    {
        Security.RequestPrincipal? principal = null;
        if (!snapshot.Jwt.IsEmpty)
        {
            string? error;
            (principal, error) = await snapshot.Jwt.AuthenticateAsync(context, time.GetUtcNow()).ConfigureAwait(false);
            if (error is not null)
            {
                Log.JwtRefused(logger, context.Request.Method, context.Request.Path.Value ?? string.Empty, error);
                await RefuseAsync(context, StatusCodes.Status401Unauthorized, 16, error).ConfigureAwait(false);
                return;
            }
        }

        Security.MeshIdentityFeature.Set(context, peer, principal);
        if (!snapshot.Authorization.IsEmpty)
        {
            var request = Describe(context, peer, principal, _trustedProxies, _readsProxyProtocol);

            // CUSTOM first, as Istio orders them: a matching request goes to the external authorization service, whose
            // answer may also change the headers that DENY and ALLOW policies read next.
            if (snapshot.Authorization.HasCustom && snapshot.Authorization.MatchCustom(request) is { } custom)
            {
                Security.AuthorizationRequest.Return(request);
                if (!await extAuthz.CheckAsync(context, custom).ConfigureAwait(false))
                {
                    context.Features.Set(ExternalDenial.Instance); // Envoy's UAEX on this request's report and log entry
                    return;
                }

                request = Describe(context, peer, principal, _trustedProxies, _readsProxyProtocol);
            }

            var decision = snapshot.Authorization.Evaluate(request, snapshot.Authorization.HasReports ? ReporterFor(request) : null);
            if (!decision.Allowed)
            {
                Log.Denied(logger, request.Method, request.Path, request.SourcePrincipal ?? "-", decision.Policy ?? "no ALLOW policy matched");
            }

            Security.AuthorizationRequest.Return(request);
            if (!decision.Allowed)
            {
                await RefuseAsync(context, StatusCodes.Status403Forbidden, 7, "RBAC: access denied").ConfigureAwait(false);
                return;
            }
        }

        await ContinueAsync(context, snapshot).ConfigureAwait(false);
    }

    /// <summary>Envoy's <c>%DOWNSTREAM_REMOTE_ADDRESS%</c>: the client's address and port (a trusted load balancer's PROXY header's, when it sent one).</summary>
    private static string ClientOf(ConnectionInfo connection) =>
        connection.RemoteIpAddress is { } address ? new System.Net.IPEndPoint(Addresses.Plain(address), connection.RemotePort).ToString() : "-";

    /// <summary>The request as authorization sees it; give it back with <see cref="Security.AuthorizationRequest.Return"/> before awaiting.</summary>
    private static Security.AuthorizationRequest Describe(HttpContext context, Security.VerifiedPeer? peer, Security.RequestPrincipal? principal, int trustedProxies, bool readsProxyProtocol)
    {
        var request = Security.AuthorizationRequest.Rent();
        request.SourcePrincipal = peer?.Principal;
        request.SourceNamespace = peer?.Namespace;
        request.SourceServiceAccount = peer?.ServiceAccount;
        request.SourceIp = context.Connection.RemoteIpAddress;
        if (readsProxyProtocol && context.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items.TryGetValue(Security.ProxyProtocolReader.PeerItemKey, out var balancer) == true)
        {
            // The connection's remote address is the client a load balancer's PROXY header named; the peer is the balancer.
            request.ClientIp = request.SourceIp;
            request.SourceIp = (System.Net.IPAddress)balancer!;
        }

        request.TrustedProxies = trustedProxies;
        request.DestinationIp = context.Connection.LocalIpAddress;
        request.DestinationPort = context.Connection.LocalPort;
        request.ReadSniFrom(context.Features); // read only by a policy that asks for it
        request.Jwt = principal;
        request.Host = context.Request.Host.Value ?? string.Empty;
        request.Method = context.Request.Method;
        request.Path = context.Request.Path.Value ?? string.Empty;
        request.Headers = context.Request.Headers;
        return request;
    }

    // A method of its own: a lambda in the caller would capture the request in a closure made on every call.
    private Action<Security.AuthorizationEngine.CompiledPolicy> ReporterFor(Security.AuthorizationRequest request) => policy =>
        Log.Reported(logger, policy.DryRun ? "dry-run" : "AUDIT", policy.Action, policy.Name, request.Method, request.Path, request.SourcePrincipal ?? "-");

    /// <summary>A local reply: the status and Istio's text, or for gRPC a trailers-only response with the gRPC status.</summary>
    private static Task RefuseAsync(HttpContext context, int status, int grpcStatus, string message)
    {
        var response = context.Response;
        if (context.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true)
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/grpc";
            response.Headers["grpc-status"] = grpcStatus.ToString(System.Globalization.CultureInfo.InvariantCulture);
            response.Headers["grpc-message"] = Uri.EscapeDataString(message);
            return Task.CompletedTask;
        }

        response.StatusCode = status;
        if (status == StatusCodes.Status401Unauthorized)
        {
            response.Headers[HeaderNames.WWWAuthenticate] = "Bearer realm=\"mesh\"";
        }

        response.ContentType = "text/plain";
        return response.WriteAsync(message);
    }

    private Task ContinueAsync(HttpContext context, MeshSnapshot snapshot)
    {
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
            SetIfAny(response, HeaderNames.AccessControlAllowMethods, cors.EchoMethod ? Asked(request.Headers.AccessControlRequestMethod) : cors.AllowMethods);
            SetIfAny(response, HeaderNames.AccessControlAllowHeaders, cors.EchoHeaders ? Asked(request.Headers.AccessControlRequestHeaders) : cors.AllowHeaders);
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
                // The response's own headers, before the CORS ones join them.
                SetIfAny(response, HeaderNames.AccessControlExposeHeaders, cors.ExposeResponseHeaders ? Asked(string.Join(',', response.Headers.Keys)) : cors.ExposeHeaders);
                response.Headers[HeaderNames.AccessControlAllowOrigin] = origin;
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

    // What a preflight asks for (or the response's header names), or null when none: the answer then names none, as
    // Gateway API says.
    private static string? Asked(Microsoft.Extensions.Primitives.StringValues requested) =>
        requested.Count == 0 || string.IsNullOrWhiteSpace(requested.ToString()) ? null : requested.ToString();

    private static void SetIfAny(HttpResponse response, string name, string? value)
    {
        if (value is not null)
        {
            response.Headers[name] = value;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(5, LogLevel.Warning, "A request on port {Port} came over a connection MeshKit's mutual TLS hook never saw: mesh callers' TLS handshakes fail there. Kestrel keeps one endpoint-defaults action, and the application's ConfigureEndpointDefaults replaced MeshKit's; set per-endpoint options in Listen(...) calls instead", EventName = "MutualTlsHookMissing")]
        public static partial void HookMissing(ILogger logger, int port);

        [LoggerMessage(1, LogLevel.Information, "Denied {Method} {Path} from {Peer}: {Policy}", EventName = "AuthorizationDenied")]
        public static partial void Denied(ILogger logger, string method, string path, string peer, string policy);

        [LoggerMessage(2, LogLevel.Information, "{Kind} {Action} policy {Policy} matched {Method} {Path} from {Peer}", EventName = "AuthorizationReported")]
        public static partial void Reported(ILogger logger, string kind, string action, string policy, string method, string path, string peer);

        [LoggerMessage(4, LogLevel.Information, "inbound {Method} {Host}{Path} {Status} {Flags} {DurationMs:F1} ms received={RequestBytes} sent={ResponseBytes} peer={Peer} workload={PeerWorkload} client={Client} trace={TraceId} id={RequestId}", EventName = "InboundAccessLog")]
        public static partial void InboundAccess(ILogger logger, string method, string host, string path, int status, string flags, double durationMs, long requestBytes, long responseBytes, string peer, string peerWorkload, string client, string traceId, string requestId);

        [LoggerMessage(3, LogLevel.Information, "Refused the JWT of {Method} {Path}: {Error}", EventName = "JwtRefused")]
        public static partial void JwtRefused(ILogger logger, string method, string path, string error);
    }

    internal static void StripSpoofableHeaders(IHeaderDictionary headers)
    {
        foreach (var name in SpoofableHeaders)
        {
            headers.Remove(name);
        }
    }
}

/// <summary>Marks a request the external authorization service (a CUSTOM policy) refused, or could not be asked about.</summary>
internal sealed class ExternalDenial
{
    public static readonly ExternalDenial Instance = new();
}

/// <summary>Marks a request the mesh middleware has already processed.</summary>
internal sealed class MeshPass
{
    public static readonly MeshPass Instance = new();
}

/// <summary>A gRPC call being served: its messages, as the body meter counts them, and the labels they are added with.</summary>
internal sealed class ServedStream(MeshMiddleware server, Security.VerifiedPeer? peer, Telemetry.PeerMetadata? source) : Telemetry.LiveStream
{
    /// <summary>Gets or sets the memory the response's pipe writer lent for the next bytes, read when they are advanced.</summary>
    public Memory<byte> Lent { get; set; }

    // Asked only by a sweep the call outlives (the report is a large struct: not kept in every call's entry).
    public override Telemetry.RequestReport? Describe() => server.StreamPeers(peer, source);
}
