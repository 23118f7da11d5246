using System.Diagnostics.Metrics;

namespace MeshKit.Telemetry;

/// <summary>
/// One request as Istio's standard metrics describe it. A caller's report may also carry MeshKit's own request count
/// (<see cref="Counted"/>, labelled with <see cref="CountedHost"/>, the host as called), recorded with it off the
/// request path.
/// </summary>
internal readonly record struct RequestReport(
    string Reporter,
    PeerMetadata Source,
    string? SourcePrincipal,
    PeerMetadata Destination,
    string? DestinationPrincipal,
    string DestinationService,
    string Protocol,
    int ResponseCode,
    string? GrpcStatus,
    string ResponseFlags,
    string ConnectionSecurityPolicy,
    double DurationMilliseconds,
    long RequestBytes,
    long ResponseBytes,
    ReportPolicy? Policy = null,
    MeshMetrics? Counted = null,
    string? CountedHost = null,
    string[]? Values = null,
    long RequestMessages = 0,
    long ResponseMessages = 0)
{
    /// <summary>Gets whether the report is of a gRPC call: only those count messages.</summary>
    public bool IsGrpc => Protocol == "grpc";

    /// <summary>
    /// Whether <paramref name="other"/> has the same labels, told by reference: a steady stream of calls between two
    /// workloads reuses the same label objects, and a miss only means one more counter update, never a wrong one.
    /// </summary>
    public bool SameLabels(in RequestReport other) =>
        ResponseCode == other.ResponseCode
        && ReferenceEquals(Reporter, other.Reporter)
        && ReferenceEquals(Source, other.Source)
        && ReferenceEquals(SourcePrincipal, other.SourcePrincipal)
        && ReferenceEquals(Destination, other.Destination)
        && ReferenceEquals(DestinationPrincipal, other.DestinationPrincipal)
        && ReferenceEquals(DestinationService, other.DestinationService)
        && ReferenceEquals(Protocol, other.Protocol)
        && ReferenceEquals(GrpcStatus, other.GrpcStatus)
        && ReferenceEquals(ResponseFlags, other.ResponseFlags)
        && ReferenceEquals(Policy, other.Policy)
        && ReferenceEquals(Counted, other.Counted)
        && string.Equals(CountedHost, other.CountedHost, StringComparison.Ordinal)
        && ReferenceEquals(ConnectionSecurityPolicy, other.ConnectionSecurityPolicy)
        && SameValues(Values, other.Values);

    /// <summary>Whether two reports' UPSERT values (<see cref="ReportPolicy.Side.Evaluate"/>) are equal texts: they are made per request.</summary>
    internal static bool SameValues(string[]? a, string[]? b) =>
        ReferenceEquals(a, b) || (a is not null && b is not null && a.AsSpan().SequenceEqual(b));
}

/// <summary>
/// Istio's standard metrics, with Istio's names and labels, so Kiali and Istio's Grafana dashboards work unchanged:
/// <c>istio_requests_total</c>, <c>istio_request_duration_milliseconds</c>, <c>istio_request_bytes</c>,
/// <c>istio_response_bytes</c>, and for gRPC calls <c>istio_request_messages_total</c> and
/// <c>istio_response_messages_total</c>. Both sides of a call report: the caller as <c>reporter="source"</c>, the server as
/// <c>reporter="destination"</c>. Nothing is computed unless a listener is attached.
/// </summary>
/// <remarks>
/// A request only leaves its report in a buffer of its thread (<see cref="ReportQueue"/>); the instruments are
/// updated off the request path, in batches, as Envoy flushes its stats. Each update costs a lookup of Istio's 25
/// labels in the metrics SDK (about a microsecond with OpenTelemetry); in a batch, consecutive reports of one series
/// count the request counter once, and one thread updates the instruments instead of every request thread contending
/// for the same series. A report reaches the instruments within <see cref="ReportQueue.FlushInterval"/>, and before any
/// collection of the <c>meshkit.telemetry.istio_reports</c> instrument (which OpenTelemetry's readers collect first,
/// so an export or scrape sees every call that ended before it).
/// </remarks>
internal sealed class IstioMetrics : IDisposable
{
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<long> _requestBytes;
    private readonly Histogram<long> _responseBytes;
    private readonly Counter<long> _requestMessages;
    private readonly Counter<long> _responseMessages;
    private IstioStats? _stats;
    private LiveStreams? _live;
    private long _deferred;
    private long _inline;
    private long _failed;

    /// <summary>
    /// Istio's bucket bounds (Envoy's default histogram buckets, in milliseconds), advised to the metrics SDK so that
    /// the dashboards' <c>histogram_quantile</c> sees the buckets it sees under Istio. OpenTelemetry's default bounds
    /// stop at 10 s, and at 10 kB for the sizes; a View set by the application still takes precedence.
    /// </summary>
    internal static readonly InstrumentAdvice<double> DurationBuckets = new()
    {
        HistogramBucketBoundaries = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000],
    };

    /// <summary>Istio's bucket bounds of the request and response sizes, in bytes: powers of ten from 1 B to 10 MB.</summary>
    internal static readonly InstrumentAdvice<long> SizeBuckets = new()
    {
        HistogramBucketBoundaries = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000],
    };

    public IstioMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeshMetrics.MeterName);
        _requests = meter.CreateCounter<long>("istio_requests_total", description: "Requests, as Istio's standard metric.");
        _duration = meter.CreateHistogram("istio_request_duration_milliseconds", "ms", "Request duration, as Istio's standard metric.", tags: null, DurationBuckets);
        _requestBytes = meter.CreateHistogram("istio_request_bytes", "By", "Request body size, as Istio's standard metric.", tags: null, SizeBuckets);
        _responseBytes = meter.CreateHistogram("istio_response_bytes", "By", "Response body size, as Istio's standard metric.", tags: null, SizeBuckets);
        _requestMessages = meter.CreateCounter<long>("istio_request_messages_total", "{message}", "gRPC messages sent by the client, as Istio's standard metric.");
        _responseMessages = meter.CreateCounter<long>("istio_response_messages_total", "{message}", "gRPC messages sent by the server, as Istio's standard metric.");
        meter.CreateObservableCounter("meshkit.telemetry.istio_reports", ObserveReports, "{report}", "Requests reported to Istio's standard metrics, by path: deferred (recorded off the request path, the usual way), inline (the thread's buffer was full) or failed (a metrics listener threw while recording it).");
    }

    /// <summary>Gets whether anything takes the reports: a metrics listener, or MeshKit's own store (<see cref="Stats"/>).</summary>
    public bool Enabled => _stats is not null || SdkListens;

    private bool SdkListens => _requests.Enabled || _duration.Enabled || _requestBytes.Enabled || _responseBytes.Enabled || _requestMessages.Enabled || _responseMessages.Enabled;

    /// <summary>Gets MeshKit's own aggregation of the reports, served in Prometheus's format; null until <see cref="EnableStats"/>.</summary>
    public IstioStats? Stats => Volatile.Read(ref _stats);

    /// <summary>Starts aggregating every report in MeshKit's own store (idempotent), whether or not a metrics listener is attached.</summary>
    public IstioStats EnableStats()
    {
        Interlocked.CompareExchange(ref _stats, new IstioStats(), null);
        return _stats!;
    }

    /// <summary>Reports one request: buffered for the instruments, or recorded at once when the thread's buffer is full.</summary>
    public void Record(in RequestReport r)
    {
        if (!Enabled || r.Policy?.For(r.Reporter).AllOff == true)
        {
            // Nothing of Istio's to record: MeshKit's own count, if it rode along, is made now.
            r.Counted?.Request(r.CountedHost!, r.ResponseCode, r.ResponseFlags);
            return;
        }

        if (ReportQueue.TryAdd(this, r))
        {
            return; // counted as deferred when drained: no shared counter written per request
        }

        Interlocked.Increment(ref _inline);
        var tags = t_tags ??= new KeyValuePair<string, object?>[LabelCount];
        Label(r, tags);
        Write(r, 1, tags);
    }

    /// <summary>Records every buffered report (of every instance) now: for collection, tests and shutdown.</summary>
    public void Flush() => ReportQueue.Drain();

    public void Dispose()
    {
        _live?.Dispose();
        Flush();
    }

    private Measurement<long>[] ObserveReports()
    {
        // Collected before the other instruments are read: what is buffered reaches them first.
        Flush();
        return
        [
            new(Volatile.Read(ref _deferred), new KeyValuePair<string, object?>("path", "deferred")),
            new(Volatile.Read(ref _inline), new KeyValuePair<string, object?>("path", "inline")),
            new(Volatile.Read(ref _failed), new KeyValuePair<string, object?>("path", "failed")),
        ];
    }

    internal void Failed() => Interlocked.Increment(ref _failed);

    internal const int LabelCount = 25;

    private static readonly string[] Names = Config.IstioStandardMetrics.Labels;

    /// <summary>Fills Istio's labels for <paramref name="r"/> into <paramref name="tags"/>.</summary>
    internal static void Label(in RequestReport r, KeyValuePair<string, object?>[] tags)
    {
        tags[0] = new(Names[0], r.Reporter);
        tags[1] = new(Names[1], r.Source.Workload);
        tags[2] = new(Names[2], r.Source.Namespace);
        tags[3] = new(Names[3], r.SourcePrincipal ?? "unknown");
        tags[4] = new(Names[4], r.Source.App);
        tags[5] = new(Names[5], r.Source.Version);
        tags[6] = new(Names[6], r.Destination.Workload);
        tags[7] = new(Names[7], r.Destination.Namespace);
        tags[8] = new(Names[8], r.DestinationPrincipal ?? "unknown");
        tags[9] = new(Names[9], r.Destination.App);
        tags[10] = new(Names[10], r.Destination.Version);
        tags[11] = new(Names[11], r.DestinationService);
        tags[12] = new(Names[12], r.Destination.Service);
        tags[13] = new(Names[13], r.Destination.Namespace);
        tags[14] = new(Names[14], r.Protocol);
        tags[15] = new(Names[15], BoxedStatus.Of(r.ResponseCode));
        tags[16] = new(Names[16], r.GrpcStatus ?? string.Empty);
        tags[17] = new(Names[17], r.ResponseFlags.Length == 0 ? "-" : r.ResponseFlags);
        tags[18] = new(Names[18], r.ConnectionSecurityPolicy);
        tags[19] = new(Names[19], r.Source.CanonicalService);
        tags[20] = new(Names[20], r.Source.CanonicalRevision);
        tags[21] = new(Names[21], r.Source.Cluster);
        tags[22] = new(Names[22], r.Destination.CanonicalService);
        tags[23] = new(Names[23], r.Destination.CanonicalRevision);
        tags[24] = new(Names[24], r.Destination.Cluster);
    }

    /// <summary>
    /// Counts <paramref name="requests"/> requests of <paramref name="r"/>'s series (0: histograms only) and records its
    /// sizes and duration; <paramref name="tags"/> holds its labels (<see cref="Label"/>).
    /// </summary>
    internal void Write(in RequestReport r, long requests, KeyValuePair<string, object?>[] tags)
    {
        // Every report passes here once (drained or inline); the store counts it whatever the request count batches.
        _stats?.Add(r);
        if (requests > 0)
        {
            r.Counted?.Requests(r.CountedHost!, r.ResponseCode, r.ResponseFlags, requests);
        }

        if (!SdkListens)
        {
            return; // only the store listens (a view dropped Istio's instruments from the SDK)
        }

        if (r.Policy?.For(r.Reporter) is { } side)
        {
            WriteUnder(side, r, requests, tags);
            return;
        }

        ReadOnlySpan<KeyValuePair<string, object?>> labels = tags;
        if (requests > 0)
        {
            _requests.Add(requests, labels);
        }

        _duration.Record(r.DurationMilliseconds, labels);
        _requestBytes.Record(r.RequestBytes, labels);
        _responseBytes.Record(r.ResponseBytes, labels);
        if (r.IsGrpc)
        {
            WriteMessages(r, tags);
        }
    }

    /// <summary>Gets the gRPC calls still running whose messages are added while they run.</summary>
    internal LiveStreams Live => Volatile.Read(ref _live) ?? CreateLive();

    // One list per instance, even when two first gRPC calls race to make it.
    private LiveStreams CreateLive()
    {
        var made = new LiveStreams(this, TimeProvider.System);
        return Interlocked.CompareExchange(ref _live, made, null) ?? made;
    }

    /// <summary>
    /// Adds the messages a running gRPC call counted since it last reported (<see cref="LiveStreams"/>): only the two
    /// message counters, with their labels; the call's request is counted when it ends.
    /// </summary>
    internal void RecordMessages(in RequestReport r)
    {
        _stats?.AddMessages(r);
        if (SdkListens)
        {
            var tags = t_tags ??= new KeyValuePair<string, object?>[LabelCount];
            Label(r, tags);
            WriteMessages(r, tags);
        }
    }

    // The message counters have the peers' labels, not the outcome's (ReportPolicy.DefaultPlan), as Istio's proxy
    // counts messages while the stream runs; a Telemetry policy may turn either off or change its labels.
    private void WriteMessages(in RequestReport r, KeyValuePair<string, object?>[] tags)
    {
        var side = r.Policy?.For(r.Reporter);
        var kept = side is null ? (t_kept is { Length: >= LabelCount } k ? k : t_kept = new KeyValuePair<string, object?>[LabelCount]) : Scratch(side);
        if (side?.Off(ReportPolicy.RequestMessages) != true)
        {
            _requestMessages.Add(r.RequestMessages, Labels(side, ReportPolicy.RequestMessages, r, tags, kept));
        }

        if (side?.Off(ReportPolicy.ResponseMessages) != true)
        {
            _responseMessages.Add(r.ResponseMessages, Labels(side, ReportPolicy.ResponseMessages, r, tags, kept));
        }
    }

    private static ReadOnlySpan<KeyValuePair<string, object?>> Labels(ReportPolicy.Side? side, int metric, in RequestReport r, KeyValuePair<string, object?>[] tags, KeyValuePair<string, object?>[] kept)
    {
        if (side is not null)
        {
            return side.Labels(metric, tags, r.Values, kept);
        }

        var plan = ReportPolicy.DefaultPlan(metric)!;
        for (var i = 0; i < plan.Length; i++)
        {
            kept[i] = tags[plan[i].Standard];
        }

        return kept.AsSpan(0, plan.Length);
    }

    /// <summary>Counts <paramref name="requests"/> drained requests of <paramref name="r"/>'s series, whose labels <paramref name="tags"/> holds.</summary>
    internal void Count(in RequestReport r, long requests, KeyValuePair<string, object?>[] tags)
    {
        r.Counted?.Requests(r.CountedHost!, r.ResponseCode, r.ResponseFlags, requests);
        if (r.Policy?.For(r.Reporter) is not { } side)
        {
            _requests.Add(requests, tags);
        }
        else if (!side.Off(ReportPolicy.Count))
        {
            _requests.Add(requests, side.Labels(ReportPolicy.Count, tags, r.Values, Scratch(side)));
        }

        Interlocked.Add(ref _deferred, requests);
    }

    // Under a Telemetry policy: each metric on or off, with the labels it keeps.
    private void WriteUnder(ReportPolicy.Side side, in RequestReport r, long requests, KeyValuePair<string, object?>[] tags)
    {
        var kept = Scratch(side);
        if (requests > 0 && !side.Off(ReportPolicy.Count))
        {
            _requests.Add(requests, side.Labels(ReportPolicy.Count, tags, r.Values, kept));
        }

        if (!side.Off(ReportPolicy.Duration))
        {
            _duration.Record(r.DurationMilliseconds, side.Labels(ReportPolicy.Duration, tags, r.Values, kept));
        }

        if (!side.Off(ReportPolicy.RequestSize))
        {
            _requestBytes.Record(r.RequestBytes, side.Labels(ReportPolicy.RequestSize, tags, r.Values, kept));
        }

        if (!side.Off(ReportPolicy.ResponseSize))
        {
            _responseBytes.Record(r.ResponseBytes, side.Labels(ReportPolicy.ResponseSize, tags, r.Values, kept));
        }

        if (r.IsGrpc)
        {
            WriteMessages(r, tags);
        }
    }

    // The thread's array for a policy's labels, as wide as the widest plan (added labels make it wider than 25).
    private static KeyValuePair<string, object?>[] Scratch(ReportPolicy.Side side) =>
        t_kept is { } kept && kept.Length >= side.Width ? kept : t_kept = new KeyValuePair<string, object?>[side.Width];

    // Istio's 25 labels exceed a TagList's eight inline ones (it would allocate an array per request): one array per
    // thread for reports recorded inline (listeners copy what they keep).
    [ThreadStatic]
    private static KeyValuePair<string, object?>[]? t_tags;

    // The labels a metric keeps under a Telemetry policy that removes some (per thread: inline records run on request
    // threads while a drain runs).
    [ThreadStatic]
    private static KeyValuePair<string, object?>[]? t_kept;
}

/// <summary>Status codes as tag values, boxed once: a metric tag is an object, and an int boxed per request is 24 bytes.</summary>
internal static class BoxedStatus
{
    private static readonly object[] Codes = Enumerable.Range(0, 600).Select(c => (object)c).ToArray();

    public static object Of(int code) => (uint)code < (uint)Codes.Length ? Codes[code] : code;
}

/// <summary>
/// gRPC status codes as label texts, one object each: a status read from a response is a new string per call, and
/// reports are told apart by the references of their labels (<see cref="RequestReport.SameLabels"/>).
/// </summary>
internal static class GrpcStatusLabel
{
    private static readonly string[] Codes = Enumerable.Range(0, 17).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    /// <summary>Returns the shared text of a gRPC status code (0 to 16); any other text as it is.</summary>
    public static string? Share(string? status) =>
        status is { Length: 1 or 2 } && int.TryParse(status, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) && code < Codes.Length
            ? Codes[code]
            : status;
}
