using System.Collections.Concurrent;
using MeshKit.Resilience;

namespace MeshKit.LoadBalancing;

/// <summary>Per cluster, across snapshots: requests and retries in flight, and the health of each endpoint.</summary>
internal sealed class ClusterRuntime
{
    private readonly ConcurrentDictionary<string, EndpointHealth> _health = new(StringComparer.Ordinal);

    internal int _activeRequests;
    internal int _activeRetries;
    internal int _ejected;

    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    public int ActiveRetries => Volatile.Read(ref _activeRetries);

    /// <summary>Gets how many endpoints are ejected now.</summary>
    public int Ejected => Volatile.Read(ref _ejected);

    /// <summary>Gets or sets how many endpoints the cluster has (set per snapshot; max ejection percent is of it).</summary>
    public int EndpointCount { get; set; }

    public EndpointHealth HealthOf(string key) => _health.GetOrAdd(key, static (_, cluster) => new EndpointHealth(cluster), this);

    public void Retain(IReadOnlySet<string> keys)
    {
        foreach (var (key, health) in _health)
        {
            if (!keys.Contains(key) && _health.TryRemove(key, out _) && health.IsEjected)
            {
                Interlocked.Decrement(ref _ejected);
            }
        }
    }
}
