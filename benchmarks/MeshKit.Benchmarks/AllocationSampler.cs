using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace MeshKit.Benchmarks;

/// <summary>
/// Counts the runtime's allocation samples (one per ~100 KB allocated) by type, in process: which types a loop
/// allocates most, without an external profiler.
/// </summary>
internal sealed class AllocationSampler : EventListener
{
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private volatile bool _paused;

    /// <summary>Gets or sets whether samples are dropped (events arrive a few milliseconds late: for long phases only).</summary>
    public bool Paused
    {
        get => _paused;
        set => _paused = value;
    }

    /// <summary>Gets or sets how many types <see cref="Print"/> lists, the most bytes first (`--allocations-top N`).</summary>
    public static int Top { get; set; } = 40;

    /// <summary>Prints each type's share of the sampled bytes and, given how many calls ran, its estimated bytes per call.</summary>
    public void Print(TextWriter output, long calls = 0)
    {
        var total = _bytes.Values.Sum();
        foreach (var (type, bytes) in _bytes.OrderByDescending(p => p.Value).Take(Top))
        {
            var perCall = calls > 0 ? $"{(double)bytes / calls,8:F1} B/call  " : string.Empty;
            output.WriteLine($"{bytes * 100.0 / total,6:F1}%  {perCall}{type}");
        }
    }

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            // GC keyword (0x1) at Verbose level carries GCAllocationTick.
            EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (!_paused && eventData.EventName?.StartsWith("GCAllocationTick", StringComparison.Ordinal) == true && eventData.Payload is { } payload)
        {
            var name = eventData.PayloadNames!.IndexOf("TypeName") is var i and >= 0 ? payload[i] as string ?? "?" : "?";
            var amount = eventData.PayloadNames.IndexOf("AllocationAmount64") is var j and >= 0 ? Convert.ToInt64(payload[j], System.Globalization.CultureInfo.InvariantCulture) : 100_000;
            _bytes.AddOrUpdate(name, amount, (_, v) => v + amount);
        }
    }
}
