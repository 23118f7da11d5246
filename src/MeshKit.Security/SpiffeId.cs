using System.Diagnostics.CodeAnalysis;

namespace MeshKit.Security;

/// <summary>
/// A workload identity in the form Istio uses: <c>spiffe://&lt;trust-domain&gt;/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>.
/// </summary>
internal readonly record struct SpiffeId(string TrustDomain, string Namespace, string ServiceAccount)
{
    private const string Scheme = "spiffe://";

    /// <summary>The identity the control plane's serving certificate carries in <paramref name="trustDomain"/>.</summary>
    public static SpiffeId ControlPlane(string trustDomain) => new(trustDomain, "meshkit-system", "meshkit-controlplane");

    /// <summary>Gets the identity in Istio's principal form, <c>&lt;trust-domain&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>.</summary>
    public string Principal => $"{TrustDomain}/ns/{Namespace}/sa/{ServiceAccount}";

    /// <summary>Gets the identity as a URI string.</summary>
    public override string ToString() => $"{Scheme}{TrustDomain}/ns/{Namespace}/sa/{ServiceAccount}";

    /// <summary>Gets the identity as a URI.</summary>
    public Uri ToUri() => new(ToString());

    /// <summary>
    /// Reads an identity. Only the mesh's own shape is accepted: lower-case trust domain, exactly the
    /// <c>ns/&lt;ns&gt;/sa/&lt;sa&gt;</c> path, no query, fragment, user info, port, percent-encoding or empty segment.
    /// </summary>
    public static bool TryParse(string? value, [NotNullWhen(true)] out SpiffeId? id)
    {
        id = null;
        if (value is null || value.Length > 2048 || !value.StartsWith(Scheme, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = value.AsSpan(Scheme.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0)
        {
            return false;
        }

        var trustDomain = rest[..slash].ToString();
        var parts = rest[(slash + 1)..].ToString().Split('/');
        if (!IsTrustDomain(trustDomain) || parts is not ["ns", var ns, "sa", var sa] || !IsSegment(ns) || !IsSegment(sa))
        {
            return false;
        }

        id = new SpiffeId(trustDomain, ns, sa);
        return true;
    }

    /// <summary>Whether <paramref name="value"/> is a valid trust domain name (SPIFFE: lower-case letters, digits, '.', '-', '_').</summary>
    public static bool IsTrustDomain(string value) =>
        value.Length is > 0 and <= 255 && value.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_');

    private static bool IsSegment(string value) =>
        value.Length is > 0 and <= 253 && value is not ("." or "..") &&
        value.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '-' or '_');
}
