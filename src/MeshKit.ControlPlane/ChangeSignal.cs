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
/// </remarks>
internal sealed class ChangeSignal
{
    private CancellationTokenSource _current = new();

    /// <summary>Gets a token that changes at the next <see cref="Fire"/>.</summary>
    public IChangeToken Token => new CancellationChangeToken(Volatile.Read(ref _current).Token);

    /// <summary>Tells the listeners of the current token, on this thread, and starts the next one.</summary>
    public void Fire() => Interlocked.Exchange(ref _current, new CancellationTokenSource()).Cancel();

    /// <summary>Tells the listeners of the current token, off this thread's stack, and starts the next one.</summary>
    public Task FireAsync() => Interlocked.Exchange(ref _current, new CancellationTokenSource()).CancelAsync();
}
