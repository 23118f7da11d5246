using System.Collections.Concurrent;

namespace MeshKit.LoadBalancing;

/// <summary>
/// The state of the data plane that outlives snapshots: when this process first saw each endpoint (slow start measures
/// from it; local time, so no clock skew with the control plane matters), and per cluster the requests and retries in
/// flight and each endpoint's health (outlier detection). Pruned to what the latest snapshot holds.
/// </summary>
internal sealed class MeshRuntime(TimeProvider time, Security.WorkloadIdentity? identity = null)
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _firstSeen = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ClusterRuntime> _clusters = new(StringComparer.Ordinal);

    /// <summary>Returns the state of a service (by host: endpoint health) or of one destination (by its name: requests in flight).</summary>
    public ClusterRuntime Cluster(string key) => _clusters.GetOrAdd(key, static _ => new ClusterRuntime());

    /// <summary>Gets the connection pools of destinations with connection settings of their own.</summary>
    public Http.ClusterTransports Transports => _transports ??= new Http.ClusterTransports(identity);

    private Http.ClusterTransports? _transports;

    /// <summary>Forgets the services and destinations the latest snapshot no longer has (<paramref name="keys"/>: hosts and destination names).</summary>
    public void RetainClusters(IReadOnlySet<string> keys)
    {
        _transports?.Retain(keys);
        foreach (var key in _clusters.Keys)
        {
            if (!keys.Contains(key))
            {
                _clusters.TryRemove(key, out _);
            }
        }
    }

    public TimeProvider Time { get; } = time;

    public DateTimeOffset FirstSeen(string key) => _firstSeen.GetOrAdd(key, static (_, t) => t.GetUtcNow(), Time);

    public void Retain(IReadOnlySet<string> keys)
    {
        foreach (var key in _firstSeen.Keys)
        {
            if (!keys.Contains(key))
            {
                _firstSeen.TryRemove(key, out _);
            }
        }
    }
}
