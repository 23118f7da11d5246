using System.Diagnostics;
using MeshKit.Snapshot;
using MeshKit.Telemetry;

namespace MeshKit.Http;

// What the caller reports of a call: the access log, Istio's metrics as the source, and the call among the running streams.
internal sealed partial class MeshHandler
{
    /// <summary>One access-log entry for a call, unless the Telemetry API's filter leaves it out; status 0 when no response came.</summary>
    private void WriteAccessLog(HttpRequestMessage request, HttpResponseMessage? response, string destination, string flags, double elapsed, long requestBytes, long? responseBytes, string? principal)
    {
        var route = request.Options.TryGetValue(MeshActivity.RouteName, out var named) ? named : null;
        if (provider.Current.ClientAccessLogFilter is { } filter
            && !Telemetry.OutboundAttributes.Passes(filter, request, response, destination, elapsed, requestBytes, responseBytes, route, principal))
        {
            return;
        }

        Log.Access(
            accessLog!,
            request.Method.Method,
            destination,
            request.RequestUri?.PathAndQuery ?? string.Empty,
            route ?? "-",
            request.RequestUri?.Authority ?? string.Empty,
            response is null ? 0 : (int)response.StatusCode,
            flags.Length == 0 ? "-" : flags,
            elapsed,
            requestBytes,
            responseBytes ?? -1,
            principal ?? "-",
            Activity.Current?.TraceId.ToHexString() ?? "-",
            RequestId.Of(request));
    }

    /// <summary>The call's per-route metrics (its route's <c>statPrefix</c>); status 0 when no response came.</summary>
    private void ReportRoute(string statPrefix, string destination, int status, string flags, double milliseconds) =>
        metrics!.RouteRequest(statPrefix, destination, status, flags, milliseconds);

    /// <summary>The caller's side of Istio's standard metrics (<c>reporter="source"</c>).</summary>
    private void ReportAsSource(HttpRequestMessage request, HttpResponseMessage? response, string destination, string flags, long requestBytes, long requestMessages, long? responseBytes, long responseMessages, double milliseconds, string? principal, PeerMetadata? answered, string? routedTo)
    {
        var snapshot = provider.Current;
        var (service, unknown) = DestinationOf(snapshot, destination, routedTo);
        var grpc = IsGrpc(request);
        string? grpcStatus = null;
        if (grpc && response is not null)
        {
            grpcStatus = GrpcStatusLabel.Share(response.Headers.NonValidated.TryGetValues("grpc-status", out var status) ? status.ToString()
                : response.TrailingHeaders.NonValidated.TryGetValues("grpc-status", out var trailer) ? trailer.ToString() : null);
        }

        istio!.Record(new RequestReport(
            "source",
            Self,
            identity?.Current?.IdText,
            answered ?? unknown,
            principal,
            service,
            grpc ? "grpc" : "http",
            response is null ? 0 : (int)response.StatusCode,
            grpcStatus,
            flags,
            "unknown",
            milliseconds,
            requestBytes,
            responseBytes ?? 0,
            snapshot.Reports,
            metrics?.RequestsEnabled == true ? metrics : null,
            destination,
            snapshot.Reports?.Client is { HasValues: true } side
                ? Telemetry.OutboundAttributes.Values(side, request, response, destination, milliseconds, requestBytes, responseBytes, request.Options.TryGetValue(MeshActivity.RouteName, out var route) ? route : null, principal)
                : null,
            requestMessages,
            responseMessages));
    }

    // The destination service is the one the call was routed to, as Istio reports the upstream cluster's service.
    private static (string Service, PeerMetadata Unknown) DestinationOf(MeshSnapshot snapshot, string destination, string? routedTo) =>
        snapshot.TryResolve(routedTo ?? destination, out var view) ? (view.Host, view.UnknownPeer) : UnresolvedPeer.Of(destination, snapshot.RegistryOnly);

    /// <summary>
    /// The caller's labels of a running gRPC call's message counters (the peers', no outcome); null under a Telemetry
    /// policy that gives labels values, which are the finished call's. Made at each sweep the call outlives, with the
    /// config in force then: a unary call, over long before, never needs them, and a long call pins no old config.
    /// </summary>
    private RequestReport? StreamPeers(string destination, string? principal, PeerMetadata? answered, string? routedTo)
    {
        var snapshot = provider.Current;
        if (snapshot.Reports?.Client.HasValues == true)
        {
            return null;
        }

        var (service, unknown) = DestinationOf(snapshot, destination, routedTo);
        return new RequestReport("source", Self, identity?.Current?.IdText, answered ?? unknown, principal, service, "grpc", 0, null, string.Empty, "unknown", 0, 0, 0, snapshot.Reports);
    }

    private double Elapsed(long started) => provider.Runtime.Time.GetElapsedTime(started).TotalMilliseconds;

    private static bool IsGrpc(HttpRequestMessage request) =>
        request.Content?.Headers.ContentType?.MediaType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>
    /// The caller's report, access-log entry and per-route metrics of a call whose body was still to come, made when the body ends:
    /// the duration to its end, its bytes, and the flag of what cut it (<c>UT</c>: the route timeout; <c>DC</c>: the
    /// application gave the body up before its end). Reused per thread: a body ends once, and nothing holds the
    /// report after it has been made.
    /// </summary>
    private sealed class ReportAtEnd : BodyEnd
    {
        private MeshHandler? _handler;
        private HttpRequestMessage? _request;
        private HttpResponseMessage? _response;
        private string _destination = string.Empty;
        private string _flags = string.Empty;
        private long _requestBytes;
        private CountedContent? _counted;
        private CallerStream? _live;
        private long _started;
        private string? _principal;
        private PeerMetadata? _answered;
        private string? _routedTo;
        private string? _statPrefix;
        private bool _reportIstio;
        private bool _log;

        public static ReportAtEnd Rent(MeshHandler handler, HttpRequestMessage request, HttpResponseMessage response, string destination, string flags, long requestBytes, CountedContent? counted, CallerStream? live, long started, Answer? answer, bool reportIstio, bool log)
        {
            var report = PerThread<ReportAtEnd>.Rent();
            report._handler = handler;
            report._request = request;
            report._response = response;
            report._destination = destination;
            report._flags = flags;
            report._requestBytes = requestBytes;
            report._counted = counted;
            report._live = live;
            report._started = started;
            report._principal = answer?.Principal;
            report._answered = answer?.Metadata;
            report._routedTo = answer?.RoutedTo;
            report._statPrefix = answer?.StatPrefix;
            report._reportIstio = reportIstio;
            report._log = log;
            return report;
        }

        public override void Ended(long bytes, long messages, bool complete, bool timedOut)
        {
            var handler = _handler!;
            var request = _request!;
            var response = _response!;
            var elapsed = handler.Elapsed(_started);
            var cut = timedOut ? "UT" : "DC";
            var ended = complete ? _flags : _flags.Length == 0 ? cut : _flags + "," + cut; // Envoy joins flags with commas
            var sent = _counted?.Sent ?? _requestBytes;
            if (_reportIstio)
            {
                var (requestMessages, responseMessages) = _live?.Remainder() ?? default; // a gRPC call's, less what was added while it ran
                handler.ReportAsSource(request, response, _destination, ended, sent, requestMessages, bytes, responseMessages, elapsed, _principal, _answered, _routedTo);
            }

            if (_log)
            {
                handler.WriteAccessLog(request, response, _destination, ended, elapsed, sent, bytes, _principal);
            }

            if (_statPrefix is { } statPrefix)
            {
                handler.ReportRoute(statPrefix, _destination, (int)response.StatusCode, ended, elapsed);
            }

            _handler = null;
            _request = null;
            _response = null;
            _counted = null;
            _live = null;
            _principal = _routedTo = _statPrefix = null;
            _answered = null;
            PerThread<ReportAtEnd>.Return(this);
        }
    }

    /// <summary>A gRPC call: its messages, as its bodies count them, and the labels they are added with.</summary>
    private sealed class CallerStream(MeshHandler caller, string destination) : LiveStream
    {
        private string? _principal;
        private PeerMetadata? _answered;
        private string? _routedTo;

        /// <summary>Who answered: set before the stream joins the running ones, which publishes it to the sweeps.</summary>
        public void Answered(string? principal, PeerMetadata? answered, string? routedTo)
        {
            _principal = principal;
            _answered = answered;
            _routedTo = routedTo;
        }

        // Asked only by a sweep the call outlives (the report is a large struct: not kept in every call's entry).
        public override RequestReport? Describe() => caller.StreamPeers(destination, _principal, _answered, _routedTo);
    }
}
