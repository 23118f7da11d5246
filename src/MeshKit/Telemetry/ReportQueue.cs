namespace MeshKit.Telemetry;

/// <summary>
/// Takes Istio metric reports off the request path: each thread writes its reports into a ring of its own (one
/// writer, no lock, no allocation), and one drain at a time records them into the instruments, in batches. A drain
/// runs on the thread pool when a ring fills past <see cref="DrainAt"/>, every <see cref="FlushInterval"/> when
/// anything waits, and on demand (<see cref="Drain"/>: collection, tests, shutdown). A ring that is full refuses the
/// report, which its caller then records inline: nothing is dropped, and a drain that falls behind slows no one down
/// more than recording inline would.
/// </summary>
internal static class ReportQueue
{
    /// <summary>The longest a report waits for a drain when traffic is too light to fill a ring.</summary>
    public static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(1);

    private const int Capacity = 128; // a power of two: slots are indexed by masking
    private const int DrainAt = 32;

    private static readonly Lock Registration = new();
    private static readonly Lock Draining = new();
    private static readonly DrainWork Work = new();
    private static readonly Runs Series = new();
    private static Ring[] s_rings = [];
    private static int s_scheduled;
    private static ITimer? s_timer;

    [ThreadStatic]
    private static Ring? t_ring;

    /// <summary>Gets how many threads' rings are kept (those of ended threads are dropped once drained).</summary>
    internal static int RingCount => Volatile.Read(ref s_rings).Length;

    /// <summary>Buffers <paramref name="report"/> for <paramref name="owner"/>; false when this thread's ring is full.</summary>
    public static bool TryAdd(IstioMetrics owner, in RequestReport report)
    {
        var ring = t_ring ?? Register();
        if (!ring.TryWrite(owner, report, out var pending))
        {
            Schedule();
            return false;
        }

        if (pending >= DrainAt)
        {
            Schedule();
        }

        return true;
    }

    /// <summary>Records everything buffered so far, on the calling thread.</summary>
    public static void Drain()
    {
        lock (Draining)
        {
            var dead = false;
            foreach (var ring in Volatile.Read(ref s_rings))
            {
                ring.Drain(Series); // throws nothing: a listener's exception fails its report only
                dead |= !ring.Thread.IsAlive;
            }

            Series.EndAll();

            if (dead)
            {
                Forget();
            }
        }
    }

    private static void Schedule()
    {
        // Read first: until the drain starts, every report past the threshold asks again, on every thread.
        if (Volatile.Read(ref s_scheduled) == 0 && Interlocked.Exchange(ref s_scheduled, 1) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(Work, preferLocal: false);
        }
    }

    private static Ring Register()
    {
        var ring = new Ring(Thread.CurrentThread);
        lock (Registration)
        {
            s_rings = [.. s_rings, ring];
            if (s_timer is null)
            {
                // Not under the registering request's execution context: the timer would keep it (its Activity,
                // its async locals) alive for the life of the process.
                using (ExecutionContext.SuppressFlow())
                {
                    s_timer = TimeProvider.System.CreateTimer(static _ => Tick(), null, FlushInterval, FlushInterval);
                }
            }
        }

        t_ring = ring;
        return ring;
    }

    private static void Tick()
    {
        foreach (var ring in Volatile.Read(ref s_rings))
        {
            if (ring.HasPending)
            {
                Schedule();
                return;
            }
        }
    }

    // Rings of threads that ended are dropped once drained (the caller holds the drain lock, so none refills).
    private static void Forget()
    {
        lock (Registration)
        {
            s_rings = [.. s_rings.Where(r => r.Thread.IsAlive || r.HasPending)];
        }
    }

    private sealed class DrainWork : IThreadPoolWorkItem
    {
        public void Execute()
        {
            // Cleared first: reports written while this drain runs schedule the next one.
            Volatile.Write(ref s_scheduled, 0);
            Drain();
        }
    }

    private struct Slot
    {
        public IstioMetrics? Owner;
        public RequestReport Report;
    }

    /// <summary>
    /// The series a drain has seen (a few at a time): each counts its requests and updates the request counter once,
    /// when the drain ends or the series makes room for another, and keeps its labels filled for the histograms.
    /// </summary>
    private sealed class Runs
    {
        private const int Size = 8;
        private readonly Run[] _runs = Enumerable.Range(0, Size).Select(_ => new Run()).ToArray();
        private int _next;

        public void Add(IstioMetrics owner, in RequestReport report)
        {
            Run? run = null;
            foreach (var candidate in _runs)
            {
                if (candidate.Holds(owner, report))
                {
                    run = candidate;
                    break;
                }
            }

            if (run is null)
            {
                run = _runs[_next];
                _next = (_next + 1) % Size;
                run.End();
                run.Start(owner, report);
            }

            run.Count++;
            owner.Write(report, requests: 0, run.Tags);
        }

        public void EndAll()
        {
            foreach (var run in _runs)
            {
                run.End();
            }
        }
    }

    private sealed class Run
    {
        private IstioMetrics? _owner;
        private RequestReport _labels;

        public KeyValuePair<string, object?>[] Tags { get; } = new KeyValuePair<string, object?>[IstioMetrics.LabelCount];

        public long Count { get; set; }

        public bool Holds(IstioMetrics owner, in RequestReport report) => Count > 0 && ReferenceEquals(_owner, owner) && _labels.SameLabels(report);

        public void Start(IstioMetrics owner, in RequestReport report)
        {
            IstioMetrics.Label(report, Tags);
            (_owner, _labels) = (owner, report);
        }

        /// <summary>Counts the run's requests and empties it.</summary>
        public void End()
        {
            var (owner, count, labels) = (_owner, Count, _labels);
            (_owner, _labels, Count) = (null, default, 0);
            if (count > 0)
            {
                try
                {
                    owner!.Count(labels, count, Tags);
                }
                catch (Exception)
                {
                    owner!.Failed(); // a listener threw (see Ring.Drain)
                }
            }
        }
    }

    /// <summary>One thread's reports: it alone writes (the tail), one drain at a time reads (the head).</summary>
    private sealed class Ring(Thread thread)
    {
        private readonly Slot[] _slots = new Slot[Capacity];
        private int _head;
        private int _tail;

        public Thread Thread { get; } = thread;

        public bool HasPending => Volatile.Read(ref _tail) != Volatile.Read(ref _head);

        public bool TryWrite(IstioMetrics owner, in RequestReport report, out int pending)
        {
            var tail = _tail;
            pending = tail - Volatile.Read(ref _head);
            if (pending >= Capacity)
            {
                return false;
            }

            ref var slot = ref _slots[tail & (Capacity - 1)];
            slot.Owner = owner;
            slot.Report = report;
            Volatile.Write(ref _tail, tail + 1); // published after the slot is written
            pending++;
            return true;
        }

        public void Drain(Runs series)
        {
            var head = _head;
            var tail = Volatile.Read(ref _tail);
            for (; head != tail; head++)
            {
                ref var slot = ref _slots[head & (Capacity - 1)];
                try
                {
                    series.Add(slot.Owner!, slot.Report);
                }
                catch (Exception)
                {
                    // A listener threw. Inline it would have failed the request; here it must not end the process (a
                    // pool thread's exception would) nor stop the drain: the report is counted as failed instead.
                    slot.Owner!.Failed();
                }

                slot = default; // the ring keeps no label objects alive
            }

            Volatile.Write(ref _head, head); // the slots are the writer's again
        }
    }
}
