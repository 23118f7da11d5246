using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;

namespace MeshKit.Resilience;

/// <summary>How an attempt ended, as outlier detection counts it.</summary>
internal enum AttemptResult
{
    Success,

    /// <summary>The upstream answered 5xx (other than 502, 503, 504).</summary>
    ServerError,

    /// <summary>The upstream answered 502, 503 or 504.</summary>
    GatewayError,

    /// <summary>Connect failure, reset or timeout: the failure happened here, not at the upstream.</summary>
    LocalOriginFailure,
}

/// <summary>
/// One endpoint's health, as Envoy's outlier detection keeps it: consecutive errors of each kind; ejection for
/// base ejection time × times ejected (unless the cluster's max ejection percent is reached); after it, a half-open
/// state in which exactly one caller probes the endpoint — success returns it, failure ejects it again, longer.
/// </summary>
internal sealed class EndpointHealth(ClusterRuntime cluster)
{
    private const int Healthy = 0;
    private const int Ejected = 1;
    private const int Probing = 2;

    // Gone from the config: outcomes of requests still in flight to it no longer move the cluster's ejected count. It
    // stays usable, as a healthy one: a request that began on the snapshot before may still pick it for a retry.
    private const int Removed = 3;

    private int _state;
    private long _ejectedUntil;
    private int _timesEjected;
    private int _consecutive5xx;
    private int _consecutiveGateway;
    private int _consecutiveLocal;
    private long _lastDecrement;

    public bool IsEjected => Volatile.Read(ref _state) is Ejected or Probing;

    public int TimesEjected => Volatile.Read(ref _timesEjected);

    /// <summary>Gets the state's name, for diagnostics: healthy, ejected, probing (one caller tries it) or removed (gone from the config).</summary>
    public string StateName => Volatile.Read(ref _state) switch
    {
        Ejected => "ejected",
        Probing => "probing",
        Removed => "removed",
        _ => "healthy",
    };

    /// <summary>Gets when the current ejection ends (one caller then probes); null when the endpoint is not ejected.</summary>
    public DateTimeOffset? EjectedUntil => IsEjected ? new DateTimeOffset(Volatile.Read(ref _ejectedUntil), TimeSpan.Zero) : null;

    /// <summary>Returns whether a request may go to the endpoint now; after the ejection time, one caller probes.</summary>
    public bool TryUse(DateTimeOffset now)
    {
        var state = Volatile.Read(ref _state);
        if (state is Healthy or Removed)
        {
            return true;
        }

        return state == Ejected && now.UtcTicks >= Volatile.Read(ref _ejectedUntil)
            && Interlocked.CompareExchange(ref _state, Probing, Ejected) == Ejected;
    }

    /// <summary>
    /// Marks the endpoint gone from the config; returns whether it was counted among the cluster's ejected ones (the
    /// caller takes it out of the count). One transition, so a probe's success racing with it cannot take it out too.
    /// </summary>
    public bool Remove()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if (state == Removed)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _state, Removed, state) == state)
            {
                return state is Ejected or Probing;
            }
        }
    }

    /// <summary>A probe that ended without an outcome (the caller gave up) lets the next caller probe.</summary>
    public void Abandon() => Interlocked.CompareExchange(ref _state, Ejected, Probing);

    /// <summary>Counts one outcome; returns whether it ejected the endpoint.</summary>
    public bool Record(AttemptResult result, OutlierDetection policy, DateTimeOffset now)
    {
        if (result == AttemptResult.Success)
        {
            _consecutive5xx = _consecutiveGateway = _consecutiveLocal = 0;
            if (Interlocked.CompareExchange(ref _state, Healthy, Probing) == Probing)
            {
                Interlocked.Decrement(ref cluster._ejected);
                Volatile.Write(ref _lastDecrement, now.UtcTicks);
            }
            else if (Volatile.Read(ref _timesEjected) > 0 && now.UtcTicks - Volatile.Read(ref _lastDecrement) >= TimeSpan.FromMilliseconds(policy.IntervalMs).Ticks)
            {
                // Healthy for an interval: one ejection is forgiven, as Envoy's interval sweep does.
                Volatile.Write(ref _lastDecrement, now.UtcTicks);
                Interlocked.Decrement(ref _timesEjected);
            }

            return false;
        }

        // Without split, local-origin failures count as 5xx and gateway errors, as Envoy maps them to 503.
        var split = policy.SplitExternalLocalOriginErrors;
        var local = result == AttemptResult.LocalOriginFailure;
        var count5xx = !local || !split;
        var countGateway = result == AttemptResult.GatewayError || (local && !split);
        var trip =
            (count5xx && policy.Consecutive5XxErrors > 0 && Interlocked.Increment(ref _consecutive5xx) >= policy.Consecutive5XxErrors)
            | (countGateway && policy.ConsecutiveGatewayErrors > 0 && Interlocked.Increment(ref _consecutiveGateway) >= policy.ConsecutiveGatewayErrors)
            | (local && split && policy.ConsecutiveLocalOriginFailures > 0 && Interlocked.Increment(ref _consecutiveLocal) >= policy.ConsecutiveLocalOriginFailures);

        if (Volatile.Read(ref _state) == Probing)
        {
            // The probe failed: back out, for longer (still counted as ejected). The new end is written before the
            // state, so no caller probes early; a removal meanwhile wins.
            Backoff(policy, now);
            return Interlocked.CompareExchange(ref _state, Ejected, Probing) == Probing;
        }

        return trip && Eject(policy, now);
    }

    private bool Eject(OutlierDetection policy, DateTimeOffset now)
    {
        // Max ejection percent: there is always room for one ejection, as in Envoy.
        var total = Math.Max(1, cluster.EndpointCount);
        if (cluster.Ejected * 100 >= policy.MaxEjectionPercent * total && cluster.Ejected > 0)
        {
            return false;
        }

        if (Interlocked.CompareExchange(ref _state, Ejected, Healthy) != Healthy)
        {
            return false;
        }

        Interlocked.Increment(ref cluster._ejected);
        Backoff(policy, now);
        return true;
    }

    // Base ejection time × times ejected (capped at 300 s, as Envoy's max ejection time); the error counts start over.
    private void Backoff(OutlierDetection policy, DateTimeOffset now)
    {
        var times = Interlocked.Increment(ref _timesEjected);
        var duration = TimeSpan.FromMilliseconds(Math.Min(policy.BaseEjectionMs * (double)times, 300_000));
        Volatile.Write(ref _ejectedUntil, (now + duration).UtcTicks);
        _consecutive5xx = _consecutiveGateway = _consecutiveLocal = 0;
    }
}
