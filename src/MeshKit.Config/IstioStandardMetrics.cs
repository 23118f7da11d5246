namespace MeshKit.Config;

/// <summary>Istio's standard HTTP metrics and their labels, as the Telemetry API names them: one list for the parser, the compiler and the reporters.</summary>
internal static class IstioStandardMetrics
{
    /// <summary>The metrics, as <c>match.metric</c> names them, in the order the reporters write them.</summary>
    public static readonly string[] Metrics = ["REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"];

    /// <summary>The index in <see cref="Metrics"/> of the first of the gRPC message counts, which only gRPC calls report.</summary>
    public const int FirstMessageMetric = 4;

    /// <summary>
    /// Whether a standard label describes the request's outcome (protocol, code, gRPC status, flags, connection
    /// security): the gRPC message counts have the others only, as Istio's proxy counts them before the stream's end.
    /// </summary>
    public static bool DescribesOutcome(int label) => label is >= 14 and <= 18;

    /// <summary>Whether <paramref name="metric"/> (an index in <see cref="Metrics"/>) is written with <paramref name="label"/> unless an override removes it.</summary>
    public static bool Carries(int metric, int label) => metric < FirstMessageMetric || !DescribesOutcome(label);

    /// <summary>The labels, in the order the reporters write them.</summary>
    public static readonly string[] Labels =
    [
        "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
        "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
        "destination_service", "destination_service_name", "destination_service_namespace", "request_protocol", "response_code",
        "grpc_response_status", "response_flags", "connection_security_policy",
        "source_canonical_service", "source_canonical_revision", "source_cluster",
        "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    ];
}
