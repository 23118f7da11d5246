using System.Text.RegularExpressions;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Parsing;

// Telemetry (telemetry.istio.io): metrics, access logging and tracing overrides.
public static partial class ConfigParser
{
    // Telemetry changes what is reported, never who may call: fields MeshKit does not act on are warnings.
    private static readonly string[] IstioMetricNames = ["ALL_METRICS", .. IstioStandardMetrics.Metrics];
    private static readonly string[] IstioTcpAndGrpcMetrics =
        ["TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES"];

    private static readonly string[] WorkloadModes = ["CLIENT_AND_SERVER", "CLIENT", "SERVER"];

    private static TelemetryResource? ReadTelemetry(MapReader s, Header h)
    {
        if (s.Has("targetRef") || s.Has("targetRefs"))
        {
            var key = s.Has("targetRef") ? "targetRef" : "targetRefs";
            s.Context.Warning(s.Get(key), s.ChildPath(key), "applies to gateways and waypoints, which MeshKit has not: this Telemetry applies to no MeshKit workload and is ignored");
            s.Ignore("targetRef", "targetRefs", "selector", "metrics", "accessLogging", "tracing");
            return null;
        }

        var selector = s.Map("selector", ReadMatchLabels);
        s.Anchor("selector");
        var metrics = s.List("metrics", ReadMetrics);
        var overrides = metrics.SelectMany(m => m.Overrides).ToArray();
        var accessLogging = s.List("accessLogging", ReadAccessLogging);
        var tracing = s.List("tracing", ReadTracing);
        return Fill(new TelemetryResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, MetricOverrides = overrides, AccessLogging = accessLogging, Tracing = tracing,
            MetricsReportingInterval = metrics.LastOrDefault(m => m.ReportingInterval is not null)?.ReportingInterval,
        }, h);
    }

    // One spec.tracing[] entry. MeshKit's spans (one per outbound call, one per attempt) go to the application's
    // OpenTelemetry tracer provider: MeshKit turns them off and tags them; the sampling percentage is applied by
    // MeshKit's sampler when the application sets it on its tracer provider.
    private static TracingOverride? ReadTracing(MapReader t)
    {
        if (t.Has("providers"))
        {
            t.List("providers", p => p.String("name", required: true)); // an empty name is an error, as in Istio
            t.Context.Warning(t.Get("providers"), t.ChildPath("providers"), "MeshKit's spans go to the application's OpenTelemetry tracer provider (its exporters decide where); the provider is not selected, the rest of the entry applies");
        }

        var mode = t.Map("match", m => ReadMode(m))?.Value ?? "CLIENT_AND_SERVER";
        // Applied by MeshKit's sampler, which the application opts into (SetMeshSampler on its tracer provider).
        var sampling = t.Double("randomSamplingPercentage", 0, 100);
        t.NotSupported("useRequestIdForTraceSampling", DiagnosticSeverity.Warning, "traces are sampled by the application's OpenTelemetry sampler");
        t.NotSupported("enableIstioTags", DiagnosticSeverity.Warning, "MeshKit's spans carry MeshKit's tags (observability.md)");
        var disable = t.Bool("disableSpanReporting");
        if (mode == "SERVER" && disable is not null)
        {
            t.Context.Warning(t.Get("disableSpanReporting"), t.ChildPath("disableSpanReporting"), "MeshKit makes no server spans (the request span is ASP.NET Core's, the application's to configure); the entry changes nothing");
        }

        var tags = new Dictionary<string, SpanTagSource>(StringComparer.Ordinal);
        t.Entries("customTags", "an object with one of literal, environment or header", (name, _, reader) =>
        {
            var given = new[]
            {
                reader.Map("literal", l => new SpanTagSource("literal", l.String("value", required: true) ?? string.Empty, null)),
                reader.Map("environment", e => new SpanTagSource("environment", e.String("name", required: true) ?? string.Empty, e.String("defaultValue"))),
                reader.Map("header", hd => new SpanTagSource("header", hd.String("name", required: true) ?? string.Empty, hd.String("defaultValue"))),
            }.OfType<SpanTagSource>().ToList();
            if (given.Count != 1)
            {
                reader.Context.Error(reader.Node, reader.Path, "needs exactly one of literal, environment or header");
            }
            else if (mode != "SERVER")
            {
                tags[name] = given[0];
            }
        });

        if (mode == "SERVER" && tags.Count == 0 && t.Has("customTags"))
        {
            t.Context.Warning(t.Get("customTags"), t.ChildPath("customTags"), "MeshKit makes no server spans; the tags are not added");
        }

        return new TracingOverride(mode, mode == "SERVER" ? null : disable, tags, sampling);
    }

    // One spec.accessLogging[] entry: MeshKit's access log is Istio's 'envoy' provider (the default one).
    private static AccessLogOverride? ReadAccessLogging(MapReader a)
    {
        var providers = a.List("providers", p => p.String("name", required: true));
        var mode = a.Map("match", m => ReadMode(m))?.Value ?? "CLIENT_AND_SERVER";
        var disabled = a.Bool("disabled") ?? false;
        // Compiled here as the workload will compile it, so that a typo is an error with its place, not a silent
        // filter that never (or always) logs.
        var filter = a.Map("filter", f =>
        {
            var expression = f.String("expression", required: true);
            if (string.IsNullOrEmpty(expression))
            {
                return new BoxedString(null);
            }

            try
            {
                Expressions.RequestAttributes.CompileFilter(expression);
                return new BoxedString(expression);
            }
            catch (Expressions.CelException ex)
            {
                f.Context.Error(f.Get("expression"), f.ChildPath("expression"), ex.Detail);
                return new BoxedString(null);
            }
        })?.Value;
        if (providers.Count > 0 && !providers.Contains("envoy"))
        {
            a.Context.Warning(a.Get("providers"), a.ChildPath("providers"), $"MeshKit's access log is Istio's 'envoy' provider (written through ILogger, category MeshKit.AccessLog); this entry names {string.Join(", ", providers)} only and is ignored");
            return null;
        }

        return new AccessLogOverride(mode, disabled, filter);
    }

    private static BoxedString ReadMode(MapReader m)
    {
        var mode = m.String("mode");
        if (mode is not null && !WorkloadModes.Contains(mode))
        {
            m.Context.Error(m.Get("mode"), m.ChildPath("mode"), $"unknown mode '{mode}'; expected one of {string.Join(", ", WorkloadModes)}");
            return new BoxedString(null);
        }

        return new BoxedString(mode);
    }

    // One spec.metrics[] entry: its overrides and reporting interval when it applies to MeshKit's metrics, else none
    // (with a warning).
    private static MetricsEntry ReadMetrics(MapReader m)
    {
        var providers = m.List("providers", p => p.String("name", required: true));

        // Istio's proxies use it for TCP metrics, reported while a connection lasts; MeshKit's long-lived calls are
        // gRPC streams, whose message counts are added at this interval while they run.
        var interval = m.TimerDuration("reportingInterval");
        var overrides = m.List("overrides", ReadMetricOverride);
        if (providers.Count > 0 && !providers.Contains("prometheus"))
        {
            m.Context.Warning(m.Get("providers"), m.ChildPath("providers"), $"MeshKit's metrics are Istio's 'prometheus' provider (exported through OpenTelemetry); this entry names {string.Join(", ", providers)} only and is ignored");
            return new([], null);
        }

        return new(overrides, interval);
    }

    private sealed record MetricsEntry(IReadOnlyList<MetricOverride> Overrides, TimeSpan? ReportingInterval);

    private static readonly Regex PrometheusLabelName = new("^[a-zA-Z_][a-zA-Z0-9_]*$", RegexOptions.CultureInvariant);

    private static MetricOverride? ReadMetricOverride(MapReader o)
    {
        var metric = "ALL_METRICS";
        var mode = "CLIENT_AND_SERVER";
        var applies = true;
        o.Map("match", match =>
        {
            if (match.String("metric") is { } name)
            {
                if (IstioTcpAndGrpcMetrics.Contains(name))
                {
                    match.Context.Warning(match.Get("metric"), match.ChildPath("metric"), $"MeshKit reports no {name} metric (HTTP and gRPC requests only, no TCP connections); the override is ignored");
                    applies = false;
                }
                else if (!IstioMetricNames.Contains(name))
                {
                    match.Context.Error(match.Get("metric"), match.ChildPath("metric"), $"unknown metric '{name}'; expected one of {string.Join(", ", IstioMetricNames.Concat(IstioTcpAndGrpcMetrics))}");
                    applies = false;
                }
                else
                {
                    metric = name;
                }
            }

            if (match.String("customMetric") is { Length: 0 })
            {
                match.Context.Error(match.Get("customMetric"), match.ChildPath("customMetric"), "must not be empty (as in Istio)");
            }
            else if (match.String("customMetric") is not null)
            {
                match.Context.Warning(match.Get("customMetric"), match.ChildPath("customMetric"), "MeshKit reports no custom metrics; the override is ignored");
                applies = false;
            }

            if (match.Has("mode"))
            {
                if (ReadMode(match).Value is { } m)
                {
                    mode = m;
                }
                else
                {
                    applies = false;
                }
            }

            return match;
        });

        var disabled = o.Bool("disabled");
        var removed = new List<string>();
        var upserted = new Dictionary<string, string>(StringComparer.Ordinal);
        o.Entries("tagOverrides", "an object with operation and value", (tag, key, reader) =>
        {
            var operation = reader.String("operation") ?? "UPSERT";
            var value = reader.Has("value") ? reader.String("value") : null;
            switch (operation)
            {
                case "REMOVE" when !string.IsNullOrEmpty(value):
                    reader.Context.Error(reader.Get("value"), reader.ChildPath("value"), "is set only with operation UPSERT (as in Istio)");
                    break;
                case "UPSERT" when string.IsNullOrEmpty(value):
                    reader.Context.Error(reader.Node, reader.ChildPath("value"), "is required with operation UPSERT (as in Istio)");
                    break;
                case "REMOVE":
                    if (!IstioStandardMetrics.Labels.Contains(tag))
                    {
                        reader.Context.Warning(key, reader.Path, $"'{tag}' is not one of Istio's standard labels; there is nothing to remove");
                    }

                    removed.Add(tag);
                    break;
                case "UPSERT":
                    if (!PrometheusLabelName.IsMatch(tag) || tag.StartsWith("__", StringComparison.Ordinal) || tag == "le")
                    {
                        reader.Context.Error(key, reader.Path, $"'{tag}' is not a label name Prometheus takes ([a-zA-Z_][a-zA-Z0-9_]*, not __-prefixed, not le)");
                        break;
                    }

                    // Compiled as the workload will compile it: a mistake is an error with its place.
                    try
                    {
                        Expressions.RequestAttributes.CompileValue(value!);
                        upserted[tag] = value!;
                    }
                    catch (Expressions.CelException ex)
                    {
                        reader.Context.Error(reader.Get("value"), reader.ChildPath("value"), ex.Detail);
                    }

                    break;
                default:
                    reader.Context.Error(reader.Get("operation") ?? reader.Node, reader.ChildPath("operation"), $"unknown operation '{operation}'; expected UPSERT or REMOVE");
                    break;
            }
        });

        return applies ? new MetricOverride(metric, mode, disabled, removed, upserted.Count > 0 ? upserted : null) : null;
    }
}
