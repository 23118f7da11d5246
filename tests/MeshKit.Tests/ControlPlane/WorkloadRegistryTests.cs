using System.Runtime.CompilerServices;
using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Registry;
using MeshKit.Protocol.V1;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.Tests.ControlPlane;

public sealed class WorkloadRegistryTests
{
    [Fact]
    public void AFiredSource_StaysReadable_ForAListenerRacingTheNextSignal()
    {
        // The race, step by step: a listener has read the current source (to take its token) when another thread fires
        // twice; the listener then takes the token. Disposing fired sources made that read throw.
        var signal = new ChangeSignal();
        var read = Current(signal);
        signal.Fire();
        signal.Fire();

        Assert.True(read.Token.IsCancellationRequested);
        Assert.False(signal.Token.HasChanged);
    }

    // The source a listener reads inside ChangeSignal.Token, before taking its token.
    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_current")]
    private static extern ref CancellationTokenSource Current(ChangeSignal signal);

    [Fact]
    public async Task ConcurrentRegistrations_AllSucceed_WhileAListenerFollowsTheChangeToken()
    {
        // A fleet connecting at once registers from many threads, and the state publisher asks for the next change
        // token from inside each signal's callback: a signal must never hand it a token whose source another signal
        // has already disposed (seen as an ObjectDisposedException failing a workload's registration at 10,000).
        var registry = new WorkloadRegistry(Options.Create(new ControlPlaneOptions()), TimeProvider.System, NullLogger<WorkloadRegistry>.Instance);
        var signals = 0;
        using var listening = ChangeToken.OnChange(registry.GetChangeToken, () => Interlocked.Increment(ref signals));

        var threads = 16;
        await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 20_000; i++)
            {
                registry.Register(new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = $"reviews-{t}-{i % 50}", Address = "10.0.0.1" });
            }
        })));

        Assert.Equal(threads * 50, registry.Workloads.Count);
        Assert.True(signals > 0);
    }
}
