using System.Buffers.Binary;
using System.Diagnostics;
using MeshKit.Snapshot;
using OpenTelemetry.Trace;

namespace MeshKit.OpenTelemetry;

/// <summary>
/// The Telemetry API's <c>tracing.randomSamplingPercentage</c>, as Istio applies it: a span with a parent follows the
/// parent's decision; a trace this workload starts is sampled at the percentage its policy gives for the side that
/// starts it (a server span: mode SERVER; any other: CLIENT), by its trace id so that every service deciding on the
/// same trace agrees. Without a percentage for that side, the trace is sampled (OpenTelemetry's default).
/// </summary>
internal sealed class MeshSampler(MeshSnapshotProvider provider) : Sampler
{
    private static readonly SamplingResult Sampled = new(SamplingDecision.RecordAndSample);
    private static readonly SamplingResult Dropped = new(SamplingDecision.Drop);

    public override SamplingResult ShouldSample(in SamplingParameters samplingParameters)
    {
        var parent = samplingParameters.ParentContext;
        if (parent.TraceId != default)
        {
            return (parent.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? Sampled : Dropped;
        }

        var snapshot = provider.Current;
        var share = samplingParameters.Kind == ActivityKind.Server ? snapshot.ServerSampling : snapshot.ClientSampling;
        return share is not { } ratio || Within(samplingParameters.TraceId, ratio) ? Sampled : Dropped;
    }

    // The trace id's first eight bytes as a number below a bound that is the ratio of the whole range, as
    // OpenTelemetry's TraceIdRatioBasedSampler does: the same trace gets the same decision everywhere.
    private static bool Within(ActivityTraceId traceId, double ratio)
    {
        if (ratio >= 1)
        {
            return true;
        }

        if (ratio <= 0)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[16];
        traceId.CopyTo(bytes);
        var value = BinaryPrimitives.ReadInt64BigEndian(bytes) & long.MaxValue;
        return value < (long)(ratio * long.MaxValue);
    }
}
