using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>Locality strings (<c>region/zone/subzone</c>, as Istio writes them).</summary>
public static class Localities
{
    /// <summary>Parses <c>region/zone/subzone</c>; missing parts are empty.</summary>
    /// <param name="value">The locality string, or null.</param>
    /// <returns>The locality.</returns>
    public static Locality Parse(string? value)
    {
        var parts = (value ?? string.Empty).Split('/');
        return new Locality
        {
            Region = parts.Length > 0 ? parts[0] : string.Empty,
            Zone = parts.Length > 1 ? parts[1] : string.Empty,
            Subzone = parts.Length > 2 ? parts[2] : string.Empty,
        };
    }
}
