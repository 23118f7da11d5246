using System.Diagnostics;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.OpenTelemetry;
using MeshKit.Snapshot;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;

namespace MeshKit.Tests.Telemetry;

/// <summary>The Telemetry API's sampling percentage, applied by MeshKit's sampler as Istio applies it.</summary>
public sealed class MeshSamplerTests : IDisposable
{
    private static readonly Dictionary<string, string> Labels = new() { ["app"] = "reviews" };

    private readonly ServiceProvider _services;

    public MeshSamplerTests()
    {
        var services = new ServiceCollection();
        services.AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build());
        services.AddLogging();
        services.AddMetrics();
        services.AddMesh(o =>
        {
            o.ServiceName = "reviews";
            o.ControlPlaneAddress = new Uri("http://127.0.0.1:15010"); // nothing connects: snapshots are published by hand
        });
        _services = services.BuildServiceProvider();
    }

    public void Dispose() => _services.Dispose();

    private Sampler Publish(string tracing)
    {
        var yaml = $$"""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              tracing: {{tracing}}
            """;
        var view = MeshCompiler.Compile(new ConfigSet(ConfigParser.Parse(yaml, "t.yaml").Resources), []).ViewFor("default", Labels);
        var provider = _services.GetRequiredService<MeshSnapshotProvider>();
        provider.PublishFromFile(SnapshotBuilder.Build(view.Resources, new SourceWorkload("default", Labels), "1", ready: true));
        return new MeshSampler(provider);
    }

    private static double ShareSampled(Sampler sampler, ActivityKind kind, ActivityContext parent = default)
    {
        var sampled = 0;
        for (var i = 0; i < 4000; i++)
        {
            var parameters = new SamplingParameters(parent, parent.TraceId != default ? parent.TraceId : ActivityTraceId.CreateRandom(), "span", kind);
            sampled += sampler.ShouldSample(parameters).Decision == SamplingDecision.RecordAndSample ? 1 : 0;
        }

        return sampled / 4000.0;
    }

    [Fact]
    public void NewTraces_AreSampledAtTheSidesPercentage_SpansWithAParentFollowIt()
    {
        var sampler = Publish("[{ match: { mode: SERVER }, randomSamplingPercentage: 0 }, { match: { mode: CLIENT }, randomSamplingPercentage: 25 }]");

        Assert.Equal(0, ShareSampled(sampler, ActivityKind.Server));
        Assert.InRange(ShareSampled(sampler, ActivityKind.Client), 0.21, 0.29);
        Assert.InRange(ShareSampled(sampler, ActivityKind.Internal), 0.21, 0.29);

        // A decision made before (a sampled or unsampled parent, local or from the caller's traceparent) is respected.
        var sampledParent = new ActivityContext(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded, isRemote: true);
        var droppedParent = new ActivityContext(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.None, isRemote: true);
        Assert.Equal(1, ShareSampled(sampler, ActivityKind.Server, sampledParent));
        Assert.Equal(0, ShareSampled(sampler, ActivityKind.Client, droppedParent));
    }

    [Fact]
    public void WithoutAPercentage_EveryTraceIsSampled_AndOneTraceGetsOneDecision()
    {
        Assert.Equal(1, ShareSampled(Publish("[{ customTags: { team: { literal: { value: a } } } }]"), ActivityKind.Server));

        var sampler = Publish("[{ randomSamplingPercentage: 50 }]");
        var trace = ActivityTraceId.CreateRandom();
        var first = sampler.ShouldSample(new SamplingParameters(default, trace, "a", ActivityKind.Server)).Decision;
        Assert.All(Enumerable.Range(0, 20), _ => Assert.Equal(first, sampler.ShouldSample(new SamplingParameters(default, trace, "b", ActivityKind.Client)).Decision));
    }

    [Fact]
    public void SetMeshSampler_WithoutTheMesh_SaysWhatIsMissing()
    {
        var error = Assert.Throws<InvalidOperationException>(() => global::OpenTelemetry.Sdk.CreateTracerProviderBuilder().SetMeshSampler().Build());
        Assert.Contains("AddMesh()", error.Message, StringComparison.Ordinal);
    }
}
