using Google.Protobuf.WellKnownTypes;
using MeshKit.Config.Compilation;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using MeshKit.Sync;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MeshKit.Tests.Sync;

public class MeshSyncServiceTests
{
    private static (MeshSyncService Service, MeshSnapshotProvider Provider) Create()
    {
        var options = Options.Create(new MeshOptions { ServiceName = "productpage", ReconnectBaseDelay = TimeSpan.FromMilliseconds(100), ReconnectMaxDelay = TimeSpan.FromSeconds(2) });
        var provider = new MeshSnapshotProvider(options, TimeProvider.System);
        var services = new ServiceCollection().BuildServiceProvider();
        var service = new MeshSyncService(provider, options, new WorkloadAnnouncer(options, services), new MeshKit.Security.WorkloadIdentity(options, TimeProvider.System), new MeshSyncStatus(), TimeProvider.System, new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance), NullLogger<MeshSyncService>.Instance);
        return (service, provider);
    }

    private static Resource Routes(string host, string regex)
    {
        var routes = new ServiceRoutes { Host = host, Namespace = "default", ShortName = host.Split('.')[0] };
        var route = new HttpRoute { Name = "r" };
        route.Matches.Add(new HttpMatch { Uri = new StringMatch { Regex = regex } });
        route.Destinations.Add(new WeightedDestination { Host = host, Weight = 100 });
        routes.HttpRoutes.Add(route);
        return new Resource { Name = host, Version = regex, Resource_ = Any.Pack(routes) };
    }

    private static DiscoveryResponse Response(string typeUrl, string version, params Resource[] resources)
    {
        var response = new DiscoveryResponse { TypeUrl = typeUrl, SystemVersionInfo = version, Nonce = version };
        response.Resources.AddRange(resources);
        return response;
    }

    [Fact]
    public void Apply_BecomesReadyOnlyOnceEveryTypeArrived()
    {
        var (sync, provider) = Create();

        Assert.Null(sync.Apply(Response(ResourceTypes.Mesh, "1")));
        Assert.Null(sync.Apply(Response(ResourceTypes.Inbound, "1")));
        Assert.Null(sync.Apply(Response(ResourceTypes.Cluster, "1")));
        Assert.False(provider.Current.IsReady);
        Assert.Null(sync.Apply(Response(ResourceTypes.Routes, "1", Routes("a.default.svc.cluster.local", "/a"))));

        Assert.True(provider.Current.IsReady);
        Assert.True(provider.Current.TryResolve("a", out _));
    }

    [Fact]
    public void Apply_InvalidResource_IsRejected_AndThePreviousSnapshotStays()
    {
        var (sync, provider) = Create();
        sync.Apply(Response(ResourceTypes.Mesh, "1"));
        sync.Apply(Response(ResourceTypes.Cluster, "1"));
        sync.Apply(Response(ResourceTypes.Routes, "1", Routes("a.default.svc.cluster.local", "/a")));
        var before = provider.Current;

        var error = sync.Apply(Response(ResourceTypes.Routes, "2", Routes("b.default.svc.cluster.local", "(unclosed")));

        Assert.NotNull(error);
        Assert.Contains("b.default.svc.cluster.local", error, StringComparison.Ordinal);
        Assert.Same(before, provider.Current);

        // The rejected delta is not held: the next good delta applies on top of the last good state.
        Assert.Null(sync.Apply(Response(ResourceTypes.Routes, "3", Routes("c.default.svc.cluster.local", "/c"))));
        Assert.True(provider.Current.TryResolve("a", out _));
        Assert.True(provider.Current.TryResolve("c", out _));
        Assert.False(provider.Current.TryResolve("b", out _));
    }

    [Fact]
    public void Apply_RemovedResources_LeaveTheSnapshot()
    {
        var (sync, provider) = Create();
        sync.Apply(Response(ResourceTypes.Mesh, "1"));
        sync.Apply(Response(ResourceTypes.Cluster, "1"));
        sync.Apply(Response(ResourceTypes.Routes, "1", Routes("a.default.svc.cluster.local", "/a"), Routes("b.default.svc.cluster.local", "/b")));

        var removal = Response(ResourceTypes.Routes, "2");
        removal.RemovedResources.Add("a.default.svc.cluster.local");
        Assert.Null(sync.Apply(removal));

        Assert.False(provider.Current.TryResolve("a", out _));
        Assert.True(provider.Current.TryResolve("b", out _));
    }

    [Fact]
    public void Apply_UnknownType_IsRejected()
    {
        var (sync, _) = Create();
        Assert.Contains("unknown resource type", sync.Apply(Response("type.googleapis.com/x.Y", "1")), StringComparison.Ordinal);
    }

    [Fact]
    public void Backoff_IsFullJitterUnderAnExponentialCeiling()
    {
        var (sync, _) = Create();
        for (var attempt = 0; attempt < 10; attempt++)
        {
            var ceiling = Math.Min(2000, 100 * Math.Pow(2, attempt));
            var delays = Enumerable.Range(0, 200).Select(_ => sync.Backoff(attempt).TotalMilliseconds).ToList();
            Assert.All(delays, d => Assert.InRange(d, 0, ceiling));
            Assert.True(delays.Max() > ceiling / 2, "jitter spreads over the whole range");
            Assert.True(delays.Distinct().Count() > 100, "delays are randomised");
        }
    }
}
