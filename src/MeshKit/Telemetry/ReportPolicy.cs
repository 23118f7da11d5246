using MeshKit.Protocol.V1;

namespace MeshKit.Telemetry;

/// <summary>
/// What the Telemetry API changes of Istio's standard metrics for this workload (<see cref="TelemetryPolicy"/>, resolved
/// by the control plane), compiled once per config version: per reporter, which of the six metrics are off and which
/// labels each keeps. A report carries the policy of the snapshot it was made under, so a change applies from the next
/// request on, and reports made under different policies are never counted together.
/// </summary>
internal sealed class ReportPolicy
{
    private static string[] Metrics => Config.IstioStandardMetrics.Metrics;

    internal const int Count = 0, Duration = 1, RequestSize = 2, ResponseSize = 3, RequestMessages = 4, ResponseMessages = 5;

    // The gRPC message counts' labels without an override: Istio's less the five that describe the outcome.
    private static readonly Label[] MessageLabels =
        [.. Enumerable.Range(0, Config.IstioStandardMetrics.Labels.Length).Where(i => Config.IstioStandardMetrics.Carries(RequestMessages, i)).Select(i => new Label(Config.IstioStandardMetrics.Labels[i], i, -1))];

    /// <summary>Gets the labels <paramref name="metric"/> is written with when no Telemetry policy changes them; null when they are Istio's 25 as they are.</summary>
    public static Label[]? DefaultPlan(int metric) => metric >= RequestMessages ? MessageLabels : null;

    private ReportPolicy(Side client, Side server) => (Client, Server) = (client, server);

    /// <summary>Gets what the caller's reports (<c>reporter="source"</c>, mode CLIENT) keep.</summary>
    public Side Client { get; }

    /// <summary>Gets what the server's reports (<c>reporter="destination"</c>, mode SERVER) keep.</summary>
    public Side Server { get; }

    /// <summary>Compiles <paramref name="policy"/>; null when it changes nothing (every metric, every label: the usual path).</summary>
    public static ReportPolicy? From(TelemetryPolicy? policy)
    {
        if (policy is null || policy.Metrics.Count == 0)
        {
            return null;
        }

        var client = new Side();
        var server = new Side();
        var seen = new HashSet<int>();
        foreach (var entry in policy.Metrics)
        {
            var m = Array.IndexOf(Metrics, entry.Metric);
            if (m < 0 || !seen.Add(m))
            {
                throw new MeshConfigException($"Telemetry: metric '{entry.Metric}' is unknown or given twice");
            }

            client.Set(m, entry.ClientDisabled, entry.ClientRemovedTags, entry.ClientUpsertedTags);
            server.Set(m, entry.ServerDisabled, entry.ServerRemovedTags, entry.ServerUpsertedTags);
        }

        return new ReportPolicy(client, server);
    }

    /// <summary>Gets the side that applies to a report of <paramref name="reporter"/>.</summary>
    public Side For(string reporter) => reporter == "source" ? Client : Server;

    /// <summary>
    /// One reporter's switches: a metric off, and the labels each metric is written with (its plan): Istio's 25 in
    /// order less the removed ones, a standard label's value replaced where an UPSERT names it, and the labels an UPSERT
    /// adds after them. The values of the UPSERTs are evaluated on the request's thread, once per distinct expression
    /// (<see cref="Evaluate"/>), and ride the report.
    /// </summary>
    internal sealed class Side
    {
        private readonly bool[] _off = new bool[Metrics.Length];
        private readonly Label[]?[] _plan = [.. Enumerable.Range(0, Metrics.Length).Select(DefaultPlan)];
        private readonly List<(string Name, string Expression, Config.Expressions.CelProgram Program)> _values = [];

        public bool Off(int metric) => _off[metric];

        /// <summary>Gets the labels <paramref name="metric"/> is written with; null when they are Istio's 25 as they are (<see cref="DefaultPlan"/>).</summary>
        public Label[]? Plan(int metric) => _plan[metric];

        /// <summary>Gets whether every metric is off: such a report is not even buffered.</summary>
        public bool AllOff { get; private set; }

        /// <summary>Gets whether a report needs values evaluated for it (some metric has an UPSERT).</summary>
        public bool HasValues => _values.Count > 0;

        /// <summary>Gets the most labels a metric is written with.</summary>
        public int Width { get; private set; } = IstioMetrics.LabelCount;

        /// <summary>
        /// Evaluates every UPSERT's expression for a request: its value as CEL's <c>string()</c> writes it, or
        /// <c>unknown</c> (Istio's word for a value it does not know) when the expression fails for this request.
        /// </summary>
        public string[] Evaluate(Config.Expressions.ICelContext request)
        {
            var values = new string[_values.Count];
            for (var i = 0; i < values.Length; i++)
            {
                var value = Config.Expressions.CelOps.ToText(_values[i].Program.Evaluate(request));
                values[i] = value.IsError || value.Type != Config.Expressions.CelType.String ? "unknown" : value.String;
            }

            return values;
        }

        /// <summary>
        /// The labels <paramref name="metric"/> is recorded with: <paramref name="tags"/> itself when it keeps Istio's 25 as
        /// they are, else its plan filled into <paramref name="scratch"/> (at least <see cref="Width"/> long) from
        /// <paramref name="tags"/> and the report's UPSERT <paramref name="values"/>.
        /// </summary>
        public ReadOnlySpan<KeyValuePair<string, object?>> Labels(int metric, KeyValuePair<string, object?>[] tags, string[]? values, KeyValuePair<string, object?>[] scratch)
        {
            if (_plan[metric] is not { } plan)
            {
                return tags;
            }

            for (var i = 0; i < plan.Length; i++)
            {
                var label = plan[i];
                scratch[i] = new(label.Name, label.Value >= 0 ? values?[label.Value] ?? "unknown" : tags[label.Standard].Value);
            }

            return scratch.AsSpan(0, plan.Length);
        }

        internal void Set(int metric, bool off, IReadOnlyCollection<string> removed, IReadOnlyCollection<Protocol.V1.TagValue> upserted)
        {
            _off[metric] = off;
            AllOff = Array.TrueForAll(_off, o => o);
            if (removed.Count == 0 && upserted.Count == 0)
            {
                return;
            }

            // A label name Istio does not have removes nothing (validation warned about it). The message counts start
            // from their own labels: a value for one they lack (response_code) adds it, as Istio's tag overrides do.
            var names = Config.IstioStandardMetrics.Labels;
            var plan = Enumerable.Range(0, names.Length).Where(i => Config.IstioStandardMetrics.Carries(metric, i) && !removed.Contains(names[i])).Select(i => new Label(names[i], i, -1)).ToList();
            foreach (var tag in upserted)
            {
                var slot = _values.FindIndex(v => v.Name == tag.Name && v.Expression == tag.Expression);
                if (slot < 0)
                {
                    Config.Expressions.CelProgram program;
                    try
                    {
                        program = Config.Expressions.RequestAttributes.CompileValue(tag.Expression);
                    }
                    catch (Config.Expressions.CelException ex)
                    {
                        throw new MeshConfigException($"Telemetry: label '{tag.Name}' = '{tag.Expression}': {ex.Detail}", ex);
                    }

                    _values.Add((tag.Name, tag.Expression, program));
                    slot = _values.Count - 1;
                }

                var standard = plan.FindIndex(l => l.Name == tag.Name);
                if (standard >= 0)
                {
                    plan[standard] = plan[standard] with { Value = slot };
                }
                else if (names.Contains(tag.Name) && Config.IstioStandardMetrics.Carries(metric, Array.IndexOf(names, tag.Name)))
                {
                    throw new MeshConfigException($"Telemetry: label '{tag.Name}' is both removed and given a value");
                }
                else
                {
                    plan.Add(new Label(tag.Name, -1, slot));
                }
            }

            _plan[metric] = [.. plan];
            Width = Math.Max(Width, plan.Count);
        }
    }

    /// <summary>One label of a metric's plan: its name, and where its value comes from (a standard label's, or an UPSERT's).</summary>
    /// <param name="Name">The label's name.</param>
    /// <param name="Standard">The index of the standard label whose value it writes; -1 for an added label.</param>
    /// <param name="Value">The index of the UPSERT value it writes instead; -1 for the standard label's value.</param>
    internal readonly record struct Label(string Name, int Standard, int Value);
}
