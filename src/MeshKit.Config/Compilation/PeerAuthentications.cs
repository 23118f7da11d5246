using MeshKit.Config.Model;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>
/// Istio's PeerAuthentication precedence: a policy with a selector that selects the workload, else the namespace's
/// policy without selector, else the root namespace's; an UNSET mode inherits from the next level, and the default is
/// PERMISSIVE. <c>portLevelMtls</c> comes from the selecting policy only. Where one level has several policies,
/// Istio takes the oldest; MeshKit, which sees no creation times, takes the first by name (for the namespace-wide
/// level, compiling warns about the ones it ignores).
/// </summary>
internal static class PeerAuthentications
{
    public static PeerAuthenticationPolicy Resolve(IReadOnlyList<PeerAuthentication> policies, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels)
    {
        var mesh = policies.FirstOrDefault(p => p.Selector is null && p.Namespace == rootNamespace);
        var space = ns == rootNamespace ? null : policies.FirstOrDefault(p => p.Selector is null && p.Namespace == ns);
        var workload = Selecting(policies, ns, labels);
        var result = new PeerAuthenticationPolicy { Mode = MtlsMode.Permissive };
        foreach (var level in new[] { mesh, space, workload })
        {
            if (level is null)
            {
                continue;
            }

            result.Sources.Add(level.DisplayName);
            if (Parse(level.MtlsMode) is { } mode)
            {
                result.Mode = mode;
            }
        }

        if (workload is not null)
        {
            foreach (var (port, text) in workload.PortLevelMtls)
            {
                result.PortModes[port] = Parse(text) ?? result.Mode;
            }
        }

        return result;
    }

    /// <summary>The workload-level policy that applies to a workload, if any.</summary>
    public static PeerAuthentication? Selecting(IReadOnlyList<PeerAuthentication> policies, string ns, IReadOnlyDictionary<string, string> labels) =>
        policies.FirstOrDefault(p => p.Selector is { } s && p.Namespace == ns && s.Matches(labels));

    /// <summary>The mode on one port.</summary>
    public static MtlsMode ModeOn(PeerAuthenticationPolicy policy, uint port) =>
        policy.PortModes.TryGetValue(port, out var mode) ? mode : policy.Mode;

    private static MtlsMode? Parse(string? mode) => mode switch
    {
        "STRICT" => MtlsMode.Strict,
        "PERMISSIVE" => MtlsMode.Permissive,
        "DISABLE" => MtlsMode.Disable,
        _ => null, // UNSET or absent: inherit
    };
}
