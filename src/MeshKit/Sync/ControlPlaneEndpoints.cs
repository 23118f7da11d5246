namespace MeshKit.Sync;

/// <summary>
/// The control-plane replicas a workload may talk to (<see cref="MeshOptions.ControlPlaneAddress"/> and
/// <see cref="MeshOptions.ControlPlaneAddresses"/>), and which one is in use. It starts at a random replica so that a
/// fleet spreads over them, and moves on when a replica fails; discovery and certificate requests share it.
/// </summary>
internal sealed class ControlPlaneEndpoints
{
    private readonly Uri[] _all;
    private int _current;

    public ControlPlaneEndpoints(Microsoft.Extensions.Options.IOptions<MeshOptions> options)
    {
        var o = options.Value;
        _all = (o.ControlPlaneAddress is { } first ? new[] { first } : [])
            .Concat(o.ControlPlaneAddresses)
            .Distinct()
            .ToArray();
        _current = _all.Length > 1 ? Random.Shared.Next(_all.Length) : 0;
    }

    /// <summary>Gets every replica's URL.</summary>
    public IReadOnlyList<Uri> All => _all;

    /// <summary>Gets the replica in use; null in static mode.</summary>
    public Uri? Current => _all.Length == 0 ? null : _all[Volatile.Read(ref _current)];

    /// <summary>Moves to the next replica after <paramref name="failed"/> failed (a no-op when another caller already moved).</summary>
    public void Failed(Uri failed)
    {
        var index = Array.IndexOf(_all, failed);
        if (index >= 0 && _all.Length > 1)
        {
            Interlocked.CompareExchange(ref _current, (index + 1) % _all.Length, index);
        }
    }
}
