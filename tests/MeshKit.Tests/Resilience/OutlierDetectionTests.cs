using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Resilience;
using MeshKit.Snapshot;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Resilience;

public class OutlierDetectionTests
{
    private static readonly OutlierDetection Policy = new()
    {
        Consecutive5XxErrors = 3, IntervalMs = 1000, BaseEjectionMs = 10_000, MaxEjectionPercent = 100,
    };

    private static (EndpointHealth Health, ClusterRuntime Cluster) Endpoint(int endpoints = 4)
    {
        var cluster = new ClusterRuntime { EndpointCount = endpoints };
        return (cluster.HealthOf("10.0.0.1:80"), cluster);
    }

    [Fact]
    public void ConsecutiveErrors_Eject_ForBaseTimesTimesEjected_ThenOneCallerProbes()
    {
        var time = new FakeTimeProvider();
        var (health, cluster) = Endpoint();

        health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        Assert.True(health.TryUse(time.GetUtcNow()));
        health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        Assert.True(health.IsEjected);
        Assert.Equal(1, cluster.Ejected);
        Assert.False(health.TryUse(time.GetUtcNow()));

        time.Advance(TimeSpan.FromSeconds(10));
        var probes = Enumerable.Range(0, 16).AsParallel().Count(_ => health.TryUse(time.GetUtcNow()));
        Assert.Equal(1, probes);

        // The probe fails: ejected again, for twice the base time.
        health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        time.Advance(TimeSpan.FromSeconds(19));
        Assert.False(health.TryUse(time.GetUtcNow()));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(health.TryUse(time.GetUtcNow()));
        health.Record(AttemptResult.Success, Policy, time.GetUtcNow());
        Assert.False(health.IsEjected);
        Assert.Equal(0, cluster.Ejected);
        Assert.True(health.TryUse(time.GetUtcNow()));
    }

    [Fact]
    public void AnEndpointGoneFromTheConfig_NoLongerMovesTheClustersEjectedCount()
    {
        // Requests in flight to an endpoint that a push removed still report their outcomes on its health. Before, a
        // healthy one's failures then ejected it into the cluster's count for good (a phantom that the max ejection
        // percent kept counting), and a probing one's success took it out a second time (a count below zero).
        var time = new FakeTimeProvider();
        var (healthy, cluster) = Endpoint();
        var probing = cluster.HealthOf("10.0.0.2:80");
        for (var i = 0; i < 3; i++)
        {
            probing.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        }

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(probing.TryUse(time.GetUtcNow()));
        Assert.Equal(1, cluster.Ejected);

        cluster.Retain(new HashSet<string>());
        Assert.Equal(0, cluster.Ejected);

        for (var i = 0; i < 3; i++)
        {
            healthy.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        }

        Assert.Equal(0, cluster.Ejected);
        probing.Record(AttemptResult.Success, Policy, time.GetUtcNow());
        Assert.Equal(0, cluster.Ejected);

        // Requests that began on the snapshot before may still pick them, as healthy ones.
        Assert.True(healthy.TryUse(time.GetUtcNow()));
        Assert.True(probing.TryUse(time.GetUtcNow()));

        // The endpoint that comes back under the same address starts afresh.
        Assert.False(cluster.HealthOf("10.0.0.1:80").IsEjected);
    }

    [Fact]
    public void HealthyIntervals_ForgiveEjections()
    {
        var time = new FakeTimeProvider();
        var (health, _) = Endpoint();
        for (var i = 0; i < 3; i++)
        {
            health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
        }

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(health.TryUse(time.GetUtcNow()));
        health.Record(AttemptResult.Success, Policy, time.GetUtcNow());
        Assert.Equal(1, health.TimesEjected);

        time.Advance(TimeSpan.FromSeconds(1));
        health.Record(AttemptResult.Success, Policy, time.GetUtcNow());
        Assert.Equal(0, health.TimesEjected);
    }

    [Fact]
    public void Success_ResetsTheCount()
    {
        var time = new FakeTimeProvider();
        var (health, _) = Endpoint();
        for (var i = 0; i < 10; i++)
        {
            health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
            health.Record(AttemptResult.ServerError, Policy, time.GetUtcNow());
            health.Record(AttemptResult.Success, Policy, time.GetUtcNow());
        }

        Assert.False(health.IsEjected);
    }

    [Fact]
    public void GatewayAndLocalOriginCounters_FollowEnvoysSplitRules()
    {
        var time = new FakeTimeProvider();
        var gateway = new OutlierDetection { ConsecutiveGatewayErrors = 2, BaseEjectionMs = 1000, MaxEjectionPercent = 100 };
        var (health, _) = Endpoint();
        health.Record(AttemptResult.ServerError, gateway, time.GetUtcNow());
        health.Record(AttemptResult.ServerError, gateway, time.GetUtcNow());
        Assert.False(health.IsEjected);
        health.Record(AttemptResult.GatewayError, gateway, time.GetUtcNow());
        health.Record(AttemptResult.LocalOriginFailure, gateway, time.GetUtcNow());
        Assert.True(health.IsEjected);

        var split = new OutlierDetection { Consecutive5XxErrors = 2, ConsecutiveLocalOriginFailures = 3, SplitExternalLocalOriginErrors = true, BaseEjectionMs = 1000, MaxEjectionPercent = 100 };
        var (other, _) = Endpoint();
        other.Record(AttemptResult.LocalOriginFailure, split, time.GetUtcNow());
        other.Record(AttemptResult.LocalOriginFailure, split, time.GetUtcNow());
        Assert.False(other.IsEjected);
        other.Record(AttemptResult.LocalOriginFailure, split, time.GetUtcNow());
        Assert.True(other.IsEjected);
    }

    [Fact]
    public void MaxEjectionPercent_CapsEjections_ButOneIsAlwaysAllowed()
    {
        var time = new FakeTimeProvider();
        var policy = new OutlierDetection { Consecutive5XxErrors = 1, BaseEjectionMs = 1000, MaxEjectionPercent = 10 };
        var cluster = new ClusterRuntime { EndpointCount = 3 };
        var a = cluster.HealthOf("a");
        var b = cluster.HealthOf("b");
        a.Record(AttemptResult.ServerError, policy, time.GetUtcNow());
        b.Record(AttemptResult.ServerError, policy, time.GetUtcNow());

        Assert.True(a.IsEjected);
        Assert.False(b.IsEjected);
    }

    [Theory]
    [InlineData(0u, false)]
    [InlineData(50u, true)]
    public void AllEjected_Is503_UnlessBelowMinHealthPercentWhichIgnoresEjections(uint minHealth, bool picks)
    {
        var time = new FakeTimeProvider();
        var policy = new OutlierDetection { Consecutive5XxErrors = 1, BaseEjectionMs = 60_000, MaxEjectionPercent = 100, MinHealthPercent = minHealth };
        var cluster = new ClusterRuntime { EndpointCount = 2 };
        var endpoints = new[] { "10.0.0.1", "10.0.0.2" }.Select(a =>
        {
            var e = new Endpoint { Address = a };
            e.Ports.Add(new EndpointPort { ServicePort = 80, TargetPort = 80 });
            var view = new EndpointView(e) { Health = cluster.HealthOf(a) };
            view.Health.Record(AttemptResult.ServerError, policy, time.GetUtcNow());
            return view;
        }).ToArray();
        var set = EndpointSet.Create(endpoints, "ROUND_ROBIN", null, null, new SourceWorkload("default", new Dictionary<string, string>())).WithUpstream(new Upstream(cluster), policy, time);

        Assert.Equal(picks, set.Pick() is not null);
    }

    [Fact]
    public void RetryBudget_LimitsRetriesInFlight()
    {
        var cluster = new ClusterRuntime();
        var state = new AttemptState
        {
            Request = new HttpRequestMessage(), Uri = new Uri("http://a/"), Endpoints = new EndpointSet([], LoadBalancer.Create(null)), Port = 80,
            PathAndQuery = "/", Idempotent = true, Replayable = true, Cluster = cluster,
            Limits = new ConnectionLimits { RetryBudgetPercent = 20, MinRetryConcurrency = 2 },
        };

        cluster._activeRequests = 50;
        cluster._activeRetries = 9;
        Assert.True(RouteResilience.WithinBudget(state));
        cluster._activeRetries = 10;
        Assert.False(RouteResilience.WithinBudget(state));
        cluster._activeRequests = 1;
        cluster._activeRetries = 1;
        Assert.True(RouteResilience.WithinBudget(state));
        cluster._activeRetries = 2;
        Assert.False(RouteResilience.WithinBudget(state));

        var maxRetries = new AttemptState
        {
            Request = state.Request, Uri = state.Uri, Endpoints = state.Endpoints, Port = 80, PathAndQuery = "/", Idempotent = true, Replayable = true,
            Cluster = cluster, Limits = new ConnectionLimits { MaxRetries = 2 },
        };
        Assert.False(RouteResilience.WithinBudget(maxRetries));
    }
}
