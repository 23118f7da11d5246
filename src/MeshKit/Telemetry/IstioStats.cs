using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace MeshKit.Telemetry;

/// <summary>
/// Istio's standard metrics aggregated by MeshKit itself and written in Prometheus's text format, as an Envoy sidecar
/// serves its stats at <c>/stats/prometheus</c>. A metrics SDK finds a measurement's time series by hashing its labels
/// (Istio's 25: about a microsecond per measurement with OpenTelemetry, six measurements per call with both reporters);
/// here a report finds its series by the identity of the label objects it already holds (a snapshot's, a peer's
/// metadata), and the label texts are built once per series. Written by the report drain (and by a request whose
/// buffer was full), read by a scrape: one lock, never taken on the request path in the usual case.
/// </summary>
internal sealed class IstioStats
{
    /// <summary>
    /// The most label sets kept per metric, as OpenTelemetry's SDK caps a metric's series (2,000): past it, new label sets
    /// are counted in one series labelled <c>otel_metric_overflow="true"</c>, as the SDK does. Label values come partly
    /// from peers, so the store must not grow without bound.
    /// </summary>
    internal const int SeriesLimit = 2000;

    /// <summary>The content type of Prometheus's text exposition format.</summary>
    internal const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private const string OverflowLabels = "otel_metric_overflow=\"true\"";

    private readonly Lock _lock = new();

    // Reports of one series share label objects: the lookup compares references (a hash of object identities), and
    // only a label set not seen before renders its texts. Different objects with equal texts land on the same cells.
    private readonly Dictionary<LabelObjects, Cells> _seen = [];
    private readonly (LabelObjects Key, Cells? Cells)[] _recent = new (LabelObjects, Cells?)[4];
    private int _next;
    private readonly Family[] _families =
    [
        new("istio_requests_total", "counter", "Requests, as Istio's standard metric.", null),
        new("istio_request_duration_milliseconds", "histogram", "Request duration in milliseconds, as Istio's standard metric.", [.. IstioMetrics.DurationBuckets.HistogramBucketBoundaries!]),
        new("istio_request_bytes", "histogram", "Request body size in bytes, as Istio's standard metric.", [.. IstioMetrics.SizeBuckets.HistogramBucketBoundaries!.Select(b => (double)b)]),
        new("istio_response_bytes", "histogram", "Response body size in bytes, as Istio's standard metric.", [.. IstioMetrics.SizeBuckets.HistogramBucketBoundaries!.Select(b => (double)b)]),
        new("istio_request_messages_total", "counter", "gRPC messages sent by the client, as Istio's standard metric.", null),
        new("istio_response_messages_total", "counter", "gRPC messages sent by the server, as Istio's standard metric.", null),
    ];

    /// <summary>Marks the endpoint that serves the store: its requests are not reported as calls of the mesh.</summary>
    internal sealed class Scrape
    {
        public static readonly Scrape Instance = new();
    }

    /// <summary>Gets how many label sets are kept for <paramref name="metric"/> (tests).</summary>
    internal int SeriesCount(int metric)
    {
        lock (_lock)
        {
            return _families[metric].Count;
        }
    }

    /// <summary>Counts one request of <paramref name="r"/>'s series and records its duration and sizes.</summary>
    public void Add(in RequestReport r)
    {
        lock (_lock)
        {
            // A drain takes a thread's reports in order, mostly of a few series (a workload's calls out and in): the
            // last few label sets found are compared before any hashing.
            var key = new LabelObjects(r);
            for (var i = 0; i < _recent.Length; i++)
            {
                ref readonly var recent = ref _recent[i];
                if (recent.Cells is { } found && recent.Key.Same(key))
                {
                    found.Add(r);
                    return;
                }
            }

            if (!_seen.TryGetValue(key, out var cells))
            {
                if (_seen.Count >= 4 * SeriesLimit)
                {
                    Array.Clear(_recent);
                    _seen.Clear(); // only a cache of the families' cells: what it held is counted there
                }

                cells = Resolve(r);
                _seen.Add(key, cells);
            }

            _recent[_next] = (key, cells);
            _next = (_next + 1) % _recent.Length;
            cells.Add(r);
        }
    }

    /// <summary>Adds a running gRPC call's messages counted since it last reported (<see cref="LiveStreams"/>): the message counters only.</summary>
    public void AddMessages(in RequestReport r)
    {
        var tags = new KeyValuePair<string, object?>[IstioMetrics.LabelCount];
        IstioMetrics.Label(r, tags);
        var side = r.Policy?.For(r.Reporter);
        lock (_lock)
        {
            for (var m = ReportPolicy.RequestMessages; m <= ReportPolicy.ResponseMessages; m++)
            {
                if (side?.Off(m) != true)
                {
                    _families[m].Cell(Render(tags, side is null ? ReportPolicy.DefaultPlan(m) : side.Plan(m), r.Values))
                        .Increase(m == ReportPolicy.RequestMessages ? r.RequestMessages : r.ResponseMessages);
                }
            }
        }
    }

    /// <summary>Writes every series in Prometheus's text exposition format (version 0.0.4).</summary>
    public void WriteTo(StringBuilder text)
    {
        // Copied under the lock, formatted outside it: a scrape of a large store must not hold up the drains (nor a
        // request thread that records inline because its buffer is full) for as long as formatting takes.
        var copies = new CellValues[_families.Length][];
        lock (_lock)
        {
            for (var m = 0; m < _families.Length; m++)
            {
                copies[m] = _families[m].Copy();
            }
        }

        for (var m = 0; m < _families.Length; m++)
        {
            _families[m].WriteTo(text, copies[m]);
        }
    }

    // The cells each metric of a label set counts into (null: the Telemetry API turned that metric off for it, or a
    // message count of a call that is not gRPC's).
    private Cells Resolve(in RequestReport r)
    {
        var tags = new KeyValuePair<string, object?>[IstioMetrics.LabelCount];
        IstioMetrics.Label(r, tags);
        var side = r.Policy?.For(r.Reporter);
        var cells = new Cell?[_families.Length];
        for (var m = 0; m < _families.Length; m++)
        {
            if (side?.Off(m) != true && (m < ReportPolicy.RequestMessages || r.IsGrpc))
            {
                cells[m] = _families[m].Cell(Render(tags, side is null ? ReportPolicy.DefaultPlan(m) : side.Plan(m), r.Values));
            }
        }

        return new Cells(cells[ReportPolicy.Count], cells[ReportPolicy.Duration], cells[ReportPolicy.RequestSize], cells[ReportPolicy.ResponseSize], cells[ReportPolicy.RequestMessages], cells[ReportPolicy.ResponseMessages]);
    }

    /// <summary>Renders labels as Prometheus writes them between braces: <c>name="value"</c>, comma-separated, values escaped.</summary>
    internal static string Render(KeyValuePair<string, object?>[] tags, ReportPolicy.Label[]? plan, string[]? values)
    {
        var text = new StringBuilder(512);
        var count = plan?.Length ?? tags.Length;
        for (var i = 0; i < count; i++)
        {
            var (name, value) = plan is null ? tags[i]
                : plan[i].Value >= 0 ? new(plan[i].Name, values?[plan[i].Value] ?? "unknown")
                : tags[plan[i].Standard];
            if (i > 0)
            {
                text.Append(',');
            }

            text.Append(name).Append("=\"");
            foreach (var c in Convert.ToString(value, CultureInfo.InvariantCulture) ?? string.Empty)
            {
                _ = c switch
                {
                    '\\' => text.Append(@"\\"),
                    '"' => text.Append("\\\""),
                    '\n' => text.Append(@"\n"),
                    _ => text.Append(c),
                };
            }

            text.Append('"');
        }

        return text.ToString();
    }

    private static string Number(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : value.ToString("R", CultureInfo.InvariantCulture);

    private sealed record Cells(Cell? Count, Cell? Duration, Cell? RequestBytes, Cell? ResponseBytes, Cell? RequestMessages, Cell? ResponseMessages)
    {
        public void Add(in RequestReport r)
        {
            Count?.Record(1);
            Duration?.Record(r.DurationMilliseconds);
            RequestBytes?.Record(r.RequestBytes);
            ResponseBytes?.Record(r.ResponseBytes);
            RequestMessages?.Increase(r.RequestMessages);
            ResponseMessages?.Increase(r.ResponseMessages);
        }
    }

    /// <summary>One metric's series of one label set: a count, or a histogram (per-bucket counts, sum, count).</summary>
    private sealed class Cell(string labels, double[]? bounds)
    {
        private readonly long[]? _buckets = bounds is null ? null : new long[bounds.Length + 1];

        public string Labels { get; } = labels;

        public long Count { get; private set; }

        public double Sum { get; private set; }

        /// <summary>Adds <paramref name="amount"/> to a counter's value.</summary>
        public void Increase(long amount) => Count += amount;

        public void Record(double value)
        {
            Count++;
            Sum += value;
            if (_buckets is not null)
            {
                var i = 0;
                while (i < bounds!.Length && value > bounds[i])
                {
                    i++; // a bucket counts values up to and including its bound (Prometheus's "le")
                }

                _buckets[i]++;
            }
        }

        /// <summary>Copies the cell's values (under the store's lock).</summary>
        public CellValues Copy() => new(Labels, Count, Sum, _buckets?.ToArray());
    }

    /// <summary>A cell's values as of a scrape.</summary>
    private sealed record CellValues(string Labels, long Count, double Sum, long[]? Buckets);

    /// <summary>One metric: its cells by label text, at most <see cref="SeriesLimit"/> plus the overflow series.</summary>
    private sealed class Family(string name, string type, string help, double[]? bounds)
    {
        private readonly Dictionary<string, Cell> _cells = new(StringComparer.Ordinal);
        private Cell? _overflow;

        public int Count => _cells.Count;

        public Cell Cell(string labels)
        {
            if (_cells.TryGetValue(labels, out var cell))
            {
                return cell;
            }

            if (_cells.Count >= SeriesLimit)
            {
                return _overflow ??= new Cell(OverflowLabels, bounds);
            }

            cell = new Cell(labels, bounds);
            _cells.Add(labels, cell);
            return cell;
        }

        /// <summary>Copies every cell's values, the overflow series last (under the store's lock).</summary>
        public CellValues[] Copy() => [.. _cells.Values.Select(c => c.Copy()), .. _overflow is null ? [] : new[] { _overflow.Copy() }];

        /// <summary>Writes the metric's series (outside the lock: the name, type, help and bounds never change).</summary>
        public void WriteTo(StringBuilder text, CellValues[] cells)
        {
            if (cells.Length == 0)
            {
                return;
            }

            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var cell in cells)
            {
                // A Telemetry policy may remove every label: a series without labels has no braces.
                var labels = cell.Labels.Length == 0 ? string.Empty : "{" + cell.Labels + "}";
                if (cell.Buckets is null)
                {
                    text.Append(name).Append(labels).Append(' ').Append(cell.Count).Append('\n');
                    continue;
                }

                long cumulative = 0;
                var le = cell.Labels.Length == 0 ? "le=\"" : ",le=\"";
                for (var i = 0; i < cell.Buckets.Length; i++)
                {
                    cumulative += cell.Buckets[i];
                    var bound = i < bounds!.Length ? Number(bounds[i]) : "+Inf";
                    text.Append(name).Append("_bucket{").Append(cell.Labels).Append(le).Append(bound).Append("\"} ").Append(cumulative).Append('\n');
                }

                text.Append(name).Append("_sum").Append(labels).Append(' ').Append(Number(cell.Sum)).Append('\n');
                text.Append(name).Append("_count").Append(labels).Append(' ').Append(cell.Count).Append('\n');
            }
        }
    }

    /// <summary>A report's label objects, compared by reference: equal references are equal texts, the converse need not hold.</summary>
    private readonly struct LabelObjects(in RequestReport r) : IEquatable<LabelObjects>
    {
        private readonly int _code = r.ResponseCode;
        private readonly object? _reporter = r.Reporter, _source = r.Source, _sourcePrincipal = r.SourcePrincipal, _destination = r.Destination,
            _destinationPrincipal = r.DestinationPrincipal, _service = r.DestinationService, _protocol = r.Protocol, _grpc = r.GrpcStatus,
            _flags = r.ResponseFlags, _security = r.ConnectionSecurityPolicy, _policy = r.Policy;

        // UPSERT values are made per request: compared (and hashed) by their texts.
        private readonly string[]? _values = r.Values;

        public bool Equals(LabelObjects other) => Same(other);

        public bool Same(in LabelObjects other) =>
            _code == other._code && _reporter == other._reporter && _source == other._source && _sourcePrincipal == other._sourcePrincipal
            && _destination == other._destination && _destinationPrincipal == other._destinationPrincipal && _service == other._service
            && _protocol == other._protocol && _grpc == other._grpc && _flags == other._flags && _security == other._security && _policy == other._policy
            && RequestReport.SameValues(_values, other._values);

        public override bool Equals(object? obj) => obj is LabelObjects other && Equals(other);

        public override int GetHashCode()
        {
            var hash = new HashCode();
            hash.Add(_code);
            hash.Add(RuntimeHelpers.GetHashCode(_reporter));
            hash.Add(RuntimeHelpers.GetHashCode(_source));
            hash.Add(RuntimeHelpers.GetHashCode(_sourcePrincipal));
            hash.Add(RuntimeHelpers.GetHashCode(_destination));
            hash.Add(RuntimeHelpers.GetHashCode(_destinationPrincipal));
            hash.Add(RuntimeHelpers.GetHashCode(_service));
            hash.Add(RuntimeHelpers.GetHashCode(_protocol));
            hash.Add(RuntimeHelpers.GetHashCode(_grpc));
            hash.Add(RuntimeHelpers.GetHashCode(_flags));
            hash.Add(RuntimeHelpers.GetHashCode(_security));
            hash.Add(RuntimeHelpers.GetHashCode(_policy));
            foreach (var value in _values ?? [])
            {
                hash.Add(value, StringComparer.Ordinal);
            }

            return hash.ToHashCode();
        }
    }
}
