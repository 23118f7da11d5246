using MeshKit.Config.Model;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>
/// Istio's Telemetry hierarchy for metrics, the access log and MeshKit's spans: the root namespace's resource without a selector (the mesh), then the
/// workload's namespace's without a selector, then one in that namespace selecting the workload. Their overrides apply
/// in that order, each in the order written, a later one winning where two decide the same thing: a child inherits
/// what its parents disabled or removed unless it says otherwise (<c>disabled: false</c> turns a metric back on).
/// Where one level has several resources, Istio takes the oldest; MeshKit, which sees no creation times, takes the
/// first by name (for the namespace-wide level, compiling warns about the ones it ignores).
/// </summary>
internal static class Telemetries
{
    public static TelemetryPolicy Resolve(IReadOnlyList<TelemetryResource> resources, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels)
    {
        var policy = new TelemetryPolicy();
        if (resources.Count == 0)
        {
            return policy;
        }

        var mesh = resources.FirstOrDefault(t => t.Selector is null && t.Namespace == rootNamespace);
        var space = ns == rootNamespace ? null : resources.FirstOrDefault(t => t.Selector is null && t.Namespace == ns);
        var workload = resources.FirstOrDefault(t => t.Selector is { } s && t.Namespace == ns && s.Matches(labels));

        // Per metric and side (client, server): disabled, and each overridden label's last word: removed (null) or
        // given a value (its expression), in the order the levels and their overrides are written.
        var disabled = new bool[IstioStandardMetrics.Metrics.Length, 2];
        var tagged = new SortedDictionary<string, string?>[IstioStandardMetrics.Metrics.Length, 2];
        foreach (var level in new[] { mesh, space, workload })
        {
            foreach (var o in level?.MetricOverrides ?? [])
            {
                for (var m = 0; m < IstioStandardMetrics.Metrics.Length; m++)
                {
                    if (o.Metric != "ALL_METRICS" && o.Metric != IstioStandardMetrics.Metrics[m])
                    {
                        continue;
                    }

                    for (var side = 0; side < 2; side++)
                    {
                        if (o.Mode != "CLIENT_AND_SERVER" && o.Mode != (side == 0 ? "CLIENT" : "SERVER"))
                        {
                            continue;
                        }

                        if (o.Disabled is { } d)
                        {
                            disabled[m, side] = d;
                        }

                        foreach (var tag in o.RemovedTags)
                        {
                            (tagged[m, side] ??= new(StringComparer.Ordinal))[tag] = null;
                        }

                        foreach (var (tag, expression) in o.UpsertedTags ?? new Dictionary<string, string>())
                        {
                            (tagged[m, side] ??= new(StringComparer.Ordinal))[tag] = expression;
                        }
                    }
                }
            }
        }

        // The reporting interval: the most specific level's that sets one.
        foreach (var level in new[] { mesh, space, workload })
        {
            if (level?.MetricsReportingInterval is { } interval)
            {
                policy.MetricsReportingIntervalMs = (ulong)interval.TotalMilliseconds;
            }
        }

        // The access log: on unless the last entry that speaks of a side turns it off; that entry's filter (or none)
        // decides which requests are written, as a child's entry for the provider replaces its parent's in Istio.
        foreach (var level in new[] { mesh, space, workload })
        {
            foreach (var entry in level?.AccessLogging ?? [])
            {
                if (entry.Mode != "SERVER")
                {
                    policy.ClientAccessLogDisabled = entry.Disabled;
                    policy.ClientAccessLogFilter = entry.Filter ?? string.Empty;
                }

                if (entry.Mode != "CLIENT")
                {
                    policy.ServerAccessLogDisabled = entry.Disabled;
                    policy.ServerAccessLogFilter = entry.Filter ?? string.Empty;
                }
            }
        }

        // MeshKit's own spans (client side only: it makes no server spans): off, and custom tags merged by name.
        var tags = new SortedDictionary<string, SpanTagSource>(StringComparer.Ordinal);
        foreach (var level in new[] { mesh, space, workload })
        {
            foreach (var entry in level?.Tracing ?? [])
            {
                if (entry.RandomSamplingPercentage is { } percent)
                {
                    if (entry.Mode != "SERVER")
                    {
                        policy.ClientSamplingPercentage = percent;
                    }

                    if (entry.Mode != "CLIENT")
                    {
                        policy.ServerSamplingPercentage = percent;
                    }
                }

                if (entry.Mode == "SERVER")
                {
                    continue;
                }

                if (entry.DisableSpanReporting is { } off)
                {
                    policy.ClientSpansDisabled = off;
                }

                foreach (var (name, source) in entry.CustomTags)
                {
                    tags[name] = source;
                }
            }
        }

        policy.ClientSpanTags.AddRange(tags.Select(t => new SpanTag { Name = t.Key, Kind = t.Value.Kind, Value = t.Value.Value, DefaultValue = t.Value.DefaultValue ?? string.Empty }));

        for (var m = 0; m < IstioStandardMetrics.Metrics.Length; m++)
        {
            var entry = new MetricPolicy { Metric = IstioStandardMetrics.Metrics[m], ClientDisabled = disabled[m, 0], ServerDisabled = disabled[m, 1] };
            entry.ClientRemovedTags.AddRange(tagged[m, 0]?.Where(t => t.Value is null).Select(t => t.Key) ?? []);
            entry.ServerRemovedTags.AddRange(tagged[m, 1]?.Where(t => t.Value is null).Select(t => t.Key) ?? []);
            entry.ClientUpsertedTags.AddRange(tagged[m, 0]?.Where(t => t.Value is not null).Select(t => new TagValue { Name = t.Key, Expression = t.Value }) ?? []);
            entry.ServerUpsertedTags.AddRange(tagged[m, 1]?.Where(t => t.Value is not null).Select(t => new TagValue { Name = t.Key, Expression = t.Value }) ?? []);
            if (entry.ClientDisabled || entry.ServerDisabled || entry.ClientRemovedTags.Count > 0 || entry.ServerRemovedTags.Count > 0
                || entry.ClientUpsertedTags.Count > 0 || entry.ServerUpsertedTags.Count > 0)
            {
                policy.Metrics.Add(entry);
            }
        }

        return policy;
    }
}
