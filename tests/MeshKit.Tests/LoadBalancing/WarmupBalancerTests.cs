using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.LoadBalancing;

public class WarmupBalancerTests
{
    private static readonly SourceWorkload Source = new("default", new Dictionary<string, string>());

    private static EndpointView[] Endpoints(params string[] addresses) => addresses.Select(a =>
    {
        var endpoint = new Endpoint { Address = a };
        endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
        return new EndpointView(endpoint);
    }).ToArray();

    private static double ShareOfNew(EndpointSet set, int picks = 20000) =>
        Enumerable.Range(0, picks).Count(_ => set.Pick()!.Address == "10.0.0.2") / (double)picks;

    [Theory]
    [InlineData("ROUND_ROBIN")]
    [InlineData("LEAST_REQUEST")]
    public void NewEndpoint_RampsFromTheMinimumToAnEqualShareOverTheWindow(string policy)
    {
        var time = new FakeTimeProvider();
        var clock = new MeshRuntime(time);
        var warmup = new Warmup { DurationMs = 10_000, MinimumPercent = 10, Aggression = 1 };
        EndpointSet.Create(Endpoints("10.0.0.1"), policy, null, null, Source, warmup, clock);
        time.Advance(TimeSpan.FromMinutes(1));

        // A scale-up: 10.0.0.2 appears next to a long-running endpoint.
        var set = EndpointSet.Create(Endpoints("10.0.0.1", "10.0.0.2"), policy, null, null, Source, warmup, clock);
        Assert.InRange(ShareOfNew(set), 0.07, 0.11);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.InRange(ShareOfNew(set), 0.30, 0.37);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.InRange(ShareOfNew(set), 0.47, 0.53);
    }

    [Fact]
    public void Aggression_RampsFasterAtFirst()
    {
        var time = new FakeTimeProvider();
        var clock = new MeshRuntime(time);
        var warmup = new Warmup { DurationMs = 10_000, MinimumPercent = 1, Aggression = 4 };
        EndpointSet.Create(Endpoints("10.0.0.1"), "ROUND_ROBIN", null, null, Source, warmup, clock);
        time.Advance(TimeSpan.FromMinutes(1));
        var set = EndpointSet.Create(Endpoints("10.0.0.1", "10.0.0.2"), "ROUND_ROBIN", null, null, Source, warmup, clock);
        time.Advance(TimeSpan.FromSeconds(1));

        // (0.1)^(1/4) ≈ 0.56 → share ≈ 0.36, far above the linear 0.09.
        Assert.InRange(ShareOfNew(set), 0.32, 0.40);
    }

    [Fact]
    public void EndpointsThatStay_AreNotNewAgain_AndOnesThatLeaveAreForgotten()
    {
        var time = new FakeTimeProvider();
        var clock = new MeshRuntime(time);
        var first = clock.FirstSeen("a");
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(first, clock.FirstSeen("a"));
        clock.Retain(new HashSet<string>());
        Assert.Equal(time.GetUtcNow(), clock.FirstSeen("a"));
    }
}
