using System.Collections.Concurrent;
using MeshKit.Protocol.V1;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Registry;

/// <summary>
/// The in-memory registry of live workloads: an announcement is an entry for as long as its stream lives, plus a
/// grace period when the stream broke (so a reconnect does not churn endpoints). A clean close removes it at once.
/// </summary>
internal sealed partial class WorkloadRegistry(IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<WorkloadRegistry> logger) : IWorkloadRegistry
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ChangeSignal _changed = new();
    private long _generation;

    public IChangeToken GetChangeToken() => _changed.Token;

    public IReadOnlyList<RegistryEntry> Entries => _entries.Values.Select(e => e.Public).ToArray();

    public IReadOnlyList<WorkloadAnnouncement> Workloads => _entries.Values.Select(e => e.Public.Workload).ToArray();

    public Task<long> RegisterAsync(WorkloadAnnouncement workload, CancellationToken cancellationToken) => Task.FromResult(Register(workload));

    /// <summary>Registers (or re-registers) a workload; returns the lease that <see cref="Release"/> takes.</summary>
    public long Register(WorkloadAnnouncement workload)
    {
        var lease = Interlocked.Increment(ref _generation);
        var entry = new Entry(lease, new RegistryEntry(workload, time.GetUtcNow()));
        _entries[workload.InstanceId] = entry;
        Log.Registered(logger, workload.InstanceId, workload.Service, workload.Namespace, workload.Address);
        Signal();
        return lease;
    }

    /// <summary>Ends a lease: at once when the workload closed cleanly, after the grace period otherwise.</summary>
    public void Release(string instanceId, long lease, bool graceful)
    {
        if (graceful || options.Value.RegistrationGrace <= TimeSpan.Zero)
        {
            Remove(instanceId, lease);
            return;
        }

        ITimer? timer = null;
        timer = time.CreateTimer(_ =>
        {
            Remove(instanceId, lease);
            timer?.Dispose();
        }, null, options.Value.RegistrationGrace, Timeout.InfiniteTimeSpan);
    }

    private void Remove(string instanceId, long lease)
    {
        // Only the lease that registered may remove: a reconnect has taken a newer lease and stays.
        if (_entries.TryGetValue(instanceId, out var entry) && entry.Lease == lease
            && _entries.TryRemove(new KeyValuePair<string, Entry>(instanceId, entry)))
        {
            Log.Removed(logger, instanceId, entry.Public.Workload.Service);
            Signal();
        }
    }

    private void Signal()
    {
        _changed.Fire();
    }

    private sealed record Entry(long Lease, RegistryEntry Public);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Workload {InstanceId} registered: {Service}.{Namespace} at {Address}", EventName = "WorkloadRegistered")]
        public static partial void Registered(ILogger logger, string instanceId, string service, string @namespace, string address);

        [LoggerMessage(2, LogLevel.Information, "Workload {InstanceId} ({Service}) left the registry", EventName = "WorkloadRemoved")]
        public static partial void Removed(ILogger logger, string instanceId, string service);
    }
}

/// <summary>A registered workload.</summary>
/// <param name="Workload">Gets its announcement.</param>
/// <param name="RegisteredAt">Gets when it registered.</param>
internal sealed record RegistryEntry(WorkloadAnnouncement Workload, DateTimeOffset RegisteredAt);
