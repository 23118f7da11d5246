namespace MeshKit.Sync;

/// <summary>What the sync service knows of its stream, for health checks and diagnostics.</summary>
internal sealed class MeshSyncStatus
{
    private volatile bool _connected;
    private volatile string? _lastNack;

    /// <summary>Gets whether the discovery stream is up and the control plane has answered on it.</summary>
    public bool Connected => _connected;

    /// <summary>Gets the reason of the last config the workload rejected, until a later one is applied.</summary>
    public string? LastNack => _lastNack;

    public void SetConnected(bool connected) => _connected = connected;

    public void Applied() => _lastNack = null;

    public void Rejected(string reason) => _lastNack = reason;
}
