using System.Diagnostics.CodeAnalysis;
using System.Text;
using MeshKit.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the mesh's endpoints.</summary>
public static class MeshEndpointRouteBuilderExtensions
{
    /// <summary>The path an Envoy sidecar serves its stats at for Prometheus, and the default of <see cref="MapMeshMetrics"/>.</summary>
    public const string DefaultMetricsPattern = "/stats/prometheus";

    /// <summary>
    /// Serves Istio's standard metrics (<c>istio_requests_total</c>, <c>istio_request_duration_milliseconds</c>,
    /// <c>istio_request_bytes</c>, <c>istio_response_bytes</c>, both reporters, Istio's labels and buckets) in
    /// Prometheus's text format, aggregated by MeshKit itself, as a sidecar serves them at <c>/stats/prometheus</c>.
    /// Mapping it starts the aggregation, which costs a fraction of recording the same metrics through a metrics SDK
    /// (docs/observability.md); the Telemetry API's <c>metrics</c> overrides apply to it. The endpoint is behind the mesh
    /// middleware like any other: under STRICT mutual TLS or an ALLOW policy, serve it on a port of its own
    /// (<c>RequireHost("*:15020")</c>) that the PeerAuthentication and the policies leave open to the scraper.
    /// Requires <c>services.AddMesh()</c>.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="pattern">The route of the endpoint; <see cref="DefaultMetricsPattern"/> by default.</param>
    /// <returns>The endpoint's convention builder (to add a host, a port, authorization).</returns>
    /// <exception cref="InvalidOperationException"><c>AddMesh()</c> was not called.</exception>
    public static IEndpointConventionBuilder MapMeshMetrics(this IEndpointRouteBuilder endpoints, [StringSyntax("Route")] string pattern = DefaultMetricsPattern)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        var istio = endpoints.ServiceProvider.GetService<IstioMetrics>()
            ?? throw new InvalidOperationException("MapMeshMetrics() needs the mesh services: call builder.Services.AddMesh() in startup first.");
        var stats = istio.EnableStats();
        return endpoints.MapGet(pattern, (HttpContext context) =>
        {
            istio.Flush(); // every call that ended before the scrape is in it
            var text = new StringBuilder(4096);
            stats.WriteTo(text);
            var body = Encoding.UTF8.GetBytes(text.ToString());
            context.Response.ContentType = IstioStats.ContentType;
            context.Response.ContentLength = body.Length;
            return context.Response.Body.WriteAsync(body, context.RequestAborted).AsTask();
        }).WithMetadata(IstioStats.Scrape.Instance).WithDisplayName("MeshKit metrics");
    }
}
