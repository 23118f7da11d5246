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

    /// <summary>The default route of <see cref="MapMeshDebug"/>.</summary>
    public const string DefaultDebugPattern = "/debug/mesh";

    /// <summary>
    /// Serves, as JSON, what this workload's data plane holds and sees now: its identity and certificate expiry, the
    /// config version in force (and the last push it rejected), what guards its own endpoints (mutual TLS modes, the
    /// AuthorizationPolicies in evaluation order, JWT issuers and their keys), its services and routes, and each destination (a
    /// service, subset or port with a policy of its own, named as Envoy names clusters) with its load balancer, TLS
    /// mode, requests in flight against its limit, and every endpoint's locality, weight, requests in flight and
    /// outlier-detection health (ejected until when, how often) — what an Envoy sidecar's admin <c>/config_dump</c> and
    /// <c>/clusters</c> show. It names the mesh's services, addresses and identities: map it on a port of its own
    /// (<c>RequireHost("*:15000")</c>, Envoy's admin port) that only operators reach, and guard it with an
    /// AuthorizationPolicy or the endpoint's own authorization; never on a public port. Requires <c>services.AddMesh()</c>.
    /// </summary>
    /// <param name="endpoints">The endpoint route builder.</param>
    /// <param name="pattern">The route of the endpoint; <see cref="DefaultDebugPattern"/> by default.</param>
    /// <returns>The endpoint's convention builder (to add a host, a port, authorization).</returns>
    /// <exception cref="InvalidOperationException"><c>AddMesh()</c> was not called.</exception>
    public static IEndpointConventionBuilder MapMeshDebug(this IEndpointRouteBuilder endpoints, [StringSyntax("Route")] string pattern = DefaultDebugPattern)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        var services = endpoints.ServiceProvider;
        var provider = services.GetService<MeshKit.Snapshot.MeshSnapshotProvider>()
            ?? throw new InvalidOperationException("MapMeshDebug() needs the mesh services: call builder.Services.AddMesh() in startup first.");
        var options = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<MeshKit.MeshOptions>>();
        var identity = services.GetService<MeshKit.Security.WorkloadIdentity>();
        var status = services.GetService<MeshKit.Sync.MeshSyncStatus>();
        return endpoints.MapGet(pattern, async (HttpContext context) =>
        {
            var body = new System.Buffers.ArrayBufferWriter<byte>(16_384);
            using (var writer = new System.Text.Json.Utf8JsonWriter(body, new System.Text.Json.JsonWriterOptions { Indented = true }))
            {
                MeshKit.Snapshot.MeshDebugDump.Write(writer, options.Value, provider.Current, identity, status);
            }

            context.Response.ContentType = MeshKit.Snapshot.MeshDebugDump.ContentType;
            context.Response.ContentLength = body.WrittenCount;
            await context.Response.Body.WriteAsync(body.WrittenMemory, context.RequestAborted).ConfigureAwait(false);
        }).WithDisplayName("MeshKit debug");
    }
}
