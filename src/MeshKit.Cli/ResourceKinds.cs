namespace MeshKit.Cli;

/// <summary>
/// The kinds <c>meshctl get</c> names as <c>kubectl</c> and <c>istioctl</c> users type them: the kind (any case), its
/// plural, Istio's short name, or any of those with the API group (<c>virtualservices.networking.istio.io</c>).
/// </summary>
internal static class ResourceKinds
{
    private static readonly (string Kind, string Plural, string? Short)[] Known =
    [
        ("VirtualService", "virtualservices", "vs"),
        ("DestinationRule", "destinationrules", "dr"),
        ("ServiceEntry", "serviceentries", "se"),
        ("Sidecar", "sidecars", null),
        ("WorkloadEntry", "workloadentries", "we"),
        ("PeerAuthentication", "peerauthentications", "pa"),
        ("RequestAuthentication", "requestauthentications", "ra"),
        ("AuthorizationPolicy", "authorizationpolicies", "ap"),
        ("Telemetry", "telemetries", null),
        ("MeshConfig", "meshconfigs", null),
        ("HTTPRoute", "httproutes", null),
        ("GRPCRoute", "grpcroutes", null),
        ("Service", "services", "svc"),
        ("EndpointSlice", "endpointslices", null),
        ("Endpoints", "endpoints", "ep"),
    ];

    /// <summary>Gets the kinds MeshKit reads, for a message.</summary>
    public static string List => string.Join(", ", Known.Select(k => k.Short is null ? k.Kind : $"{k.Kind} ({k.Short})"));

    /// <summary>
    /// Resolves what a user typed to a kind; true with a null kind for <c>all</c>; false when no kind MeshKit reads
    /// goes by that name.
    /// </summary>
    public static bool TryResolve(string typed, out string? kind)
    {
        var name = typed.Split('.')[0];
        kind = null;
        if (name.Equals("all", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        foreach (var (known, plural, shortName) in Known)
        {
            if (name.Equals(known, StringComparison.OrdinalIgnoreCase) || name.Equals(plural, StringComparison.OrdinalIgnoreCase)
                || (shortName is not null && name.Equals(shortName, StringComparison.OrdinalIgnoreCase)))
            {
                kind = known;
                return true;
            }
        }

        return false;
    }
}
