using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.Infrastructure;

/// <summary>What the control plane would push a workload, built from YAML, and edits another control plane could make.</summary>
public static class PushedResources
{
    /// <summary>The resources of the view of a workload of <paramref name="ns"/> with <paramref name="labels"/>.</summary>
    public static Dictionary<string, IReadOnlyDictionary<string, Resource>> For(string yaml, IReadOnlyDictionary<string, string> labels, IEnumerable<WorkloadAnnouncement>? workloads = null, string ns = "default") =>
        MeshCompiler.Compile(new ConfigSet(ConfigParser.Parse(yaml, "pushed.yaml").Resources), workloads ?? []).ViewFor(ns, labels).Resources
            .ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>
    /// Sets the caller's access-log filter to <paramref name="filter"/> as pushed, past the control plane's own checks:
    /// what a workload must compile again and refuse when it cannot.
    /// </summary>
    public static void SetClientAccessLogFilter(Dictionary<string, IReadOnlyDictionary<string, Resource>> resources, string filter)
    {
        var inbound = resources[ResourceTypes.Inbound][ResourceTypes.InboundResourceName];
        var policy = inbound.Resource_.Unpack<InboundPolicy>();
        policy.Telemetry ??= new TelemetryPolicy();
        policy.Telemetry.ClientAccessLogFilter = filter;
        var changed = new Resource { Name = inbound.Name, Version = "edited", Resource_ = Google.Protobuf.WellKnownTypes.Any.Pack(policy) };
        resources[ResourceTypes.Inbound] = new Dictionary<string, Resource> { [ResourceTypes.InboundResourceName] = changed };
    }
}
