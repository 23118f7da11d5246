namespace MeshKit.Config.Compilation;

/// <summary>
/// What an endpoint's origin (<c>Endpoint.origin</c>) says it is: a workload that registered itself (the origin is its
/// instance id), a WorkloadEntry (<c>WorkloadEntry ns/name</c>: a workload declared, not registered), or an address a
/// resource lists (<c>ServiceEntry ns/name</c>, <c>EndpointSlice ns/name</c>, <c>Endpoints ns/name</c>).
/// </summary>
internal static class EndpointOrigins
{
    private static readonly string[] DeclaredAddresses = ["ServiceEntry ", "EndpointSlice ", "Endpoints "];

    /// <summary>Whether the endpoint is an address a resource lists: no workload stands behind it that the mesh knows.</summary>
    public static bool IsDeclaredAddress(string origin) => DeclaredAddresses.Any(prefix => origin.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Whether the endpoint is a workload that registered itself with the control plane.</summary>
    public static bool IsRegistered(string origin) =>
        origin.Length > 0 && !IsDeclaredAddress(origin) && !origin.StartsWith("WorkloadEntry ", StringComparison.Ordinal);
}
