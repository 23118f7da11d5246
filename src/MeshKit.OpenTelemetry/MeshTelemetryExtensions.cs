using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace MeshKit.OpenTelemetry;

/// <summary>Wires MeshKit's meter and activity source into OpenTelemetry.</summary>
public static class MeshTelemetryExtensions
{
    /// <summary>The meter and activity source name MeshKit reports under.</summary>
    public const string Name = "MeshKit";

    /// <summary>
    /// Adds MeshKit's metrics (Istio's standard <c>istio_*</c> metrics from both reporters, and <c>meshkit.*</c>) and
    /// spans (one per outbound call, one per attempt) to the OpenTelemetry pipeline. Exporters stay yours to add.
    /// </summary>
    /// <param name="builder">The OpenTelemetry builder from <c>services.AddOpenTelemetry()</c>.</param>
    /// <returns>The builder, for chaining.</returns>
    public static IOpenTelemetryBuilder AddMeshTelemetry(this IOpenTelemetryBuilder builder) => builder.AddMeshTelemetry(includeIstioMetrics: true);

    /// <summary>
    /// Adds MeshKit's metrics and spans to the OpenTelemetry pipeline, with or without Istio's standard <c>istio_*</c>
    /// metrics: an application that serves those with <c>app.MapMeshMetrics()</c> (MeshKit's own aggregation, in
    /// Prometheus's format) leaves them out here, so that they are not aggregated twice.
    /// </summary>
    /// <param name="builder">The OpenTelemetry builder from <c>services.AddOpenTelemetry()</c>.</param>
    /// <param name="includeIstioMetrics">Whether the OpenTelemetry SDK aggregates Istio's standard metrics too.</param>
    /// <returns>The builder, for chaining.</returns>
    public static IOpenTelemetryBuilder AddMeshTelemetry(this IOpenTelemetryBuilder builder, bool includeIstioMetrics)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder
            .WithMetrics(metrics => metrics.AddMeshInstrumentation(includeIstioMetrics))
            .WithTracing(tracing => tracing.AddMeshInstrumentation());
    }

    /// <summary>Adds MeshKit's meter.</summary>
    /// <param name="builder">The meter provider builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static MeterProviderBuilder AddMeshInstrumentation(this MeterProviderBuilder builder) => builder.AddMeshInstrumentation(includeIstioMetrics: true);

    /// <summary>
    /// Adds MeshKit's meter, with or without Istio's standard <c>istio_*</c> instruments. Left out, they are dropped by
    /// a view, which leaves them disabled: a request pays nothing for them in the SDK (for an application that serves
    /// them with <c>app.MapMeshMetrics()</c>).
    /// </summary>
    /// <param name="builder">The meter provider builder.</param>
    /// <param name="includeIstioMetrics">Whether the SDK aggregates Istio's standard metrics too.</param>
    /// <returns>The builder, for chaining.</returns>
    public static MeterProviderBuilder AddMeshInstrumentation(this MeterProviderBuilder builder, bool includeIstioMetrics)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddMeter(Name);
        return includeIstioMetrics
            ? builder
            : builder.AddView(instrument => instrument.Meter.Name == Name && instrument.Name.StartsWith("istio_", StringComparison.Ordinal) ? MetricStreamConfiguration.Drop : null);
    }

    /// <summary>
    /// Sets MeshKit's sampler on the tracer provider: the Telemetry API's <c>tracing.randomSamplingPercentage</c> for the
    /// traces this workload starts (a server span without trace context: mode SERVER; an outbound call: CLIENT), every
    /// span with a parent following the parent's decision. Without a percentage from the control plane, every trace is
    /// sampled. Needs <c>AddMesh()</c>; it replaces any sampler set before.
    /// </summary>
    /// <param name="builder">The tracer provider builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static TracerProviderBuilder SetMeshSampler(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.SetSampler(services => new MeshSampler(
            services.GetService(typeof(MeshKit.Snapshot.MeshSnapshotProvider)) as MeshKit.Snapshot.MeshSnapshotProvider
            ?? throw new InvalidOperationException("SetMeshSampler() needs the mesh: call builder.Services.AddMesh() first.")));
    }

    /// <summary>Adds MeshKit's activity source.</summary>
    /// <param name="builder">The tracer provider builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static TracerProviderBuilder AddMeshInstrumentation(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddSource(Name);
    }
}
