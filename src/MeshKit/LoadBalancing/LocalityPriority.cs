using MeshKit.Protocol.V1;
using MeshKit.Snapshot;

namespace MeshKit.LoadBalancing;

/// <summary>Locality patterns as Istio writes them: <c>region</c>, <c>region/zone</c>, <c>region/zone/subzone</c>, <c>*</c> anywhere.</summary>
internal static class LocalityPattern
{
    public static bool Matches(string pattern, Locality locality)
    {
        var parts = pattern.Split('/');
        string[] actual = [locality.Region, locality.Zone, locality.Subzone];
        for (var i = 0; i < parts.Length && i < 3; i++)
        {
            if (parts[i] == "*")
            {
                return true;
            }

            if (parts[i] != actual[i])
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>The priority of an endpoint seen from the calling workload: 0 is the most preferred.</summary>
internal static class LocalityPriority
{
    private static readonly Dictionary<string, Func<Locality, string>> Topology = new(StringComparer.Ordinal)
    {
        ["topology.kubernetes.io/region"] = l => l.Region,
        ["topology.kubernetes.io/zone"] = l => l.Zone,
        ["topology.istio.io/subzone"] = l => l.Subzone,
    };

    public static int Of(EndpointView endpoint, SourceWorkload source, LocalitySettings settings)
    {
        if (settings.FailoverPriority.Count > 0)
        {
            // Endpoints matching all labels first, then those matching all but the last, and so on.
            var matched = 0;
            foreach (var label in settings.FailoverPriority)
            {
                var mine = Topology.TryGetValue(label, out var get) ? get(source.Locality) : source.Labels.GetValueOrDefault(label);
                var theirs = Topology.TryGetValue(label, out get) ? get(endpoint.Locality) : endpoint.Labels.GetValueOrDefault(label);
                if (string.IsNullOrEmpty(mine) || mine != theirs)
                {
                    break;
                }

                matched++;
            }

            return settings.FailoverPriority.Count - matched;
        }

        var here = source.Locality;
        var there = endpoint.Locality;
        if (there.Region == here.Region)
        {
            return there.Zone != here.Zone ? 2 : there.Subzone != here.Subzone ? 1 : 0;
        }

        foreach (var failover in settings.Failover)
        {
            if (failover.From == here.Region && failover.To == there.Region)
            {
                return 3;
            }
        }

        return settings.Failover.Any(f => f.From == here.Region) ? 5 : 4;
    }
}
