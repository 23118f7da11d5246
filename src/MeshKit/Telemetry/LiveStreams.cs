namespace MeshKit.Telemetry;

/// <summary>
/// A gRPC call still running whose messages are counted: its counts so far, and the labels its message counters are
/// written with (<see cref="Describe"/>). A long stream's messages are added every interval while it runs, as Envoy
/// adds them on its reporting timer, and the rest with the call's report when it ends (<see cref="Remainder"/>).
/// </summary>
internal abstract class LiveStream
{
    private long _requestsAdded;
    private long _responsesAdded;
    private int _ended;

    /// <summary>Gets the client's messages counted so far.</summary>
    public abstract long RequestMessages { get; }

    /// <summary>Gets the server's messages counted so far.</summary>
    public abstract long ResponseMessages { get; }

    /// <summary>Gets whether the call has ended: the sweep lets go of it.</summary>
    public bool Ended => Volatile.Read(ref _ended) != 0;

    /// <summary>A report of the call's peers (its message counters' labels), with no outcome; null when it has none to give yet.</summary>
    public abstract RequestReport? Describe();

    /// <summary>Ends the stream and returns the messages not added yet, for the call's own report.</summary>
    public (long Requests, long Responses) Remainder()
    {
        Volatile.Write(ref _ended, 1);
        return Claim();
    }

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
/// since the last sweep. Calls join without a lock (a push onto a linked list); the sweep takes the list whole, adds,
/// and puts back the calls that still run.
/// </summary>
internal sealed class LiveStreams(IstioMetrics owner, TimeProvider time) : IDisposable
{
    /// <summary>How often a running stream's messages are added: Envoy's reporting interval for long streams.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(5);

    private Node? _head;
    private ITimer? _timer;
    private TimeSpan _interval = DefaultInterval;

    /// <summary>Gets the interval between sweeps: the one the last stream added was given.</summary>
    public TimeSpan Interval => _interval;

    /// <summary>
    /// Keeps <paramref name="stream"/> until it ends; <paramref name="weakly"/>, only while something else holds it (a
    /// caller's response that the application drops unread and undisposed never ends, and must not be kept alive here).
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

        Push(new Node(weakly ? new WeakReference<LiveStream>(stream) : stream));
    }

    /// <summary>Gets how many streams the list holds (tests): ended and collected ones until the next sweep.</summary>
    internal int Held
    {
        get
        {
            var count = 0;
            for (var node = Volatile.Read(ref _head); node is not null; node = node.Next)
            {
                count++;
            }

            return count;
        }
    }

    /// <summary>Stops the timer; what runs still is added at its end.</summary>
    public void Dispose() => Interlocked.Exchange(ref _timer, DisposedTimer.Instance)?.Dispose();

    /// <summary>Adds every running stream's messages counted since the last sweep.</summary>
    public void Sweep()
    {
        var node = Interlocked.Exchange(ref _head, null);
        while (node is not null)
        {
            var next = node.Next;
            if (node.Stream is { Ended: false } stream)
            {
                if (stream.Describe() is { } report)
                {
                    var (requests, responses) = stream.Claim();
                    if (requests > 0 || responses > 0)
                    {
                        owner.RecordMessages(report with { RequestMessages = requests, ResponseMessages = responses });
                    }
                }

                node.Next = null;
                Push(node);
            }

            node = next;
        }
    }

    private void Push(Node node)
    {
        while (true)
        {
            var head = Volatile.Read(ref _head);
            node.Next = head;
            if (Interlocked.CompareExchange(ref _head, node, head) == head)
            {
                return;
            }
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

    private sealed class Node(object stream)
    {
        // The stream, or a weak reference to it: null once it has been collected.
        public LiveStream? Stream => stream is WeakReference<LiveStream> weak ? (weak.TryGetTarget(out var target) ? target : null) : (LiveStream)stream;

        public Node? Next { get; set; }
    }
}
