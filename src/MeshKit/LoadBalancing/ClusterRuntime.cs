using System.Collections.Concurrent;
using MeshKit.Resilience;

namespace MeshKit.LoadBalancing;

/// <summary>
/// Across snapshots: per service, the health of each endpoint; per destination with limits (<see cref="Upstream"/>), the
/// requests and retries in flight.
/// </summary>
internal sealed class ClusterRuntime
{
    // Created when outlier detection first tracks an endpoint: most clusters never need it.
    private ConcurrentDictionary<string, EndpointHealth>? _health;

    internal int _activeRequests;
    internal int _activeRetries;
    internal int _ejected;

    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    public int ActiveRetries => Volatile.Read(ref _activeRetries);

    /// <summary>Gets how many endpoints are ejected now.</summary>
    public int Ejected => Volatile.Read(ref _ejected);

    /// <summary>Gets or sets how many endpoints the cluster has (set per snapshot; max ejection percent is of it).</summary>
    public int EndpointCount { get; set; }

    /// <summary>
    /// Gets or sets the endpoints of the latest snapshot built, so the next one can carry over what requests to an
    /// unchanged endpoint share (<see cref="EndpointView.Adopt"/>).
    /// </summary>
    public EndpointView[]? Endpoints { get; set; }

    public EndpointHealth HealthOf(string key) =>
        LazyInitializer.EnsureInitialized(ref _health, static () => new ConcurrentDictionary<string, EndpointHealth>(StringComparer.Ordinal))
            .GetOrAdd(key, static (_, cluster) => new EndpointHealth(cluster), this);

    public void Retain(IReadOnlySet<string> keys)
    {
        if (Volatile.Read(ref _health) is not { } tracked)
        {
            return;
        }

        foreach (var (key, health) in tracked)
        {
            if (!keys.Contains(key) && tracked.TryRemove(key, out _) && health.Remove())
            {
                Interlocked.Decrement(ref _ejected);
            }
        }
    }
}
