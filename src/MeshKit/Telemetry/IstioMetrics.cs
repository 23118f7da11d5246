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

        var tags = new TagList
        {
            { "reporter", r.Reporter },
            { "source_workload", r.Source.Workload },
            { "source_workload_namespace", r.Source.Namespace },
            { "source_principal", r.SourcePrincipal ?? "unknown" },
            { "source_app", r.Source.App },
            { "source_version", r.Source.Version },
            { "destination_workload", r.Destination.Workload },
            { "destination_workload_namespace", r.Destination.Namespace },
            { "destination_principal", r.DestinationPrincipal ?? "unknown" },
            { "destination_app", r.Destination.App },
            { "destination_version", r.Destination.Version },
            { "destination_service", r.DestinationService },
            { "destination_service_name", r.Destination.Service },
            { "destination_service_namespace", r.Destination.Namespace },
            { "request_protocol", r.Protocol },
            { "response_code", r.ResponseCode },
            { "grpc_response_status", r.GrpcStatus ?? string.Empty },
            { "response_flags", r.ResponseFlags.Length == 0 ? "-" : r.ResponseFlags },
            { "connection_security_policy", r.ConnectionSecurityPolicy },
        };
        _requests.Add(1, tags);
        _duration.Record(r.DurationMilliseconds, tags);
        _requestBytes.Record(r.RequestBytes, tags);
        _responseBytes.Record(r.ResponseBytes, tags);
    }
}
