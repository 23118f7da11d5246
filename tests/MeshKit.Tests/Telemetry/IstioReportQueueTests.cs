using System.Diagnostics.Metrics;
using MeshKit.OpenTelemetry;
using MeshKit.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace MeshKit.Tests.Telemetry;

/// <summary>Istio's metrics recorded off the request path: nothing lost, counted per series, collected in time.</summary>
public sealed class IstioReportQueueTests : IDisposable
{
    private static readonly PeerMetadata Caller = new("productpage-v1", "default", "productpage", "v1", "productpage");
    private static readonly PeerMetadata Server = new("reviews-v2", "default", "reviews", "v2", "reviews");

    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    private IMeterFactory Meters => _services.GetRequiredService<IMeterFactory>();

    public void Dispose() => _services.Dispose();

    /// <summary>An OpenTelemetry meter provider of MeshKit's meter, exporting into <paramref name="exported"/> on a flush.</summary>
    private static MeterProvider Exporting(List<Metric> exported) =>
        Sdk.CreateMeterProviderBuilder().AddMeshInstrumentation().AddInMemoryExporter(exported).Build();

    private static RequestReport Report(int status = 200, double milliseconds = 1.5, long responseBytes = 180, string service = "reviews.default.svc.cluster.local") =>
        new("source", Caller, null, Server, null, service, "http", status, null, string.Empty, "unknown", milliseconds, 0, responseBytes);

    [Fact]
    public async Task ReportsFromManyThreads_AllReachTheInstruments_AfterAFlush()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        using var durations = new MetricCollector<double>(Meters, MeshMetrics.MeterName, "istio_request_duration_milliseconds");
        using var sizes = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_response_bytes");
        var istio = new IstioMetrics(Meters);
        var ok = Report();
        var failed = Report(status: 503);

        // More reports per thread than a buffer holds, so that drains run while threads write (and some may go inline).
        const int threads = 4, each = 5_000;
        await Task.WhenAll(Enumerable.Range(0, threads).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < each; i++)
            {
                istio.Record(i % 10 == 0 ? failed : ok);
            }
        })));
        istio.Flush();

        var counted = requests.GetMeasurementSnapshot();
        Assert.Equal(threads * each, counted.Sum(m => m.Value));
        Assert.Equal(threads * each / 10, counted.Where(m => Equals(m.Tags["response_code"], 503)).Sum(m => m.Value));
        Assert.Equal(threads * each, durations.GetMeasurementSnapshot().Count);
        Assert.All(sizes.GetMeasurementSnapshot(), m => Assert.Equal(180, m.Value));
        Assert.Equal(threads * each, sizes.GetMeasurementSnapshot().Count);
    }

    [Fact]
    public void ConsecutiveReportsOfOneSeries_CountTheRequestsOnce_AndRecordEachDuration()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        using var durations = new MetricCollector<double>(Meters, MeshMetrics.MeterName, "istio_request_duration_milliseconds");
        var istio = new IstioMetrics(Meters);

        // This thread's ring empty first (it may hold other tests' reports): 100 fit, none is recorded inline.
        istio.Flush();
        for (var i = 0; i < 100; i++)
        {
            istio.Record(Report(milliseconds: i));
        }

        istio.Flush();

        // A drain may start while the loop writes (one is scheduled every 32 waiting reports): a few updates, not 100.
        var counted = requests.GetMeasurementSnapshot();
        Assert.Equal(100, counted.Sum(m => m.Value));
        Assert.InRange(counted.Count, 1, 20);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (double)i), durations.GetMeasurementSnapshot().Select(m => m.Value).Order());
    }

    [Fact]
    public void UnderATelemetryPolicy_ReportsKeepTheirOwnLabels_AndAnAllOffSideIsNotBuffered()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        using var durations = new MetricCollector<double>(Meters, MeshMetrics.MeterName, "istio_request_duration_milliseconds");
        var istio = new IstioMetrics(Meters);
        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_COUNT", ClientRemovedTags = { "source_principal", "response_flags" }, ServerDisabled = true });
        foreach (var metric in new[] { "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE" })
        {
            policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = metric, ClientDisabled = true });
        }

        var removing = ReportPolicy.From(policy);

        // Interleaved: the same labels under two policies are two series, never one batch.
        for (var i = 0; i < 10; i++)
        {
            istio.Record(Report() with { Policy = removing });
            istio.Record(Report());
        }

        istio.Flush();

        var counted = requests.GetMeasurementSnapshot();
        Assert.Equal(10, counted.Where(m => !m.Tags.ContainsKey("source_principal")).Sum(m => m.Value));
        Assert.All(counted.Where(m => !m.Tags.ContainsKey("source_principal")), m => Assert.Equal(23, m.Tags.Count));
        Assert.Equal(10, counted.Where(m => m.Tags.ContainsKey("source_principal")).Sum(m => m.Value));
        Assert.Equal(10, durations.GetMeasurementSnapshot().Count); // only the reports without the policy

        // A side with every metric off: nothing is buffered, nothing recorded.
        var silent = new MeshKit.Protocol.V1.TelemetryPolicy();
        foreach (var metric in MeshKit.Config.IstioStandardMetrics.Metrics)
        {
            silent.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = metric, ClientDisabled = true });
        }

        requests.Clear();
        istio.Record(Report() with { Policy = ReportPolicy.From(silent) });
        istio.Flush();
        Assert.Empty(requests.GetMeasurementSnapshot());
        Assert.True(ReportPolicy.From(silent)!.Client.AllOff);
        Assert.False(ReportPolicy.From(silent)!.Server.AllOff);

        // A push naming a metric MeshKit does not know (or one twice) is refused whole: the snapshot is not built, the
        // workload NACKs and keeps the previous policy.
        var unknown = new MeshKit.Protocol.V1.TelemetryPolicy { Metrics = { new MeshKit.Protocol.V1.MetricPolicy { Metric = "TCP_SENT_BYTES", ClientDisabled = true } } };
        Assert.Throws<MeshConfigException>(() => ReportPolicy.From(unknown));
        silent.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_COUNT" });
        Assert.Throws<MeshConfigException>(() => ReportPolicy.From(silent));
    }

    [Fact]
    public void AGrpcCallsMessages_AreCounted_WithThePeersLabelsOnly_AndTheTelemetryApiTurnsThemOffOrTrimsThem()
    {
        using var requestMessages = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_request_messages_total");
        using var responseMessages = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_response_messages_total");
        var istio = new IstioMetrics(Meters);
        var grpc = Report() with { Protocol = "grpc", GrpcStatus = "0", RequestMessages = 3, ResponseMessages = 6 };

        istio.Record(grpc);
        istio.Record(Report()); // an HTTP call counts no messages
        istio.Flush();

        var sent = Assert.Single(requestMessages.GetMeasurementSnapshot());
        Assert.Equal(3, sent.Value);
        Assert.Equal(20, sent.Tags.Count); // Istio's 25 less the outcome's five
        Assert.False(sent.Tags.ContainsKey("response_code"));
        Assert.False(sent.Tags.ContainsKey("grpc_response_status"));
        Assert.Equal("reviews.default.svc.cluster.local", sent.Tags["destination_service"]);
        Assert.Equal(6, Assert.Single(responseMessages.GetMeasurementSnapshot()).Value);

        // GRPC_RESPONSE_MESSAGES off for the caller; GRPC_REQUEST_MESSAGES without the caller's workload, and with a
        // label it lacks given a value (Istio's tag overrides add it).
        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = "GRPC_RESPONSE_MESSAGES", ClientDisabled = true });
        policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy
        {
            Metric = "GRPC_REQUEST_MESSAGES",
            ClientRemovedTags = { "source_workload" },
            ClientUpsertedTags = { new MeshKit.Protocol.V1.TagValue { Name = "response_code", Expression = "string(response.code)" } },
        });
        var trimming = ReportPolicy.From(policy)!;
        requestMessages.Clear();
        responseMessages.Clear();
        istio.Record(grpc with { Policy = trimming, Values = ["200"] });
        istio.Flush();

        var trimmed = Assert.Single(requestMessages.GetMeasurementSnapshot());
        Assert.Equal(20, trimmed.Tags.Count);
        Assert.False(trimmed.Tags.ContainsKey("source_workload"));
        Assert.Equal("200", trimmed.Tags["response_code"]);
        Assert.Empty(responseMessages.GetMeasurementSnapshot());
    }

    [Fact]
    public void MeshKitsOwnRequestCount_RidesTheReport_CountedPerSeries()
    {
        using var counted = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.client.requests");
        using var istioCounted = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        var istio = new IstioMetrics(Meters);
        var mesh = new MeshMetrics(Meters);

        for (var i = 0; i < 100; i++)
        {
            istio.Record(Report(status: i % 4 == 0 ? 503 : 200, service: "rides.default.svc.cluster.local") with { Counted = mesh, CountedHost = new string("reviews".AsSpan()) });
        }

        // Nothing on the request path: counted with Istio's request counter, update for update (once per series per
        // drain; per report only when a thread's buffer was full and the report was recorded inline).
        istio.Flush();
        var snapshot = counted.GetMeasurementSnapshot();
        Assert.Equal(100, snapshot.Sum(m => m.Value));
        Assert.Equal(25, snapshot.Where(m => Equals(m.Tags["http.response.status_code"], 503)).Sum(m => m.Value));
        Assert.All(snapshot, m => Assert.Equal("reviews", m.Tags["meshkit.destination.service"]));
        Assert.Equal(istioCounted.GetMeasurementSnapshot().Select(m => m.Value), snapshot.Select(m => m.Value));

        // A report whose side records none of Istio's metrics still counts MeshKit's.
        var silent = new MeshKit.Protocol.V1.TelemetryPolicy();
        foreach (var metric in MeshKit.Config.IstioStandardMetrics.Metrics)
        {
            silent.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = metric, ClientDisabled = true });
        }

        counted.Clear();
        istio.Record(Report() with { Policy = ReportPolicy.From(silent), Counted = mesh, CountedHost = "reviews" });
        Assert.Equal(1, Assert.Single(counted.GetMeasurementSnapshot()).Value);
    }

    [Fact]
    public async Task AReport_ReachesTheInstruments_WithinTheFlushInterval_WithoutAFlush()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        var istio = new IstioMetrics(Meters);

        istio.Record(Report());

        // One report fills no buffer: the periodic drain records it.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (requests.GetMeasurementSnapshot().Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.Equal(1, Assert.Single(requests.GetMeasurementSnapshot()).Value);
    }

    [Fact]
    public void AnOpenTelemetryCollection_RecordsWhatIsBuffered_First()
    {
        var exported = new List<Metric>();
        using var meters = Exporting(exported);
        var istio = new IstioMetrics(Meters);
        var service = $"collected-{Guid.NewGuid():N}"; // the provider hears every MeshKit meter of the process: this test's series only

        istio.Record(Report(service: service));
        meters.ForceFlush(); // right after: no drain has run yet, unless the collection runs one

        var total = exported.Single(m => m.Name == "istio_requests_total");
        long sum = 0;
        foreach (ref readonly var point in total.GetMetricPoints())
        {
            foreach (var tag in point.Tags)
            {
                if (tag.Key == "destination_service" && Equals(tag.Value, service))
                {
                    sum += point.GetSumLong();
                }
            }
        }

        Assert.Equal(1, sum);
        Assert.Contains(exported, m => m.Name == "istio_request_duration_milliseconds");
        Assert.Contains(exported, m => m.Name == "meshkit.telemetry.istio_reports");
    }

    [Fact]
    public void TheHistograms_HaveIstiosBuckets_InOpenTelemetry()
    {
        var exported = new List<Metric>();
        using var meters = Exporting(exported);
        var istio = new IstioMetrics(Meters);

        // A 45 s call with a 20 kB response: past OpenTelemetry's default last bounds (10 s, 10 kB), inside Istio's.
        istio.Record(Report(milliseconds: 45_000, responseBytes: 20_000, service: $"buckets-{Guid.NewGuid():N}"));
        meters.ForceFlush();

        Assert.Equal([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000], Bounds("istio_request_duration_milliseconds"));
        Assert.Equal([1, 10, 100, 1000, 10000, 100000, 1000000, 10000000], Bounds("istio_response_bytes"));
        Assert.Equal([1, 10, 100, 1000, 10000, 100000, 1000000, 10000000], Bounds("istio_request_bytes"));

        double[] Bounds(string name)
        {
            foreach (ref readonly var point in exported.Last(m => m.Name == name).GetMetricPoints())
            {
                var bounds = new List<double>();
                foreach (var bucket in point.GetHistogramBuckets())
                {
                    if (!double.IsPositiveInfinity(bucket.ExplicitBound))
                    {
                        bounds.Add(bucket.ExplicitBound);
                    }
                }

                return [.. bounds];
            }

            throw new InvalidOperationException($"{name} has no point");
        }
    }

    [Fact]
    public void TheReportsOfThreadsThatEnded_AreRecorded_AndTheirBuffersDropped()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        var istio = new IstioMetrics(Meters);
        istio.Flush();
        var before = ReportQueue.RingCount;

        // Threads come and go (a thread pool retires idle threads): what they buffered is recorded, their buffers go.
        var threads = Enumerable.Range(0, 20).Select(_ => new Thread(() =>
        {
            for (var i = 0; i < 5; i++)
            {
                istio.Record(Report());
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        istio.Flush(); // records, and finds the ended threads
        istio.Flush(); // (a ring still pending when its thread was found ended goes on the next drain)

        Assert.Equal(100, requests.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.True(ReportQueue.RingCount < before + 20, $"{ReportQueue.RingCount} rings kept, {before} before 20 threads ended");
    }

    [Fact]
    public void ARequestsReport_AllocatesNothing_WithAListenerAttached()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        var istio = new IstioMetrics(Meters);
        var report = Report();
        istio.Record(report); // this thread's buffer is made once
        istio.Flush();

        // Fewer reports than start a drain: what the request thread does is a write into its buffer, nothing else.
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 16; i++)
        {
            istio.Record(report);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        istio.Flush();

        Assert.Equal(0, allocated);
        Assert.Equal(17, requests.GetMeasurementSnapshot().Sum(m => m.Value));
    }

    [Fact]
    public void AListenerThatThrows_FailsTheReport_NotTheProcess()
    {
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // This test's meters only: other tests record in parallel.
            if (ReferenceEquals(instrument.Meter.Scope, Meters) && instrument.Name.StartsWith("istio_", StringComparison.Ordinal))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, _, _) => throw new InvalidOperationException("a faulty exporter"));
        listener.Start();
        using var reports = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "meshkit.telemetry.istio_reports");
        var istio = new IstioMetrics(Meters);

        istio.Record(Report());
        istio.Record(Report());
        istio.Flush();

        reports.RecordObservableInstruments();
        var failed = reports.GetMeasurementSnapshot().Last(m => (string?)m.Tags["path"] == "failed");
        Assert.Equal(2, failed.Value);
    }

    private sealed class Attributes(string method) : MeshKit.Config.Expressions.ICelContext
    {
        public MeshKit.Config.Expressions.CelValue Get(int attribute) =>
            attribute == MeshKit.Config.Expressions.RequestAttributes.RequestMethod ? MeshKit.Config.Expressions.CelValue.Of(method) : MeshKit.Config.Expressions.CelValue.Error;

        public bool TryGetEntry(int attribute, string key, out string? value)
        {
            value = null;
            return false;
        }
    }

    [Fact]
    public void TagValues_ReachTheSdksInstruments_AsAddedAndRewrittenLabels_OnTheMetricsTheyNameOnly()
    {
        using var requests = new MetricCollector<long>(Meters, MeshMetrics.MeterName, "istio_requests_total");
        using var durations = new MetricCollector<double>(Meters, MeshMetrics.MeterName, "istio_request_duration_milliseconds");
        var istio = new IstioMetrics(Meters);
        var entry = new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_COUNT" };
        entry.ClientUpsertedTags.Add(new MeshKit.Protocol.V1.TagValue { Name = "destination_service", Expression = "'svc-' + request.method" });
        entry.ClientUpsertedTags.Add(new MeshKit.Protocol.V1.TagValue { Name = "request_method", Expression = "request.method" });
        entry.ClientUpsertedTags.Add(new MeshKit.Protocol.V1.TagValue { Name = "request_host", Expression = "request.host" }); // absent here: "unknown"
        var policy = ReportPolicy.From(new MeshKit.Protocol.V1.TelemetryPolicy { Metrics = { entry } })!;

        foreach (var method in new[] { "GET", "GET", "POST" })
        {
            istio.Record(Report() with { Policy = policy, Values = policy.Client.Evaluate(new Attributes(method)) });
        }

        istio.Flush();

        var counted = requests.GetMeasurementSnapshot();
        Assert.Equal(2, counted.Where(m => Equals(m.Tags["request_method"], "GET")).Sum(m => m.Value));
        Assert.Equal(1, counted.Where(m => Equals(m.Tags["request_method"], "POST")).Sum(m => m.Value));
        Assert.All(counted, m => Assert.Equal(27, m.Tags.Count));
        Assert.All(counted, m => Assert.Equal("unknown", m.Tags["request_host"]));
        Assert.All(counted, m => Assert.Equal("svc-" + m.Tags["request_method"], m.Tags["destination_service"]));
        Assert.All(durations.GetMeasurementSnapshot(), m =>
        {
            Assert.Equal(25, m.Tags.Count);
            Assert.Equal("reviews.default.svc.cluster.local", m.Tags["destination_service"]);
        });
    }

    [Fact]
    public void ATagValueTheWorkloadCannotCompile_FailsTheVersion()
    {
        var entry = new MeshKit.Protocol.V1.MetricPolicy { Metric = "REQUEST_COUNT" };
        entry.ServerUpsertedTags.Add(new MeshKit.Protocol.V1.TagValue { Name = "request_verb", Expression = "request.verb" });

        var error = Assert.Throws<MeshConfigException>(() => ReportPolicy.From(new MeshKit.Protocol.V1.TelemetryPolicy { Metrics = { entry } }));

        Assert.Contains("label 'request_verb' = 'request.verb': column 1: unknown attribute 'request.verb'", error.Message, StringComparison.Ordinal);
    }
}
