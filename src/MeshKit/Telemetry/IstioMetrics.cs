using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MeshKit.Telemetry;

/// <summary>One request as Istio's standard metrics describe it.</summary>
internal readonly record struct RequestReport(
    string Reporter,
    PeerMetadata Source,
    string? SourcePrincipal,
    PeerMetadata Destination,
    string? DestinationPrincipal,
    string DestinationService,
    string Protocol,
    int ResponseCode,
    string? GrpcStatus,
    string ResponseFlags,
    string ConnectionSecurityPolicy,
    double DurationMilliseconds,
    long RequestBytes,
    long ResponseBytes);

/// <summary>
/// Istio's standard metrics, with Istio's names and labels, so Kiali and Istio's Grafana dashboards work unchanged:
/// <c>istio_requests_total</c>, <c>istio_request_duration_milliseconds</c>, <c>istio_request_bytes</c>,
/// <c>istio_response_bytes</c>. Both sides of a call report: the caller as <c>reporter="source"</c>, the server as
/// <c>reporter="destination"</c>. Nothing is computed unless a listener is attached.
/// </summary>
internal sealed class IstioMetrics
{
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<long> _requestBytes;
    private readonly Histogram<long> _responseBytes;

    public IstioMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeshMetrics.MeterName);
        _requests = meter.CreateCounter<long>("istio_requests_total", description: "Requests, as Istio's standard metric.");
        _duration = meter.CreateHistogram<double>("istio_request_duration_milliseconds", "ms", "Request duration, as Istio's standard metric.");
        _requestBytes = meter.CreateHistogram<long>("istio_request_bytes", "By", "Request body size, as Istio's standard metric.");
        _responseBytes = meter.CreateHistogram<long>("istio_response_bytes", "By", "Response body size, as Istio's standard metric.");
    }

    public bool Enabled => _requests.Enabled || _duration.Enabled || _requestBytes.Enabled || _responseBytes.Enabled;

    public void Record(in RequestReport r)
    {
        if (!Enabled)
        {
            return;
        }

        // Istio's 19 labels exceed a TagList's eight inline ones (it would allocate an array per request): one array
        // per thread instead, lent out while the four instruments read it (listeners copy what they keep).
        var tags = t_tags ?? new KeyValuePair<string, object?>[19];
        t_tags = null;
        try
        {
            tags[0] = new("reporter", r.Reporter);
            tags[1] = new("source_workload", r.Source.Workload);
            tags[2] = new("source_workload_namespace", r.Source.Namespace);
            tags[3] = new("source_principal", r.SourcePrincipal ?? "unknown");
            tags[4] = new("source_app", r.Source.App);
            tags[5] = new("source_version", r.Source.Version);
            tags[6] = new("destination_workload", r.Destination.Workload);
            tags[7] = new("destination_workload_namespace", r.Destination.Namespace);
            tags[8] = new("destination_principal", r.DestinationPrincipal ?? "unknown");
            tags[9] = new("destination_app", r.Destination.App);
            tags[10] = new("destination_version", r.Destination.Version);
            tags[11] = new("destination_service", r.DestinationService);
            tags[12] = new("destination_service_name", r.Destination.Service);
            tags[13] = new("destination_service_namespace", r.Destination.Namespace);
            tags[14] = new("request_protocol", r.Protocol);
            tags[15] = new("response_code", BoxedStatus.Of(r.ResponseCode));
            tags[16] = new("grpc_response_status", r.GrpcStatus ?? string.Empty);
            tags[17] = new("response_flags", r.ResponseFlags.Length == 0 ? "-" : r.ResponseFlags);
            tags[18] = new("connection_security_policy", r.ConnectionSecurityPolicy);
            ReadOnlySpan<KeyValuePair<string, object?>> labels = tags;
            _requests.Add(1, labels);
            _duration.Record(r.DurationMilliseconds, labels);
            _requestBytes.Record(r.RequestBytes, labels);
            _responseBytes.Record(r.ResponseBytes, labels);
        }
        finally
        {
            t_tags = tags;
        }
    }

    [ThreadStatic]
    private static KeyValuePair<string, object?>[]? t_tags;
}

/// <summary>Status codes as tag values, boxed once: a metric tag is an object, and an int boxed per request is 24 bytes.</summary>
internal static class BoxedStatus
{
    private static readonly object[] Codes = Enumerable.Range(0, 600).Select(c => (object)c).ToArray();

    public static object Of(int code) => (uint)code < (uint)Codes.Length ? Codes[code] : code;
}
