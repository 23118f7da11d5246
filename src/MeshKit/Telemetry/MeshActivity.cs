using System.Diagnostics;

namespace MeshKit.Telemetry;

/// <summary>
/// The mesh's spans (ActivitySource <c>MeshKit</c>): one per outbound call, and under it one per attempt, so retries are
/// visible in a trace; the HTTP client span of each attempt nests under its attempt span. Created only when a listener
/// (OpenTelemetry, for instance) is attached.
/// </summary>
internal static class MeshActivity
{
    public const string SourceName = "MeshKit";

    public static readonly ActivitySource Source = new(SourceName, typeof(MeshActivity).Assembly.GetName().Version?.ToString());

    /// <summary>The request option naming the route that matched, for the span and the access log.</summary>
    public static readonly System.Net.Http.HttpRequestOptionsKey<string> RouteName = new("meshkit.route");

    /// <summary>The request option carrying the matched block's <c>statPrefix</c>, set only while per-route metrics are listened to.</summary>
    public static readonly System.Net.Http.HttpRequestOptionsKey<string> StatPrefix = new("meshkit.stat_prefix");

    /// <summary>Adds B3 (single-header form) next to the W3C trace context the HTTP client adds, for Zipkin-era peers.</summary>
    public static void AddB3(HttpRequestMessage request, Activity activity)
    {
        request.Headers.Remove("b3");
        request.Headers.TryAddWithoutValidation("b3", $"{activity.TraceId.ToHexString()}-{activity.SpanId.ToHexString()}-{(activity.Recorded ? "1" : "0")}");
    }
}
