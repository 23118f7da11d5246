using MeshKit.Config.Compilation;
using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.LoadBalancing;

/// <summary>A config push builds every endpoint anew; what requests to an unchanged endpoint share carries over.</summary>
public sealed class EndpointContinuityTests
{
    private static readonly SourceWorkload Source = new("default", new Dictionary<string, string> { ["app"] = "productpage" });

    private static WorkloadAnnouncement Reviews(string identity)
    {
        var w = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = "reviews-1", Address = "10.0.0.1", Identity = identity };
        w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
        return w;
    }

    private static EndpointView Build(MeshRuntime runtime, WorkloadAnnouncement reviews, string version)
    {
        var view = MeshCompiler.Compile(new ConfigSet([]), [reviews]).ViewFor("default", Source.Labels);
        var snapshot = SnapshotBuilder.Build(view.Resources, Source, version, ready: true, runtime);
        Assert.True(snapshot.TryResolve("reviews", out var service));
        return Assert.Single(service.Routes[0].Targets[0].Endpoints!.Endpoints);
    }

    [Fact]
    public void RequestsInFlight_AndWhatTheEndpointTold_SurviveAPush_UnlessItIsAnotherEndpoint()
    {
        var runtime = new MeshRuntime(TimeProvider.System);
        var first = Build(runtime, Reviews("spiffe://cluster.local/ns/default/sa/reviews"), "1");
        Interlocked.Increment(ref first.Recent.Active);
        MeshKit.Telemetry.PeerMetadata.Parse("w=reviews-v1;n=default;a=reviews;v=v1;s=reviews", ref first.Recent.AnsweredMetadata);

        // The next version's view of the same endpoint: another object, the same shared state.
        var second = Build(runtime, Reviews("spiffe://cluster.local/ns/default/sa/reviews"), "2");
        Assert.NotSame(first, second);
        Assert.Equal(1, second.ActiveRequests);
        Assert.Equal("reviews-v1", second.AnsweredMetadata?.Workload);

        // A request that started on the old view ends on it: the count is the same one.
        Interlocked.Decrement(ref first.Recent.Active);
        Assert.Equal(0, second.ActiveRequests);

        // The same address under another identity is another workload: nothing carries over.
        Interlocked.Increment(ref second.Recent.Active);
        var other = Build(runtime, Reviews("spiffe://cluster.local/ns/default/sa/impostor"), "3");
        Assert.Equal(0, other.ActiveRequests);
        Assert.Null(other.AnsweredMetadata);
    }

    [Fact]
    public void ARoundRobinBuiltAnew_StartsAnywhere_NotAlwaysAtTheFirstEndpoint()
    {
        // Every push builds the balancer anew: a caller sending one request between pushes would otherwise always
        // reach the first endpoint.
        var endpoints = new[] { "10.0.0.1", "10.0.0.2", "10.0.0.3" }.Select(a =>
        {
            var endpoint = new Endpoint { Address = a };
            endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
            return new EndpointView(endpoint);
        }).ToArray();

        var firsts = Enumerable.Range(0, 300).Select(_ => LoadBalancer.Create("ROUND_ROBIN").Pick(endpoints)!.Address).CountBy(a => a).ToDictionary();

        Assert.Equal(3, firsts.Count);
        Assert.All(firsts.Values, n => Assert.InRange(n, 50, 150));

        // And a balancer still rotates through all of them in turn.
        var balancer = LoadBalancer.Create("ROUND_ROBIN");
        Assert.Equal(3, Enumerable.Range(0, 3).Select(_ => balancer.Pick(endpoints)!.Address).Distinct().Count());
    }

    [Fact]
    public void APushTheWorkloadRefuses_LeavesThePoolsAndEndpointHealthOfTheSnapshotInForce()
    {
        // Before, the build changed what outlives snapshots as it went: a push refused late (here, an access-log filter
        // this workload cannot compile) had already replaced the destination's connection pool, retiring the one the
        // kept snapshot uses (disposed two minutes later: its calls then failed), and forgotten its endpoints' health.
        var runtime = new MeshRuntime(TimeProvider.System);
        var reviews = Reviews("spiffe://cluster.local/ns/default/sa/reviews");
        var kept = SnapshotBuilder.Build(Resources(maxConnections: 10, [reviews]), Source, "1", ready: true, runtime);
        Assert.True(kept.TryResolve("reviews", out var service));
        var set = service.Routes[0].Targets[0].Endpoints!;
        var pool = set.Upstream.Transport;
        Assert.NotNull(pool);
        var endpoint = Assert.Single(set.Endpoints);
        var health = endpoint.Health;
        Assert.NotNull(health);

        var refused = Resources(maxConnections: 20, [], clientFilter: "response.code >= ");
        Assert.Throws<MeshConfigException>(() => SnapshotBuilder.Build(refused, Source, "2", ready: true, runtime));

        Assert.Same(health, runtime.Cluster("reviews.default.svc.cluster.local").HealthOf(endpoint.Key));
        var again = SnapshotBuilder.Build(Resources(maxConnections: 10, [reviews]), Source, "3", ready: true, runtime);
        Assert.True(again.TryResolve("reviews", out var same));
        Assert.Same(pool, same.Routes[0].Targets[0].Endpoints!.Upstream.Transport);
    }

    private static Dictionary<string, IReadOnlyDictionary<string, Resource>> Resources(int maxConnections, WorkloadAnnouncement[] workloads, string? clientFilter = null)
    {
        var yaml = $$"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                connectionPool: { tcp: { maxConnections: {{maxConnections}} } }
                outlierDetection: { consecutive5xxErrors: 1 }
            """;
        var resources = PushedResources.For(yaml, Source.Labels, workloads);
        if (clientFilter is not null)
        {
            // What another control plane could push: this workload compiles it and refuses what it cannot.
            PushedResources.SetClientAccessLogFilter(resources, clientFilter);
        }

        return resources;
    }
}
