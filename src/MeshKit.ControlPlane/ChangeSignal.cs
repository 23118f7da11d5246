using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane;

/// <summary>
/// The source of a component's <see cref="IChangeToken"/> (registry, config stores, JWKS cache): each
/// <see cref="Fire"/> cancels the current token and puts a new one in its place.
/// </summary>
/// <remarks>
/// A fired source is not disposed. A listener (<see cref="ChangeToken.OnChange(Func{IChangeToken?}, Action)"/>) asks
/// for the next token from inside the firing signal's callback, while another thread may fire again: reading the
/// token of a source that signal had disposed threw, and failed a workload's registration in a fleet of 10,000
/// connecting at once. A cancelled source without a timer holds nothing that needs disposing.
/// <para>
/// One fire at a time: such a listener re-registers on the next token from inside the callback, and when a second
/// thread fired that next token while the first was still registering, both callbacks raced to store their
/// registration and the loser threw ("Somebody else set the _disposable field") out of the registering workload's
/// call. Firing under a lock makes each listener's callbacks run one after another; the listeners' callbacks here only
/// post a signal, so the lock is held for microseconds.
/// </para>
/// </remarks>
internal sealed class ChangeSignal
{
    private readonly Lock _firing = new();
    private CancellationTokenSource _current = new();

    /// <summary>Gets a token that changes at the next <see cref="Fire"/>.</summary>
    public IChangeToken Token => new CancellationChangeToken(Volatile.Read(ref _current).Token);

    /// <summary>Tells the listeners of the current token, on this thread, and starts the next one.</summary>
    public void Fire()
    {
        lock (_firing)
        {
            Interlocked.Exchange(ref _current, new CancellationTokenSource()).Cancel();
        }
    }

    /// <summary>Tells the listeners of the current token, off this thread's stack, and starts the next one.</summary>
    public Task FireAsync() => Task.Run(Fire);
}
