using MeshKit.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Telemetry;

/// <summary>A running gRPC call's messages added on a timer, and the rest at its end: each message once.</summary>
public sealed class LiveStreamsTests : IDisposable
{
    private static readonly PeerMetadata Caller = new("productpage-v1", "default", "productpage", "v1", "productpage");
    private static readonly PeerMetadata Server = new("reviews-v2", "default", "reviews", "v2", "reviews");

    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    public void Dispose() => _services.Dispose();

    private sealed class Counted(RequestReport? peers) : LiveStream
    {
        public long Requests { get; set; }

        public long Responses { get; set; }

        public override long RequestMessages => Requests;

        public override long ResponseMessages => Responses;

        public override RequestReport? Describe() => peers;
    }

    private static RequestReport Peers => new("source", Caller, null, Server, null, "reviews.default.svc.cluster.local", "grpc", 0, null, string.Empty, "unknown", 0, 0, 0);

    [Fact]
    public void AStreamStartedUnderAnotherReportingInterval_SetsTheSweepsApart()
    {
        var istio = new IstioMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var stats = istio.EnableStats();
        var time = new FakeTimeProvider();
        using var live = new LiveStreams(istio, time);
        var first = new Counted(Peers) { Requests = 1 };
        live.Add(first, TimeSpan.FromSeconds(5));
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal((0, 0), Messages(stats));

        // The config changed (a Telemetry's reportingInterval): the next stream brings it, and the sweeps follow.
        var second = new Counted(Peers) { Requests = 2 };
        live.Add(second, TimeSpan.FromSeconds(1));
        Assert.Equal(TimeSpan.FromSeconds(1), live.Interval);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal((3, 0), Messages(stats));
        second.Requests = 5;
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal((6, 0), Messages(stats));

        // The same interval again leaves the timer as it runs.
        live.Add(new Counted(Peers) { Requests = 1 }, TimeSpan.FromSeconds(1));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal((7, 0), Messages(stats));
    }

    [Fact]
    public void SweepsAddWhatCameSinceTheLast_TheEndTakesTheRest_AndAnEndedStreamIsLetGo()
    {
        var istio = new IstioMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var stats = istio.EnableStats();
        var time = new FakeTimeProvider();
        var live = new LiveStreams(istio, time);
        var stream = new Counted(Peers) { Requests = 2, Responses = 4 };
        var silent = new Counted(null) { Requests = 7 }; // under a policy with label values: nothing until its end
        live.Add(stream, TimeSpan.FromSeconds(5));
        live.Add(silent, TimeSpan.FromSeconds(5));

        time.Advance(TimeSpan.FromSeconds(5)); // the timer sweeps
        Assert.Equal((2, 4), Messages(stats));

        stream.Requests = 3;
        stream.Responses = 6;
        live.Sweep();
        Assert.Equal((3, 6), Messages(stats));
        live.Sweep(); // nothing new
        Assert.Equal((3, 6), Messages(stats));

        stream.Responses = 9;
        Assert.Equal((0, 3), stream.Remainder()); // for the call's own report
        live.Sweep();
        Assert.Equal((3, 6), Messages(stats)); // the end took it; the sweep adds nothing more
        Assert.Equal((7, 0), silent.Remainder());
    }

    [Fact]
    public void AStreamHeldWeakly_IsLetGo_OnceNothingElseHoldsIt()
    {
        // A caller's response the application drops unread and undisposed never ends: the table must not keep it past
        // the first sweep (until then it is held: a short call pays no weak reference).
        var istio = new IstioMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var live = new LiveStreams(istio, new FakeTimeProvider());
        var held = new Counted(Peers) { Requests = 1 };
        live.Add(held, LiveStreams.DefaultInterval, weakly: true);
        AddDropped(live);
        Assert.Equal(2, live.Held);
        live.Sweep(); // both ran past a sweep: held weakly from now on

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        live.Sweep();

        Assert.Equal(1, live.Held);
        GC.KeepAlive(held);
        held.Remainder();
        live.Sweep();
        Assert.Equal(0, live.Held);
    }

    [Fact]
    public void AStreamThatEnds_FreesItsSlotAtOnce_SoShortCallsAreNeverHeldUntilASweep()
    {
        // Under load, tens of thousands of unary calls end between two sweeps: none may stay held until the next.
        var istio = new IstioMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var stats = istio.EnableStats();
        using var live = new LiveStreams(istio, new FakeTimeProvider());
        for (var i = 0; i < 10_000; i++)
        {
            var call = new Counted(Peers) { Requests = 1, Responses = 1 };
            live.Add(call, LiveStreams.DefaultInterval, weakly: i % 2 == 0);
            Assert.Equal((1, 1), call.Remainder());
        }

        Assert.Equal(0, live.Held);

        // Many at once, from several threads: the table grows to hold them all, and each is swept once.
        var running = new System.Collections.Concurrent.ConcurrentBag<Counted>();
        Parallel.For(0, 1_000, _ =>
        {
            var call = new Counted(Peers) { Requests = 2 };
            live.Add(call, LiveStreams.DefaultInterval);
            running.Add(call);
        });
        Assert.Equal(1_000, live.Held);
        Assert.InRange(live.Capacity, 1_024, 4_096); // grown only while at least half of it was taken
        live.Sweep();
        Assert.Equal((2_000, 0), Messages(stats));
        foreach (var call in running)
        {
            Assert.Equal((0, 0), call.Remainder());
        }

        Assert.Equal(0, live.Held);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void AddDropped(LiveStreams live) => live.Add(new Counted(Peers) { Requests = 5 }, LiveStreams.DefaultInterval, weakly: true);

    private static (double Requests, double Responses) Messages(IstioStats stats)
    {
        var text = new System.Text.StringBuilder();
        stats.WriteTo(text);
        double Sum(string metric) => text.ToString().Split('\n').Where(l => l.StartsWith(metric + "{", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        return (Sum("istio_request_messages_total"), Sum("istio_response_messages_total"));
    }
}
