using MeshKit.LoadBalancing;
using Microsoft.Extensions.Options;

namespace MeshKit.Snapshot;

/// <summary>
/// Holds the current <see cref="MeshSnapshot"/>: one volatile reference read per request, replaced whole. Snapshots
/// from the control plane take precedence over the static file once the control plane has delivered a complete one.
/// </summary>
internal sealed class MeshSnapshotProvider : IDisposable
{
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TimeProvider _time;
    private MeshSnapshot _current = MeshSnapshot.Empty;
    private volatile bool _controlPlaneSynced;

    public MeshSnapshotProvider(IOptions<MeshOptions> options, TimeProvider time, Security.WorkloadIdentity? identity = null)
    {
        _time = time;
        Runtime = new MeshRuntime(time, identity);
        MaxRetryBufferBytes = options.Value.MaxRetryBufferBytes;
        InitialFetchDeadline = time.GetUtcNow() + options.Value.InitialFetchTimeout;
    }

    public MeshSnapshot Current => Volatile.Read(ref _current);

    /// <summary>Gets the largest request body buffered so that it can be replayed by a retry or a mirror.</summary>
    public long MaxRetryBufferBytes { get; }

    /// <summary>Gets when each endpoint was first seen (slow start measures from it).</summary>
    public MeshRuntime Runtime { get; }

    /// <summary>Gets when outbound calls stop waiting for a first configuration.</summary>
    public DateTimeOffset InitialFetchDeadline { get; }

    /// <summary>Gets a task that completes when a complete configuration is in force.</summary>
    public Task Ready => _ready.Task;

    public void PublishFromControlPlane(MeshSnapshot snapshot)
    {
        if (snapshot.IsReady)
        {
            _controlPlaneSynced = true;
        }

        Publish(snapshot);
    }

    /// <summary>Publishes a snapshot from the static file unless the control plane already delivered one.</summary>
    public bool PublishFromFile(MeshSnapshot snapshot)
    {
        if (_controlPlaneSynced)
        {
            return false;
        }

        Publish(snapshot);
        return true;
    }

    /// <summary>Returns a ready snapshot, waiting until the initial-fetch deadline at most; returns the current one otherwise.</summary>
    public async ValueTask<MeshSnapshot> WaitReadyAsync(CancellationToken cancellationToken)
    {
        var remaining = InitialFetchDeadline - _time.GetUtcNow();
        if (remaining > TimeSpan.Zero)
        {
            try
            {
                await _ready.Task.WaitAsync(remaining, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }

        return Current;
    }

    /// <summary>Closes the connection pools of clusters that had their own.</summary>
    public void Dispose() => Runtime.Transports.Dispose();

    private void Publish(MeshSnapshot snapshot)
    {
        Volatile.Write(ref _current, snapshot);
        if (snapshot.IsReady)
        {
            _ready.TrySetResult();
        }
    }
}
