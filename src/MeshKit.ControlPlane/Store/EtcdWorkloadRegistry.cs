using System.Collections.Concurrent;
using System.Collections.Immutable;
using Etcdserverpb;
using Google.Protobuf;
using MeshKit.ControlPlane.Registry;
using MeshKit.Protocol.V1;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Store;

/// <summary>
/// The workload registry in etcd, shared by every replica: a workload's entry is one key
/// (<c>{prefix}/registry/{instance id}</c>) attached to the lease of the replica its stream is on. Each replica keeps its
/// own lease alive; if the replica dies, its lease expires after <see cref="ControlPlaneOptions.EtcdLeaseTtl"/> and
/// takes the entries of its workloads with it — except those that reconnected to another replica in the meantime,
/// whose keys that replica wrote again under its own lease. Every replica watches the prefix, so all see the same set.
/// </summary>
internal sealed partial class EtcdWorkloadRegistry : IWorkloadRegistry, IHostedService, IDisposable
{
    private readonly EtcdCluster _etcd;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<EtcdWorkloadRegistry> _logger;
    private readonly string _prefix;
    private readonly ConcurrentDictionary<string, (long Registration, WorkloadAnnouncement Workload)> _local = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ImmutableDictionary<string, RegistryEntry> _entries = ImmutableDictionary.Create<string, RegistryEntry>(StringComparer.Ordinal);
    private readonly ChangeSignal _changed = new();
    private long _lease;
    private long _registrations;
    private Task? _watch;
    private Task? _keepAlive;

    public EtcdWorkloadRegistry(EtcdCluster etcd, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<EtcdWorkloadRegistry> logger)
    {
        _etcd = etcd;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _prefix = etcd.Prefix + "/registry/";
    }

    public IReadOnlyList<RegistryEntry> Entries => Volatile.Read(ref _entries).Values.ToArray();

    public IReadOnlyList<WorkloadAnnouncement> Workloads => Volatile.Read(ref _entries).Values.Select(e => e.Workload).ToArray();

    /// <summary>Gets this replica's lease (for tests and diagnostics).</summary>
    public long Lease => Volatile.Read(ref _lease);

    public IChangeToken GetChangeToken() => _changed.Token;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var grant = await _etcd.GrantLeaseAsync(_options.EtcdLeaseTtl, cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _lease, grant.ID);
        _watch = _etcd.WatchPrefixAsync(_prefix, OnSnapshot, OnEvents, _stopping.Token);
        _keepAlive = KeepAliveLoopAsync(_stopping.Token);

        // The first listing before serving: a replica that starts next to running ones knows their workloads at once.
        await _synced.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // The lease is left to expire rather than revoked: workloads of this replica reconnect to the others, which
        // write their entries again before it does, so they never leave the registry.
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var task in new[] { _watch, _keepAlive })
        {
            if (task is not null)
            {
                try
                {
                    await task.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
    }

    public void Dispose() => _stopping.Dispose();

    public async Task<long> RegisterAsync(WorkloadAnnouncement workload, CancellationToken cancellationToken)
    {
        var registration = Interlocked.Increment(ref _registrations);
        _local[workload.InstanceId] = (registration, workload);
        await _etcd.PutAsync(_prefix + workload.InstanceId, workload.ToByteString(), Volatile.Read(ref _lease), cancellationToken).ConfigureAwait(false);
        Log.Registered(_logger, workload.InstanceId, workload.Service, workload.Namespace, workload.Address);
        return registration;
    }

    public void Release(string instanceId, long registration, bool graceful)
    {
        // Only the stream that registered may release: a reconnect to this replica has a newer registration.
        if (!_local.TryGetValue(instanceId, out var current) || current.Registration != registration
            || !_local.TryRemove(new KeyValuePair<string, (long, WorkloadAnnouncement)>(instanceId, current)))
        {
            return;
        }

        var grace = graceful ? TimeSpan.Zero : _options.RegistrationGrace;
        _ = Task.Run(async () =>
        {
            try
            {
                await Task.Delay(grace, _time, _stopping.Token).ConfigureAwait(false);
                if (!_local.ContainsKey(instanceId))
                {
                    await DeleteIfOursAsync(instanceId).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (Grpc.Core.RpcException ex)
            {
                // The key stays until this replica's lease ends.
                Log.ReleaseFailed(_logger, instanceId, ex.Status.Detail);
            }
        });
    }

    /// <summary>Deletes a workload's key only while it is still attached to this replica's lease.</summary>
    private Task<TxnResponse> DeleteIfOursAsync(string instanceId)
    {
        var key = ByteString.CopyFromUtf8(_prefix + instanceId);
        var request = new TxnRequest();
        request.Compare.Add(new Compare { Key = key, Target = Compare.Types.CompareTarget.Lease, Result = Compare.Types.CompareResult.Equal, Lease = Volatile.Read(ref _lease) });
        request.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } });
        return _etcd.TxnAsync(request, _stopping.Token);
    }

    private async Task KeepAliveLoopAsync(CancellationToken cancellationToken)
    {
        var period = _options.EtcdLeaseTtl / 3;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, _time, cancellationToken).ConfigureAwait(false);
                var ttl = await _etcd.KeepAliveOnceAsync(Volatile.Read(ref _lease), cancellationToken).ConfigureAwait(false);
                if (ttl > 0)
                {
                    continue;
                }

                // The lease expired (etcd unreachable for longer than its TTL): take a new one and write every
                // workload connected here again, so the registry heals by itself.
                var grant = await _etcd.GrantLeaseAsync(_options.EtcdLeaseTtl, cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _lease, grant.ID);
                Log.LeaseRenewed(_logger, grant.ID, _local.Count);
                foreach (var (id, local) in _local)
                {
                    await _etcd.PutAsync(_prefix + id, local.Workload.ToByteString(), grant.ID, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Grpc.Core.RpcException ex)
            {
                Log.KeepAliveFailed(_logger, ex.Status.Detail);
            }
        }
    }

    private void OnSnapshot(IReadOnlyList<Mvccpb.KeyValue> kvs, long revision)
    {
        var builder = ImmutableDictionary.CreateBuilder<string, RegistryEntry>(StringComparer.Ordinal);
        var previous = Volatile.Read(ref _entries);
        foreach (var kv in kvs)
        {
            if (Parse(kv) is { } workload)
            {
                builder[workload.InstanceId] = previous.TryGetValue(workload.InstanceId, out var known) && known.Workload.Equals(workload)
                    ? known : new RegistryEntry(workload, _time.GetUtcNow());
            }
        }

        Publish(builder.ToImmutable());
        _synced.TrySetResult();
    }

    private void OnEvents(IReadOnlyList<Mvccpb.Event> events, long revision)
    {
        var entries = Volatile.Read(ref _entries);
        foreach (var e in events)
        {
            var id = e.Kv.Key.ToStringUtf8()[_prefix.Length..];
            if (e.Type == Mvccpb.Event.Types.EventType.Delete)
            {
                entries = entries.Remove(id);
                Log.Removed(_logger, id);
            }
            else if (Parse(e.Kv) is { } workload && !(entries.TryGetValue(id, out var known) && known.Workload.Equals(workload)))
            {
                entries = entries.SetItem(id, new RegistryEntry(workload, _time.GetUtcNow()));
            }
        }

        Publish(entries);
    }

    private WorkloadAnnouncement? Parse(Mvccpb.KeyValue kv)
    {
        try
        {
            return WorkloadAnnouncement.Parser.ParseFrom(kv.Value);
        }
        catch (InvalidProtocolBufferException ex)
        {
            Log.BadEntry(_logger, kv.Key.ToStringUtf8(), ex.Message);
            return null;
        }
    }

    private void Publish(ImmutableDictionary<string, RegistryEntry> entries)
    {
        Volatile.Write(ref _entries, entries);
        _changed.Fire();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Workload {InstanceId} registered in etcd: {Service}.{Namespace} at {Address}", EventName = "WorkloadRegistered")]
        public static partial void Registered(ILogger logger, string instanceId, string service, string @namespace, string address);

        [LoggerMessage(2, LogLevel.Information, "Workload {InstanceId} left the registry", EventName = "WorkloadRemoved")]
        public static partial void Removed(ILogger logger, string instanceId);

        [LoggerMessage(3, LogLevel.Warning, "Could not remove workload {InstanceId} from etcd ({Reason}); it leaves when this replica's lease ends", EventName = "ReleaseFailed")]
        public static partial void ReleaseFailed(ILogger logger, string instanceId, string reason);

        [LoggerMessage(4, LogLevel.Warning, "Keeping the registry lease alive failed ({Reason}); retrying", EventName = "KeepAliveFailed")]
        public static partial void KeepAliveFailed(ILogger logger, string reason);

        [LoggerMessage(5, LogLevel.Warning, "The registry lease had expired; took lease {Lease} and wrote {Count} workloads again", EventName = "LeaseRenewed")]
        public static partial void LeaseRenewed(ILogger logger, long lease, int count);

        [LoggerMessage(6, LogLevel.Warning, "Skipped registry entry {Key}: {Reason}", EventName = "BadRegistryEntry")]
        public static partial void BadEntry(ILogger logger, string key, string reason);
    }
}
