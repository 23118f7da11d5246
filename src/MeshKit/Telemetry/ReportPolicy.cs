using MeshKit.Protocol.V1;

namespace MeshKit.Telemetry;

/// <summary>
/// What the Telemetry API changes of Istio's standard metrics for this workload (<see cref="TelemetryPolicy"/>, resolved
/// by the control plane), compiled once per config version: per reporter, which of the four metrics are off and which
/// labels each keeps. A report carries the policy of the snapshot it was made under, so a change applies from the next
/// request on, and reports made under different policies are never counted together.
/// </summary>
internal sealed class ReportPolicy
{
    private static string[] Metrics => Config.IstioStandardMetrics.Metrics;

    internal const int Count = 0, Duration = 1, RequestSize = 2, ResponseSize = 3;

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

            client.Set(m, entry.ClientDisabled, entry.ClientRemovedTags);
            server.Set(m, entry.ServerDisabled, entry.ServerRemovedTags);
        }

        return new ReportPolicy(client, server);
    }

    /// <summary>Gets the side that applies to a report of <paramref name="reporter"/>.</summary>
    public Side For(string reporter) => reporter == "source" ? Client : Server;

    /// <summary>One reporter's switches: a metric off, or the indexes (into Istio's 25 labels) of the labels it keeps.</summary>
    internal sealed class Side
    {
        private readonly bool[] _off = new bool[Metrics.Length];
        private readonly int[]?[] _kept = new int[]?[Metrics.Length];

        public bool Off(int metric) => _off[metric];

        /// <summary>Gets the indexes of the labels <paramref name="metric"/> keeps; null when it keeps them all.</summary>
        public int[]? Kept(int metric) => _kept[metric];

        /// <summary>Gets whether every metric is off: such a report is not even buffered.</summary>
        public bool AllOff { get; private set; }

        /// <summary>
        /// The labels <paramref name="metric"/> is recorded with: <paramref name="tags"/> itself when it keeps them all,
        /// else the kept ones copied into <paramref name="scratch"/>.
        /// </summary>
        public ReadOnlySpan<KeyValuePair<string, object?>> Labels(int metric, KeyValuePair<string, object?>[] tags, KeyValuePair<string, object?>[] scratch)
        {
            if (_kept[metric] is not { } kept)
            {
                return tags;
            }

            for (var i = 0; i < kept.Length; i++)
            {
                scratch[i] = tags[kept[i]];
            }

            return scratch.AsSpan(0, kept.Length);
        }

        internal void Set(int metric, bool off, IReadOnlyCollection<string> removed)
        {
            _off[metric] = off;
            AllOff = Array.TrueForAll(_off, o => o);
            if (removed.Count > 0)
            {
                // A label name Istio does not have removes nothing (validation warned about it).
                var names = Config.IstioStandardMetrics.Labels;
                _kept[metric] = Enumerable.Range(0, names.Length).Where(i => !removed.Contains(names[i])).ToArray();
            }
        }
    }
}
