namespace MeshKit.Telemetry;

/// <summary>
/// A gRPC call still running whose messages are counted: its counts so far, and the labels its message counters are
/// written with (<see cref="Describe"/>). A long stream's messages are added every interval while it runs, as Envoy
/// adds them on its reporting timer, and the rest with the call's report when it ends (<see cref="Remainder"/>).
/// The call's body wrappers count the messages into it as the bytes go by: the counts live here, with no object of
/// their own.
/// </summary>
internal abstract class LiveStream
{
    private Http.GrpcFrames _requests;
    private Http.GrpcFrames _responses;
    private long _requestsAdded;
    private long _responsesAdded;
    private int _ended;

    // Where the stream is held (LiveStreams' table and slot), so that its end frees the slot at once.
    private object?[]? _table;
    private int _slot;

    /// <summary>Gets whether the table should hold the stream weakly once it has run past a sweep (a caller's).</summary>
    internal bool Weakly { get; private set; }

    /// <summary>Gets the client's messages counted so far.</summary>
    public virtual long RequestMessages => _requests.Count;

    /// <summary>Gets the server's messages counted so far.</summary>
    public virtual long ResponseMessages => _responses.Count;

    /// <summary>Gets whether the call has ended: the sweep lets go of it.</summary>
    public bool Ended => Volatile.Read(ref _ended) != 0;

    /// <summary>A report of the call's peers (its message counters' labels), with no outcome; null when it has none to give yet.</summary>
    public abstract RequestReport? Describe();

    /// <summary>Counts the client's body bytes as they go by (one writer or reader at a time, as a body has).</summary>
    public void RequestBytes(ReadOnlySpan<byte> data) => _requests.Add(data);

    /// <summary>Counts the client's body bytes as they go by, in segments.</summary>
    public void RequestBytes(in System.Buffers.ReadOnlySequence<byte> data) => _requests.Add(data);

    /// <summary>Counts the server's body bytes as they go by.</summary>
    public void ResponseBytes(ReadOnlySpan<byte> data) => _responses.Add(data);

    /// <summary>The client's body is sent again from its start (a handler above the mesh resends it): counted afresh.</summary>
    public void RestartRequests() => _requests = default;

    /// <summary>Ends the stream and returns the messages not added yet, for the call's own report.</summary>
    public (long Requests, long Responses) Remainder()
    {
        Interlocked.Exchange(ref _ended, 1); // a full fence: a growing table that moves the stream sees the end, or the end sees the move
        var table = Volatile.Read(ref _table);
        while (table is not null)
        {
            // Unless a sweep has made the slot weak meanwhile: a later sweep frees it.
            Interlocked.CompareExchange(ref table[_slot], null, this);
            var now = Volatile.Read(ref _table);
            if (ReferenceEquals(now, table))
            {
                break;
            }

            table = now;
        }

        return Claim();
    }

    internal void HeldAt(object?[] table, int slot, bool weakly)
    {
        _slot = slot;
        Weakly = weakly;
        Volatile.Write(ref _table, table);
    }

    /// <summary>The table grew: the stream keeps its slot in the new one.</summary>
    internal void Moved(object?[] from, object?[] to) => Interlocked.CompareExchange(ref _table, to, from);

    /// <summary>Claims the messages counted since the last claim: a sweep and the call's end may race, and each message is added once.</summary>
    internal (long Requests, long Responses) Claim() => (Claim(ref _requestsAdded, RequestMessages), Claim(ref _responsesAdded, ResponseMessages));

    // Counts only grow: the claimed mark moves up to what was read, and whoever moves it adds the difference.
    private static long Claim(ref long added, long count)
    {
        while (true)
        {
            var before = Volatile.Read(ref added);
            if (count <= before)
            {
                return 0;
            }

            if (Interlocked.CompareExchange(ref added, count, before) == before)
            {
                return count - before;
            }
        }
    }
}

/// <summary>
/// The gRPC calls of a workload still running, swept every <see cref="Interval"/> to add what their messages counted
/// since the last sweep. A call takes a free slot of a table (a compare-and-swap, no lock, nothing allocated) and
/// frees it when it ends, so that the table holds only the calls that run: a unary call, over long before the next
/// sweep, is never swept, and nothing it made outlives it here. (A list that calls joined and the sweep emptied held
/// every call of the interval until then, tens of thousands a second under load, and the garbage collector promoted
/// them all: 7 to 9 µs per gRPC call end to end, performance.md.) The table grows, under a lock, only when at least
/// half of it is taken.
/// </summary>
internal sealed class LiveStreams(IstioMetrics owner, TimeProvider time) : IDisposable
{
    /// <summary>How often a running stream's messages are added: Envoy's reporting interval for long streams.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(5);

    // Fills every slot of a table that has been replaced: nothing joins it any more.
    private static readonly object Sealed = new();

    [ThreadStatic]
    private static int t_cursor;

    private readonly Lock _growing = new();
    private object?[] _table = new object?[64];
    private ITimer? _timer;
    private TimeSpan _interval = DefaultInterval;

    /// <summary>Gets the interval between sweeps: the one the last stream added was given.</summary>
    public TimeSpan Interval => _interval;

    /// <summary>
    /// Keeps <paramref name="stream"/> until it ends; <paramref name="weakly"/>, only while something else holds it once
    /// it has run past a sweep (a caller's response that the application drops unread and undisposed never ends, and
    /// must not be kept alive here; until that sweep it is held, which costs a short call no weak reference).
    /// The sweeps come every <paramref name="interval"/> from then on (the workload's config when the stream started:
    /// a changed interval takes effect with the next stream).
    /// </summary>
    public void Add(LiveStream stream, TimeSpan interval, bool weakly = false)
    {
        switch (Volatile.Read(ref _timer))
        {
            case null:
                _interval = interval;
                StartTimer();
                break;
            case DisposedTimer:
                return; // shutting down: the stream's messages go with its report
            case var timer when interval != _interval:
                _interval = interval;
                timer.Change(interval, interval);
                break;
        }

        while (true)
        {
            var table = Volatile.Read(ref _table);

            // A scattered starting point (each thread's calls counted, spread by Fibonacci hashing), then the next free
            // slot. A call that had to pass half the table (at least that many calls run) grows it for the calls
            // after it; growing only then keeps the table at most twice the calls that run, whatever their pattern.
            var at = unchecked((int)(((uint)(++t_cursor + (Environment.CurrentManagedThreadId << 16)) * 0x9E3779B9u) % (uint)table.Length));
            for (var probe = 0; probe < table.Length; probe++)
            {
                if (Volatile.Read(ref table[at]) is null)
                {
                    // Where it will be is set before it is there: a table growing from now on moves it along.
                    stream.HeldAt(table, at, weakly);
                    if (Interlocked.CompareExchange(ref table[at], stream, null) is null)
                    {
                        if (probe > table.Length / 2)
                        {
                            Grow(table);
                        }

                        return;
                    }
                }

                at = at + 1 == table.Length ? 0 : at + 1;
            }

            Grow(table); // full (or sealed: being replaced)
        }
    }

    /// <summary>Gets how many streams the table holds (tests): ended weakly held and collected ones until the next sweep.</summary>
    internal int Held => Volatile.Read(ref _table).Count(entry => entry is not null);

    /// <summary>Gets how many slots the table has (tests): at most about twice the most calls that ran at once.</summary>
    internal int Capacity => Volatile.Read(ref _table).Length;

    /// <summary>Stops the timer; what runs still is added at its end.</summary>
    public void Dispose() => Interlocked.Exchange(ref _timer, DisposedTimer.Instance)?.Dispose();

    /// <summary>Adds every running stream's messages counted since the last sweep.</summary>
    public void Sweep()
    {
        var table = Volatile.Read(ref _table);
        for (var i = 0; i < table.Length; i++)
        {
            var entry = Volatile.Read(ref table[i]);
            if (ReferenceEquals(entry, Sealed))
            {
                continue; // the table is being replaced: the next sweep reads its successor
            }

            var stream = entry as LiveStream ?? (entry is WeakReference<LiveStream> weak && weak.TryGetTarget(out var target) ? target : null);
            if (stream is null || stream.Ended)
            {
                if (entry is not null)
                {
                    Interlocked.CompareExchange(ref table[i], null, entry); // ended, or collected
                }

                continue;
            }

            if (stream.Describe() is { } report)
            {
                var (requests, responses) = stream.Claim();
                if (requests > 0 || responses > 0)
                {
                    owner.RecordMessages(report with { RequestMessages = requests, ResponseMessages = responses });
                }
            }

            if (stream.Weakly && entry is LiveStream)
            {
                Interlocked.CompareExchange(ref table[i], new WeakReference<LiveStream>(stream), entry);
            }
        }
    }

    private void Grow(object?[] full)
    {
        lock (_growing)
        {
            if (!ReferenceEquals(Volatile.Read(ref _table), full))
            {
                return;
            }

            // Each entry is taken out and its slot sealed in one step, so that no call joins the old table after its
            // slot was copied; a stream moves along before the new table is published, and one that ended meanwhile
            // is let go here if its end did not see the move.
            var grown = new object?[full.Length * 2];
            for (var i = 0; i < full.Length; i++)
            {
                var entry = Interlocked.Exchange(ref full[i], Sealed);
                grown[i] = entry;
                if (entry is LiveStream stream)
                {
                    stream.Moved(full, grown);
                    if (stream.Ended)
                    {
                        Interlocked.CompareExchange(ref grown[i], null, stream);
                    }
                }
            }

            Volatile.Write(ref _table, grown);
        }
    }

    private void StartTimer()
    {
        var timer = time.CreateTimer(static state => ((LiveStreams)state!).SweepSafely(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        if (Interlocked.CompareExchange(ref _timer, timer, null) is null)
        {
            timer.Change(_interval, _interval);
        }
        else
        {
            timer.Dispose();
        }
    }

    private void SweepSafely()
    {
        try
        {
            Sweep();
        }
        catch (Exception)
        {
            owner.Failed(); // a metrics listener threw: counted, as a drain counts it
        }
    }

    // Stands in for the timer once disposed, so that no later call starts another.
    private sealed class DisposedTimer : ITimer
    {
        public static readonly DisposedTimer Instance = new();

        public bool Change(TimeSpan dueTime, TimeSpan period) => false;

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
