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
    private readonly Dictionary<string, Dictionary<string, string>> _held = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Pending> _pending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _acked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _sent = new(StringComparer.Ordinal);
    private long _nonce;

    public WorkloadAnnouncement Workload { get; } = workload;

    public DateTimeOffset ConnectedAt { get; } = connectedAt;

    public string? LastNack { get; private set; }

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
            _held[typeUrl] = new Dictionary<string, string>(versions, StringComparer.Ordinal);
        }
    }

    /// <summary>Returns the delta from what the workload holds to <paramref name="wanted"/>, or null when there is none.</summary>
    public DiscoveryResponse? Diff(string typeUrl, IReadOnlyDictionary<string, Resource> wanted, long systemVersion, DateTimeOffset changedAt = default)
    {
        lock (_lock)
        {
            var first = !_held.TryGetValue(typeUrl, out var held);
            held ??= new Dictionary<string, string>(StringComparer.Ordinal);
            var response = new DiscoveryResponse { TypeUrl = typeUrl, SystemVersionInfo = systemVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) };
            foreach (var (name, resource) in wanted)
            {
                if (!held.TryGetValue(name, out var version) || version != resource.Version)
                {
                    response.Resources.Add(resource);
                }
            }

            foreach (var name in held.Keys)
            {
                if (!wanted.ContainsKey(name))
                {
                    response.RemovedResources.Add(name);
                }
            }

            // The first response of each type is sent even when empty: it tells the workload it is in sync.
            if (!first && response.Resources.Count == 0 && response.RemovedResources.Count == 0)
            {
                return null;
            }

            response.Nonce = (++_nonce).ToString(System.Globalization.CultureInfo.InvariantCulture);
            _pending[typeUrl] = new Pending(response.Nonce, first ? null : held, changedAt);
            _sent[typeUrl] = response.SystemVersionInfo;
            _held[typeUrl] = wanted.ToDictionary(kv => kv.Key, kv => kv.Value.Version, StringComparer.Ordinal);
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

    private sealed record Pending(string Nonce, Dictionary<string, string>? Previous, DateTimeOffset ChangedAt);
}
