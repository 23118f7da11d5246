using MeshKit.Config.Model;

namespace MeshKit.Config.Compilation;

/// <summary>
/// Istio's Sidecar scoping: a workload receives only the services its Sidecar's egress hosts name. The Sidecar that
/// applies is the one of the workload's namespace that selects it, else its namespace's without a selector, else the
/// root namespace's without a selector (the mesh default); where one level has several, Istio takes the oldest and
/// MeshKit, which sees no creation times, the first by name (compiling warns about the others).
/// </summary>
internal static class Sidecars
{
    public static SidecarResource? Resolve(IReadOnlyList<SidecarResource> sidecars, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels)
    {
        if (sidecars.Count == 0)
        {
            return null;
        }

        var sidecar = sidecars.FirstOrDefault(s => s.Namespace == ns && s.Selector is { } selector && selector.Matches(labels))
            ?? sidecars.FirstOrDefault(s => s.Namespace == ns && s.Selector is null)
            ?? sidecars.FirstOrDefault(s => s.Namespace == rootNamespace && s.Selector is null);

        // A Sidecar without egress scopes nothing (it may still set the outbound traffic policy).
        return sidecar;
    }

    /// <summary>
    /// Whether one of the Sidecar's egress hosts names the service. <c>.</c> is the workload's namespace (the Sidecar's
    /// own, or any namespace the root namespace's default applies to, as in Istio); <c>~</c> is none.
    /// </summary>
    public static bool Admits(SidecarResource sidecar, string viewer, string host, string serviceNamespace, string domain) =>
        AdmittedPorts(sidecar, viewer, host, serviceNamespace, domain).Admitted;

    /// <summary>
    /// Whether the Sidecar admits the service, and on which service ports: every one (null) when an entry without a
    /// port names it, else those of the entries with a port that name it (Istio's listener per port).
    /// </summary>
    public static (bool Admitted, IReadOnlySet<uint>? Ports) AdmittedPorts(SidecarResource sidecar, string viewer, string host, string serviceNamespace, string domain)
    {
        if (sidecar.EgressHosts.Count == 0)
        {
            return (true, null);
        }

        HashSet<uint>? ports = null;
        foreach (var entry in sidecar.EgressHosts)
        {
            var ns = entry.Namespace == "." ? viewer : entry.Namespace;
            if (ns != "~" && (ns == "*" || ns == serviceNamespace) && HostNames.Specificity(HostNames.Qualify(entry.Host, serviceNamespace, domain), host) >= 0)
            {
                if (entry.Port is not { } port)
                {
                    return (true, null);
                }

                (ports ??= []).Add(port);
            }
        }

        return (ports is not null, ports);
    }
}
