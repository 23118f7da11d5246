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

    private int _state;
    private long _ejectedUntil;
    private int _timesEjected;
    private int _consecutive5xx;
    private int _consecutiveGateway;
    private int _consecutiveLocal;
    private long _lastDecrement;

    public bool IsEjected => Volatile.Read(ref _state) != Healthy;

    public int TimesEjected => Volatile.Read(ref _timesEjected);

    /// <summary>Returns whether a request may go to the endpoint now; after the ejection time, one caller probes.</summary>
    public bool TryUse(DateTimeOffset now)
    {
        var state = Volatile.Read(ref _state);
        if (state == Healthy)
        {
            return true;
        }

        return state == Ejected && now.UtcTicks >= Volatile.Read(ref _ejectedUntil)
            && Interlocked.CompareExchange(ref _state, Probing, Ejected) == Ejected;
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
            // The probe failed: back out, for longer.
            return Eject(policy, now, fromProbe: true);
        }

        return trip && Eject(policy, now, fromProbe: false);
    }

    private bool Eject(OutlierDetection policy, DateTimeOffset now, bool fromProbe)
    {
        if (!fromProbe)
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
        }
        else
        {
            Volatile.Write(ref _state, Ejected);
        }

        var times = Interlocked.Increment(ref _timesEjected);
        var duration = TimeSpan.FromMilliseconds(Math.Min(policy.BaseEjectionMs * (double)times, 300_000));
        Volatile.Write(ref _ejectedUntil, (now + duration).UtcTicks);
        _consecutive5xx = _consecutiveGateway = _consecutiveLocal = 0;
        return true;
    }
}
