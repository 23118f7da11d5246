namespace MeshKit.Resilience;

/// <summary>
/// A deadline over a call or an attempt: a cancellation source the clock cancels when the time is up, and that the
/// caller's token cancels too. With the system clock the source is reused per thread (reset when the deadline ends
/// unfired), so a call that meets its deadline arms and disarms one timer and allocates no source of its own; with
/// another clock (a test's) a source is made per deadline on that clock.
/// </summary>
internal struct CallDeadline
{
    private readonly CancellationTokenSource _source;
    private readonly bool _reusable;
    private CancellationTokenRegistration _link;

    private CallDeadline(CancellationTokenSource source, bool reusable, CancellationToken caller)
    {
        _source = source;
        _reusable = reusable;
        _link = caller.CanBeCanceled ? caller.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), source) : default;
    }

    /// <summary>Gets the token that is cancelled when the deadline passes or the caller cancels.</summary>
    public readonly CancellationToken Token => _source.Token;

    /// <summary>Starts a deadline <paramref name="due"/> from now.</summary>
    public static CallDeadline Start(TimeSpan due, CancellationToken caller, TimeProvider time)
    {
        var reusable = ReferenceEquals(time, TimeProvider.System);
        var source = reusable ? PerThread<CancellationTokenSource>.Rent() : new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        var deadline = new CallDeadline(source, reusable, caller);
        source.CancelAfter(due);
        return deadline;
    }

    /// <summary>Whether the time ran out (rather than the caller cancelling).</summary>
    public readonly bool Passed(CancellationToken caller) => _source.IsCancellationRequested && !caller.IsCancellationRequested;

    /// <summary>Moves an unfired deadline to <paramref name="due"/> from now; false when it has fired already.</summary>
    public readonly bool TryMove(TimeSpan due)
    {
        if (_source.IsCancellationRequested)
        {
            return false;
        }

        _source.CancelAfter(due);
        return true;
    }

    /// <summary>Ends the deadline: unlinks the caller and keeps an unfired system-clock source for the thread's next call.</summary>
    public void End()
    {
        // Disposing the link waits for a caller's cancellation running on another thread, so nothing cancels the
        // source after it is reset and reused.
        _link.Dispose();
        _link = default;
        if (_reusable && _source.TryReset())
        {
            PerThread<CancellationTokenSource>.Return(_source);
        }
        else
        {
            _source.Dispose();
        }
    }
}
