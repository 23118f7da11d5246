using BenchmarkDotNet.Attributes;
using MeshKit.OpenTelemetry;
using MeshKit.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace MeshKit.Benchmarks;

/// <summary>
/// What recording one call's Istio standard metrics costs with the OpenTelemetry SDK aggregating them: both reporters
/// (the caller's and the server's), four instruments each, Istio's 19 labels. The same label values every call, as a
/// steady stream of calls between two workloads has. The request path only buffers its reports; the drain records them
/// (<c>RecordAndDrain*</c>: all of the work, per call, drained every call or in batches as under load).
/// </summary>
[MemoryDiagnoser]
public class MetricsBenchmarks
{
    private ServiceProvider _services = null!;
    private MeterProvider? _meters;
    private IstioMetrics _istio = null!;
    private RequestReport _source;
    private RequestReport _destination;

    /// <summary>Gets whether MeshKit's own store aggregates the reports instead of the OpenTelemetry SDK.</summary>
    protected virtual bool Store => false;

    [GlobalSetup]
    public void Setup()
    {
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        _istio = new IstioMetrics(_services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        if (Store)
        {
            _istio.EnableStats();
        }
        else
        {
            _meters = Sdk.CreateMeterProviderBuilder()
                .AddMeshInstrumentation()
                .AddReader(new BaseExportingMetricReader(new global::OpenTelemetry.Exporter.InMemoryExporter<Metric>([])))
                .Build();
        }

        (_source, _destination) = Reports();
        var sizesOff = SizesOff();
        (_sourceSizesOff, _destinationSizesOff) = (_source with { Policy = sizesOff }, _destination with { Policy = sizesOff });
    }

    /// <summary>One call's two reports (the caller's and the server's), as a steady stream of calls between two workloads has them.</summary>
    private static (RequestReport Source, RequestReport Destination) Reports()
    {
        var caller = new PeerMetadata("productpage-v1", "default", "productpage", "v1", "productpage");
        var server = new PeerMetadata("reviews-v2", "default", "reviews", "v2", "reviews");
        const string callerId = "spiffe://cluster.local/ns/default/sa/productpage";
        const string serverId = "spiffe://cluster.local/ns/default/sa/reviews";
        return (
            new RequestReport("source", caller, callerId, server, serverId, "reviews.default.svc.cluster.local", "http", 200, null, string.Empty, "unknown", 1.2, 0, 180),
            new RequestReport("destination", caller, callerId, server, serverId, "reviews.default.svc.cluster.local", "http", 200, null, string.Empty, "mutual_tls", 0.9, 0, 180));
    }

    /// <summary>
    /// The same reports under a Telemetry API policy that turns the two size histograms off on both sides (Istio's
    /// <c>REQUEST_SIZE</c> and <c>RESPONSE_SIZE</c>): what that lever saves.
    /// </summary>
    [Benchmark(OperationsPerInvoke = 16)]
    public void RecordAndDrainBatched_SizesOff()
    {
        for (var i = 0; i < 16; i++)
        {
            _istio.Record(_sourceSizesOff);
            _istio.Record(_destinationSizesOff);
        }

        _istio.Flush();
    }

    private RequestReport _sourceSizesOff;
    private RequestReport _destinationSizesOff;

    private static ReportPolicy SizesOff()
    {
        var policy = new MeshKit.Protocol.V1.TelemetryPolicy();
        foreach (var metric in new[] { "REQUEST_SIZE", "RESPONSE_SIZE" })
        {
            policy.Metrics.Add(new MeshKit.Protocol.V1.MetricPolicy { Metric = metric, ClientDisabled = true, ServerDisabled = true });
        }

        return ReportPolicy.From(policy)!;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _meters?.Dispose();
        _services.Dispose();
    }

    /// <summary>All of one call's metrics work: buffered, then drained at once (the counter updated per report).</summary>
    [Benchmark]
    public void RecordAndDrainEachCall()
    {
        _istio.Record(_source);
        _istio.Record(_destination);
        _istio.Flush();
    }

    /// <summary>All of the work per call when a drain takes 16 calls (under load): the counter is updated once per series.</summary>
    [Benchmark(OperationsPerInvoke = 16)]
    public void RecordAndDrainBatched()
    {
        for (var i = 0; i < 16; i++)
        {
            _istio.Record(_source);
            _istio.Record(_destination);
        }

        _istio.Flush();
    }
}

/// <summary>
/// The same calls' Istio metrics aggregated by MeshKit's own store (what <c>app.MapMeshMetrics()</c> serves), with no
/// metrics SDK listening: a report finds its series by the identity of its label objects, not by hashing its labels.
/// </summary>
public class IstioStatsBenchmarks : MetricsBenchmarks
{
    /// <inheritdoc/>
    protected override bool Store => true;
}
