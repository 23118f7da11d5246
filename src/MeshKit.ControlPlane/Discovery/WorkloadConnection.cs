using Google.Protobuf.Collections;
using MeshKit.Protocol.V1;

namespace MeshKit.ControlPlane.Discovery;

/// <summary>
/// One workload's stream state: the resource versions it holds per type (what the next delta is computed against),
/// the responses awaiting an answer, and its ACK/NACK status.
/// </summary>
internal sealed class WorkloadConnection(WorkloadAnnouncement workload, DateTimeOffset connectedAt)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, HeldResources> _held = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Pending> _pending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _acked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _sent = new(StringComparer.Ordinal);
    private long _nonce;
    private long _stateVersion;

    public WorkloadAnnouncement Workload { get; } = workload;

    public DateTimeOffset ConnectedAt { get; } = connectedAt;

    public string? LastNack { get; private set; }

    /// <summary>Gets the version of the newest mesh state whose deltas were sent (or found empty) on this stream.</summary>
    public long StateVersion { get => Volatile.Read(ref _stateVersion); set => Volatile.Write(ref _stateVersion, value); }

    public DateTimeOffset? LastNackAt { get; private set; }

    /// <summary>Gets the system version last sent per type (what the workload should converge to).</summary>
    public IReadOnlyDictionary<string, string> SentVersions
    {
        get
        {
            lock (_lock)
            {
                return new Dictionary<string, string>(_sent, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>Gets whether a response of some type awaits its ACK or NACK.</summary>
    public bool HasPending
    {
        get
        {
            lock (_lock)
            {
                return _pending.Count > 0;
            }
        }
    }

    public IReadOnlyDictionary<string, string> AckedVersions
    {
        get
        {
            lock (_lock)
            {
                return new Dictionary<string, string>(_acked, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>Takes the versions a reconnecting workload already holds, so only differences are sent.</summary>
    public void Resume(string typeUrl, MapField<string, string> versions)
    {
        lock (_lock)
        {
            _held[typeUrl] = new HeldResources(null, new Dictionary<string, string>(versions, StringComparer.Ordinal));
        }
    }

    /// <summary>Returns the delta from what the workload holds to <paramref name="wanted"/>, or null when there is none.</summary>
    /// <remarks>
    /// A workload in sync holds a reference to the view's own (immutable) resource map, not a copy: a fleet in one
    /// namespace shares one map per type, and the delta between two maps is computed once for all of it
    /// (<see cref="ResourceDeltas"/>). Only a workload that resumed with its own versions is diffed on its own.
    /// </remarks>
    public DiscoveryResponse? Diff(string typeUrl, IReadOnlyDictionary<string, Resource> wanted, long systemVersion, DateTimeOffset changedAt = default)
    {
        lock (_lock)
        {
            var first = !_held.TryGetValue(typeUrl, out var held);
            if (!first && ReferenceEquals(held!.Shared, wanted))
            {
                return null;
            }

            var delta = held is null ? ResourceDeltas.Full(wanted) : held.Shared is { } shared ? ResourceDeltas.Between(shared, wanted) : ResourceDeltas.From(held.Own!, wanted);

            // The first response of each type is sent even when empty: it tells the workload it is in sync.
            if (!first && delta.Changed.Length == 0 && delta.Removed.Length == 0)
            {
                _held[typeUrl] = new HeldResources(wanted, null);
                return null;
            }

            var response = new DiscoveryResponse
            {
                TypeUrl = typeUrl,
                SystemVersionInfo = systemVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Nonce = (++_nonce).ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            response.Resources.AddRange(delta.Changed);
            response.RemovedResources.AddRange(delta.Removed);
            _pending[typeUrl] = new Pending(response.Nonce, held, changedAt);
            _sent[typeUrl] = response.SystemVersionInfo;
            _held[typeUrl] = new HeldResources(wanted, null);
            return response;
        }
    }

    /// <summary>Records an ACK; returns when the change it confirms happened, for the convergence time.</summary>
    public DateTimeOffset? Ack(string typeUrl, string nonce, string version)
    {
        lock (_lock)
        {
            DateTimeOffset? changedAt = null;
            if (_pending.TryGetValue(typeUrl, out var pending) && pending.Nonce == nonce)
            {
                _pending.Remove(typeUrl);
                changedAt = pending.ChangedAt == default ? null : pending.ChangedAt;
            }

            _acked[typeUrl] = version;
            return changedAt;
        }
    }

    /// <summary>The workload kept its previous resources: forget the rejected delta so the next one is computed from them.</summary>
    public void Nack(string typeUrl, string nonce, string error, DateTimeOffset at)
    {
        lock (_lock)
        {
            LastNack = $"{typeUrl} (nonce {nonce}): {error}";
            LastNackAt = at;
            if (_pending.TryGetValue(typeUrl, out var pending) && pending.Nonce == nonce)
            {
                _pending.Remove(typeUrl);
                if (pending.Previous is null)
                {
                    _held.Remove(typeUrl);
                }
                else
                {
                    _held[typeUrl] = pending.Previous;
                }
            }
        }
    }

    private sealed record Pending(string Nonce, HeldResources? Previous, DateTimeOffset ChangedAt);

    /// <summary>What a workload holds of one type: a view's resource map (shared), or the versions it resumed with.</summary>
    private sealed record HeldResources(IReadOnlyDictionary<string, Resource>? Shared, Dictionary<string, string>? Own);
}
