namespace MeshKit.Config.Model;

/// <summary>
/// <c>telemetry.istio.io</c> Telemetry. MeshKit acts on its metrics overrides (disabling Istio's standard metrics per
/// direction, removing labels, giving them values) and reporting interval, on turning its access log off or on (and
/// its filter), and on its own spans (turning them off, adding tags, sampling); validation reports every other field
/// it does not act on, with its path.
/// </summary>
public sealed record TelemetryResource : ConfigResource
{
    /// <summary>Gets <c>spec.selector</c>; <see langword="null"/> applies to the whole namespace (the root namespace: the mesh).</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets the overrides of <c>spec.metrics[].overrides</c> for MeshKit's metrics, in the order written.</summary>
    public IReadOnlyList<MetricOverride> MetricOverrides { get; init; } = [];

    /// <summary>
    /// Gets <c>spec.metrics[].reportingInterval</c> (the last entry for MeshKit's metrics that sets it): how often a
    /// running gRPC stream's message counts are added; <see langword="null"/> leaves what a parent decided (5 s by default).
    /// </summary>
    public TimeSpan? MetricsReportingInterval { get; init; }

    /// <summary>Gets the <c>spec.accessLogging[]</c> entries for MeshKit's access log, in the order written.</summary>
    public IReadOnlyList<AccessLogOverride> AccessLogging { get; init; } = [];

    /// <summary>Gets the <c>spec.tracing[]</c> entries for MeshKit's spans, in the order written.</summary>
    public IReadOnlyList<TracingOverride> Tracing { get; init; } = [];
}

/// <summary>One <c>spec.tracing[]</c> entry, as it applies to the spans MeshKit makes for outbound calls.</summary>
/// <param name="Mode">Gets <c>match.mode</c>: <c>CLIENT_AND_SERVER</c> (the default), <c>CLIENT</c> or <c>SERVER</c>.</param>
/// <param name="DisableSpanReporting">Gets <c>disableSpanReporting</c>; <see langword="null"/> leaves what a parent decided.</param>
/// <param name="CustomTags">Gets <c>customTags</c>: tag name → where its value comes from.</param>
/// <param name="RandomSamplingPercentage">Gets <c>randomSamplingPercentage</c> (0–100) for traces the workload starts; <see langword="null"/> leaves what a parent decided.</param>
public sealed record TracingOverride(string Mode, bool? DisableSpanReporting, IReadOnlyDictionary<string, SpanTagSource> CustomTags, double? RandomSamplingPercentage = null);

/// <summary>Where a custom span tag's value comes from (<c>customTags.&lt;name&gt;</c>).</summary>
/// <param name="Kind">Gets <c>literal</c>, <c>environment</c> or <c>header</c>.</param>
/// <param name="Value">Gets the literal value, or the environment variable's or request header's name.</param>
/// <param name="DefaultValue">Gets <c>defaultValue</c> (environment and header): the value when the variable or header is absent.</param>
public sealed record SpanTagSource(string Kind, string Value, string? DefaultValue);

/// <summary>One <c>spec.accessLogging[]</c> entry.</summary>
/// <param name="Mode">Gets <c>match.mode</c>: <c>CLIENT_AND_SERVER</c> (the default), <c>CLIENT</c> or <c>SERVER</c>.</param>
/// <param name="Disabled">Gets <c>disabled</c>: false (the default) turns the access log on, true off.</param>
/// <param name="Filter">Gets <c>filter.expression</c>: a CEL expression over Envoy's attributes; an entry is written only for requests it is true for. <see langword="null"/>: every request.</param>
public sealed record AccessLogOverride(string Mode, bool Disabled, string? Filter = null);

/// <summary>One <c>spec.metrics[].overrides[]</c> entry.</summary>
/// <param name="Metric">Gets <c>match.metric</c>: <c>ALL_METRICS</c> (the default), <c>REQUEST_COUNT</c>, <c>REQUEST_DURATION</c>, <c>REQUEST_SIZE</c>, <c>RESPONSE_SIZE</c>, <c>GRPC_REQUEST_MESSAGES</c> or <c>GRPC_RESPONSE_MESSAGES</c>.</param>
/// <param name="Mode">Gets <c>match.mode</c>: <c>CLIENT_AND_SERVER</c> (the default), <c>CLIENT</c> or <c>SERVER</c>.</param>
/// <param name="Disabled">Gets <c>disabled</c>; <see langword="null"/> leaves what a parent decided.</param>
/// <param name="RemovedTags">Gets the labels of <c>tagOverrides</c> with <c>operation: REMOVE</c>.</param>
/// <param name="UpsertedTags">Gets the labels of <c>tagOverrides</c> with <c>operation: UPSERT</c> (the default), by name: the CEL expression of each one's value. A standard label's name replaces its value; another name adds a label.</param>
public sealed record MetricOverride(string Metric, string Mode, bool? Disabled, IReadOnlyList<string> RemovedTags, IReadOnlyDictionary<string, string>? UpsertedTags = null);
