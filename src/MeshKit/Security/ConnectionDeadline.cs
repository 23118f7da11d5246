using Microsoft.AspNetCore.Connections;

namespace MeshKit.Security;

/// <summary>
/// A token for the first bytes a new connection owes (its PROXY header, its first byte for the TLS sniff): cancelled when
/// the connection closes or when the time is up, on the mesh's <see cref="TimeProvider"/> (tests advance it).
/// </summary>
internal sealed class ConnectionDeadline : IDisposable
{
    private readonly CancellationTokenSource _timer;
    private readonly CancellationTokenSource _linked;

    private ConnectionDeadline(CancellationToken closed, TimeSpan after, TimeProvider time)
    {
        // A linked source cannot take a TimeProvider: the timer is a source of its own, linked with the connection's.
        _timer = new CancellationTokenSource(after, time);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(closed, _timer.Token);
    }

    /// <summary>Gets the token: cancelled at the deadline or when the connection closes.</summary>
    public CancellationToken Token => _linked.Token;

    /// <summary>Starts the deadline for a connection.</summary>
    public static ConnectionDeadline Start(ConnectionContext context, TimeSpan after, TimeProvider time) => new(context.ConnectionClosed, after, time);

    /// <inheritdoc/>
    public void Dispose()
    {
        _linked.Dispose();
        _timer.Dispose();
    }
}
