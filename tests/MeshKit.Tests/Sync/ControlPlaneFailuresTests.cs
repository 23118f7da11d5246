using Grpc.Core;
using MeshKit.Sync;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Sync;

/// <summary>How loud a lost discovery stream is: Envoy's rule for its xDS stream.</summary>
public sealed class ControlPlaneFailuresTests : MeshTestBase
{
    private static readonly RpcException Refused = new(new Status(StatusCode.Unavailable, "Error connecting to subchannel.", new System.Net.Sockets.SocketException(111)));

    [Fact]
    public void TransientFailures_AreDebug_UntilTheControlPlaneHasBeenUnreachableLongEnough_ThenAWarningPerPeriod()
    {
        var time = new FakeTimeProvider();
        var failures = new ControlPlaneFailures(time);

        Assert.Equal(LogLevel.Debug, failures.Failed(Refused).Level);
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(LogLevel.Debug, failures.Failed(Refused).Level);

        time.Advance(TimeSpan.FromSeconds(2));
        var (level, unreachable) = failures.Failed(Refused);
        Assert.Equal(LogLevel.Warning, level);
        Assert.Equal(TimeSpan.FromSeconds(31), unreachable);

        // One warning per period while it lasts, not one per attempt.
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(LogLevel.Debug, failures.Failed(Refused).Level);
        time.Advance(TimeSpan.FromSeconds(25));
        Assert.Equal(LogLevel.Warning, failures.Failed(Refused).Level);

        // An answer ends the outage: the next loss starts quiet again.
        failures.Answered();
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal((LogLevel.Debug, TimeSpan.Zero), failures.Failed(Refused));
    }

    [Fact]
    public void AFailureRetryingWillNotCure_IsAWarningEveryTime()
    {
        var failures = new ControlPlaneFailures(new FakeTimeProvider());
        var refused = new RpcException(new Status(StatusCode.PermissionDenied, "the certificate is spiffe://cluster.local/ns/default/sa/a; it cannot announce service account 'b'"));

        Assert.Equal(LogLevel.Warning, failures.Failed(refused).Level);
        Assert.Equal(LogLevel.Warning, failures.Failed(refused).Level);
        Assert.Equal("PermissionDenied: the certificate is spiffe://cluster.local/ns/default/sa/a; it cannot announce service account 'b'", ControlPlaneFailures.Describe(refused));
    }

    [Fact]
    public void AConnectionLostUnderAStream_IsTransient_ThoughTheClientSaysInternal()
    {
        var lost = new RpcException(new Status(StatusCode.Internal, "Error reading next message. HttpProtocolException: The HTTP/2 server closed the connection.", new HttpProtocolException(0, "The HTTP/2 server closed the connection.", null)));

        Assert.True(ControlPlaneFailures.IsTransient(lost));
        Assert.True(ControlPlaneFailures.IsTransient(new RpcException(new Status(StatusCode.Cancelled, string.Empty, new TaskCanceledException()))));
        Assert.False(ControlPlaneFailures.IsTransient(new RpcException(new Status(StatusCode.Internal, "a handler failed"))));
        Assert.True(ControlPlaneFailures.IsTransient(Refused));
        Assert.Equal("Unavailable: Error connecting to subchannel. (Connection refused)", ControlPlaneFailures.Describe(Refused));
    }

    [Fact]
    public async Task AWorkloadStartingDuringABriefOutage_WritesNoCertificateWarning()
    {
        var token = ControlPlane.CreateJoinToken("default", "reviews");
        var down = await StopControlPlaneAsync();

        // The host waits for its first certificate (up to its initial-fetch timeout) while the control plane is away.
        var starting = TestWorkload.StartAsync("reviews", "v1", down.SecureAddress, o =>
        {
            o.ServiceAccount = "reviews";
            o.JoinToken = token;
        }, s => s.AddFakeLogging());
        await Task.Delay(TimeSpan.FromSeconds(3));
        await RestartControlPlaneAsync(down);
        try
        {
            var workload = await starting;
            Owned.Add(workload);
            Assert.NotNull(workload.Services.GetRequiredService<MeshKit.Security.WorkloadIdentity>().Current);

            // Before, every signing attempt was a warning.
            var warnings = workload.Services.GetRequiredService<Microsoft.Extensions.Logging.Testing.FakeLogCollector>().GetSnapshot()
                .Where(r => r.Level >= LogLevel.Warning && r.Category == typeof(MeshKit.Security.CertificateManager).FullName).Select(r => r.Message).ToList();
            Assert.True(warnings.Count == 0, string.Join(Environment.NewLine, warnings));
        }
        finally
        {
            await down.DisposeAsync();
        }
    }

    [Fact]
    public async Task AControlPlaneRestart_WritesNoWarningOnTheWorkloads()
    {
        var workload = await StartSecureAsync("reviews", services: s => s.AddFakeLogging());
        await Eventually.TrueAsync(() => workload.Snapshot.IsReady, "configured");

        // Down for a few seconds (many reconnection attempts at the test's backoff), then back on the same port.
        var down = await StopControlPlaneAsync();
        await Task.Delay(TimeSpan.FromSeconds(3));
        await RestartControlPlaneAsync(down);
        try
        {
            await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/registry")).EnumerateArray().Any(e => e.GetProperty("serviceAccount").GetString() == "reviews"), "registered again", TimeSpan.FromSeconds(60));
        }
        finally
        {
            await down.DisposeAsync();
        }

        // Before, every attempt was a warning with the gRPC library's exception text.
        var warnings = workload.Services.GetRequiredService<Microsoft.Extensions.Logging.Testing.FakeLogCollector>().GetSnapshot()
            .Where(r => r.Level >= LogLevel.Warning && r.Category == typeof(MeshSyncService).FullName).Select(r => r.Message).ToList();
        Assert.True(warnings.Count == 0, string.Join(Environment.NewLine, warnings));
    }
}
