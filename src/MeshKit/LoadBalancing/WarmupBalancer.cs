using MeshKit.Protocol.V1;

namespace MeshKit.LoadBalancing;

/// <summary>
/// Slow start (Istio's <c>warmup</c>, Envoy's slow_start_config): while an endpoint is younger than the window, its
/// weight is max(minimum, (age / window)^(1 / aggression)) and endpoints are picked by weight; once every endpoint is
/// warm, the inner balancer picks as usual at no extra cost.
/// </summary>
internal sealed class WarmupBalancer : LoadBalancer
{
    private readonly LoadBalancer _inner;
    private readonly TimeProvider _time;
    private readonly DateTimeOffset[] _since;
    private readonly double _window;
    private readonly double _minimum;
    private readonly double _exponent;
    private readonly DateTimeOffset _allWarm;

    public WarmupBalancer(LoadBalancer inner, EndpointView[] endpoints, Warmup warmup, MeshRuntime clock)
    {
        _inner = inner;
        _time = clock.Time;
        _since = endpoints.Select(e => clock.FirstSeen(e.Key)).ToArray();
        _window = warmup.DurationMs;
        _minimum = Math.Clamp(warmup.MinimumPercent / 100, 0.0001, 1);
        _exponent = 1 / Math.Max(1, warmup.Aggression);
        _allWarm = _since.Length == 0 ? DateTimeOffset.MinValue : _since.Max() + TimeSpan.FromMilliseconds(_window);
    }

    public override EndpointView? Pick(EndpointView[] endpoints)
    {
        var now = _time.GetUtcNow();
        if (now >= _allWarm || endpoints.Length != _since.Length)
        {
            return _inner.Pick(endpoints);
        }

        Span<double> weights = endpoints.Length <= 64 ? stackalloc double[endpoints.Length] : new double[endpoints.Length];
        var total = 0.0;
        for (var i = 0; i < endpoints.Length; i++)
        {
            var age = (now - _since[i]).TotalMilliseconds;
            weights[i] = age >= _window ? 1 : Math.Max(_minimum, Math.Pow(Math.Max(age, 1) / _window, _exponent));
            total += weights[i];
        }

        var roll = Random.Shared.NextDouble() * total;
        for (var i = 0; i < endpoints.Length; i++)
        {
            roll -= weights[i];
            if (roll < 0)
            {
                return endpoints[i];
            }
        }

        return endpoints[^1];
    }
}
