namespace MeshKit.Config.Model;

/// <summary>
/// <c>telemetry.istio.io</c> Telemetry. MeshKit acts on its metrics overrides (disabling Istio's standard metrics per
/// direction, removing labels) and on turning its access log off or on; validation reports every other field it does
/// not act on, with its path.
/// </summary>
public sealed record TelemetryResource : ConfigResource
{
    /// <summary>Gets <c>spec.selector</c>; <see langword="null"/> applies to the whole namespace (the root namespace: the mesh).</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets the overrides of <c>spec.metrics[].overrides</c> for MeshKit's metrics, in the order written.</summary>
    public IReadOnlyList<MetricOverride> MetricOverrides { get; init; } = [];

    /// <summary>Gets the <c>spec.accessLogging[]</c> entries for MeshKit's access log, in the order written.</summary>
    public IReadOnlyList<AccessLogOverride> AccessLogging { get; init; } = [];
}

/// <summary>One <c>spec.accessLogging[]</c> entry.</summary>
/// <param name="Mode">Gets <c>match.mode</c>: <c>CLIENT_AND_SERVER</c> (the default), <c>CLIENT</c> or <c>SERVER</c>.</param>
/// <param name="Disabled">Gets <c>disabled</c>: false (the default) turns the access log on, true off.</param>
public sealed record AccessLogOverride(string Mode, bool Disabled);

/// <summary>One <c>spec.metrics[].overrides[]</c> entry.</summary>
/// <param name="Metric">Gets <c>match.metric</c>: <c>ALL_METRICS</c> (the default), <c>REQUEST_COUNT</c>, <c>REQUEST_DURATION</c>, <c>REQUEST_SIZE</c> or <c>RESPONSE_SIZE</c>.</param>
/// <param name="Mode">Gets <c>match.mode</c>: <c>CLIENT_AND_SERVER</c> (the default), <c>CLIENT</c> or <c>SERVER</c>.</param>
/// <param name="Disabled">Gets <c>disabled</c>; <see langword="null"/> leaves what a parent decided.</param>
/// <param name="RemovedTags">Gets the labels of <c>tagOverrides</c> with <c>operation: REMOVE</c>.</param>
public sealed record MetricOverride(string Metric, string Mode, bool? Disabled, IReadOnlyList<string> RemovedTags);
