using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace MeshKit.Sync;

/// <summary>
/// How loud a failure to reach the control plane is (the discovery stream, a certificate signing), by Envoy's rule for
/// its xDS stream: a failure that retrying may cure (the control plane restarting, a replica going away, a network
/// blip) is logged at Debug until the control plane has been unreachable for <see cref="WarnAfter"/>, then at Warning
/// once per <see cref="WarnAfter"/> while it lasts; a failure that retrying will not cure (the identity refused, the
/// announcement invalid) is a Warning every time. Without it every workload wrote a warning, with the gRPC library's
/// exception text, for every reconnection attempt of every control-plane restart. A success ends the outage.
/// </summary>
internal sealed class ControlPlaneFailures(TimeProvider time)
{
    /// <summary>How long the control plane may be unreachable before the failures are warnings (Envoy's default longest xDS backoff).</summary>
    public static readonly TimeSpan WarnAfter = TimeSpan.FromSeconds(30);

    private long? _since;
    private long? _warned;

    /// <summary>Records a failure; returns the level to log it at and how long the control plane has been unreachable.</summary>
    public (LogLevel Level, TimeSpan Unreachable) Failed(Exception failure)
    {
        var now = time.GetTimestamp();
        _since ??= now;
        var unreachable = time.GetElapsedTime(_since.Value, now);
        if (!IsTransient(failure))
        {
            return (LogLevel.Warning, unreachable);
        }

        if (unreachable < WarnAfter || (_warned is { } warned && time.GetElapsedTime(warned, now) < WarnAfter))
        {
            return (LogLevel.Debug, unreachable);
        }

        _warned = now;
        return (LogLevel.Warning, unreachable);
    }

    /// <summary>The control plane answered: the outage, if any, is over.</summary>
    public void Answered()
    {
        _since = null;
        _warned = null;
    }

    /// <summary>
    /// Whether retrying may cure it: gRPC's transient statuses (Unavailable, DeadlineExceeded, ResourceExhausted, as
    /// Envoy counts them), and a stream the transport ended under it, which the .NET gRPC client reports as Internal
    /// ("error reading next message": the connection closed) or Cancelled (the stream reset; this side's own
    /// cancellation never gets here) where Envoy's reports Unavailable. A failure taken for transient that lasts is
    /// still a warning after <see cref="WarnAfter"/>.
    /// </summary>
    internal static bool IsTransient(Exception failure) => failure switch
    {
        RpcException { StatusCode: StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted or StatusCode.Cancelled } => true,
        RpcException { StatusCode: StatusCode.Internal } rpc => rpc.Status.DebugException is HttpRequestException or IOException,
        HttpRequestException or IOException => true,
        _ => false,
    };

    /// <summary>The failure in one line: the gRPC status and detail, and the transport's reason when there is one.</summary>
    internal static string Describe(Exception failure) => failure switch
    {
        RpcException rpc when rpc.Status.DebugException is { } cause => $"{rpc.StatusCode}: {rpc.Status.Detail} ({cause.Message})",
        RpcException rpc => $"{rpc.StatusCode}: {rpc.Status.Detail}",
        _ => failure.Message,
    };
}
