using System.Diagnostics;
using Grpc.Core;
using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Discovery;
using MeshKit.Protocol.V1;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.ControlPlane;

/// <summary>How the control plane pushes to a fleet: shared deltas, the push throttle, and when a change skips the debounce.</summary>
public sealed class PushPathTests
{
    private static Resource R(string name, string version) => new() { Name = name, Version = version };

    private static Dictionary<string, Resource> Map(params Resource[] resources) => resources.ToDictionary(r => r.Name, StringComparer.Ordinal);

    [Fact]
    public void A_delta_between_two_maps_is_computed_once_and_shared()
    {
        var a = R("a", "1");
        var before = Map(a, R("b", "1"), R("gone", "1"));
        var after = Map(a, R("b", "2"), R("new", "1"));

        var delta = ResourceDeltas.Between(before, after);

        Assert.Equal(["b", "new"], delta.Changed.Select(r => r.Name).Order());
        Assert.Equal(["gone"], delta.Removed);
        Assert.Same(delta, ResourceDeltas.Between(before, after));
        Assert.NotSame(delta, ResourceDeltas.Between(Map(a), after));
        Assert.Equal(3, ResourceDeltas.Full(after).Changed.Length);
    }

    [Fact]
    public void A_resumed_workload_is_sent_what_differs_from_the_versions_it_holds()
    {
        var wanted = Map(R("a", "1"), R("b", "2"));
        var held = new Dictionary<string, string>(StringComparer.Ordinal) { ["a"] = "1", ["b"] = "1", ["c"] = "1" };

        var delta = ResourceDeltas.From(held, wanted);

        Assert.Equal(["b"], delta.Changed.Select(r => r.Name));
        Assert.Equal(["c"], delta.Removed);
    }

    [Fact]
    public void Connections_in_sync_share_the_views_map_and_get_no_response_when_nothing_changed()
    {
        var connection = new WorkloadConnection(new WorkloadAnnouncement { Service = "a", Namespace = "default", InstanceId = "a-1" }, DateTimeOffset.UtcNow);
        var v1 = Map(R("a", "1"));
        var v2 = Map(R("a", "1"));
        var v3 = Map(R("a", "2"));

        var first = connection.Diff("t", v1, 1);
        Assert.NotNull(first);
        Assert.Single(first.Resources);
        Assert.Null(connection.Diff("t", v1, 2));
        Assert.Null(connection.Diff("t", v2, 3)); // same content, another map
        var changed = connection.Diff("t", v3, 4);
        Assert.NotNull(changed);
        Assert.Equal("2", Assert.Single(changed.Resources).Version);

        // A NACK puts back what the workload held before, so the next push repeats the delta.
        connection.Nack("t", changed.Nonce, "rejected", DateTimeOffset.UtcNow);
        var again = connection.Diff("t", v3, 5);
        Assert.NotNull(again);
        Assert.Equal("2", Assert.Single(again.Resources).Version);
    }

    [Fact]
    public async Task A_workload_that_stops_reading_holds_its_push_slot_only_for_a_while()
    {
        var time = new FakeTimeProvider();
        using var throttle = new PushThrottle(Options.Create(new ControlPlaneOptions { PushConcurrency = 1 }), time);
        var stuck = new Writer(completes: false);
        var healthy = new Writer(completes: true);

        var stuckWrite = throttle.WriteAsync(stuck, new DiscoveryResponse(), CancellationToken.None);
        var healthyWrite = throttle.WriteAsync(healthy, new DiscoveryResponse(), CancellationToken.None);
        await Task.Delay(100);
        Assert.Equal(0, healthy.Writes); // the only slot is taken

        time.Advance(PushThrottle.SlotHold);
        await healthyWrite.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, healthy.Writes);
        Assert.False(stuckWrite.IsCompleted); // still writing, outside the throttle
    }

    [Fact]
    public void A_push_concurrency_below_one_is_refused_at_start()
    {
        var error = Assert.Throws<OptionsValidationException>(() => ControlPlaneApp.Build(["--push-concurrency", "0"], o =>
        {
            o.ConfigDirectory = Path.GetTempPath();
            o.Listen = "http://127.0.0.1:0";
        }));

        Assert.Contains("ControlPlane:PushConcurrency must be at least 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_api_apply_after_a_quiet_period_is_pushed_at_once_and_a_burst_waits_for_the_debounce()
    {
        var debounce = TimeSpan.FromSeconds(2);
        await using var controlPlane = await TestControlPlane.StartAsync(configure: o =>
        {
            o.Debounce = debounce;
            o.MaxDebounce = TimeSpan.FromSeconds(20);
        });
        var publisher = controlPlane.Services.GetRequiredService<MeshStatePublisher>();
        using var admin = new HttpClient { BaseAddress = controlPlane.AdminAddress };
        while (publisher.Current is null)
        {
            await Task.Delay(50);
        }

        await Task.Delay(debounce + TimeSpan.FromMilliseconds(500)); // quiet
        var version = publisher.Current.Version;

        var watch = Stopwatch.StartNew();
        (await admin.PostAsync("/config?name=a.yaml", new StringContent(Route("a")))).EnsureSuccessStatusCode();
        await NewerAsync(publisher, version);
        Assert.True(watch.Elapsed < debounce * 0.75, $"published after {watch.Elapsed}; a debounced publish takes {debounce}");

        // Within the quiet period after it, another apply and a file written by hand are a burst: debounced.
        version = publisher.Current.Version;
        watch.Restart();
        (await admin.PostAsync("/config?name=b.yaml", new StringContent(Route("b")))).EnsureSuccessStatusCode();
        controlPlane.WriteConfig("c.yaml", Route("c"));
        await NewerAsync(publisher, version);
        // Timers tick in milliseconds while the stopwatch does not: a 2 s delay may end a fraction of one early.
        Assert.True(watch.Elapsed >= debounce - TimeSpan.FromMilliseconds(50), $"published after {watch.Elapsed}, within the debounce ({debounce})");
        Assert.Contains(publisher.Current!.Mesh.ViewFor("default").OfType(MeshKit.Config.Compilation.ResourceTypes.Routes).Keys, k => k.StartsWith("c.", StringComparison.Ordinal));
    }

    private static async Task NewerAsync(MeshStatePublisher publisher, long version)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await publisher.WaitForNewerAsync(version, timeout.Token);
    }

    private static string Route(string host) => $$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: { name: {{host}}, namespace: default }
        spec:
          hosts: [{{host}}.example.com]
          ports: [{ number: 80, name: http, protocol: HTTP }]
          resolution: DNS
        """;

    private sealed class Writer(bool completes) : IServerStreamWriter<DiscoveryResponse>
    {
        private int _writes;

        public int Writes => Volatile.Read(ref _writes);

        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(DiscoveryResponse message)
        {
            Interlocked.Increment(ref _writes);
            return completes ? Task.CompletedTask : new TaskCompletionSource().Task;
        }
    }
}
