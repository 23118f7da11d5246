namespace MeshKit.Sync;

/// <summary>What the sync service knows of its stream, for health checks and diagnostics.</summary>
internal sealed class MeshSyncStatus
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _rejected = new(StringComparer.Ordinal);
    private volatile bool _connected;

    /// <summary>Gets whether the discovery stream is up and the control plane has answered on it.</summary>
    public bool Connected => _connected;

    /// <summary>Gets the reason a resource type was last rejected, until a later push of that type is applied.</summary>
    public string? LastNack => _rejected.Values.FirstOrDefault();

    public void SetConnected(bool connected) => _connected = connected;

    public void Applied(string typeUrl) => _rejected.TryRemove(typeUrl, out _);

    public void Rejected(string typeUrl, string reason) => _rejected[typeUrl] = reason;
}
