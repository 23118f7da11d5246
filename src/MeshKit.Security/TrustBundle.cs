using System.Security.Cryptography.X509Certificates;

namespace MeshKit.Security;

/// <summary>
/// The roots a workload trusts for its trust domain. Several roots can be trusted at once, so a root can be rotated:
/// certificates of the old and the new root verify while both are in the bundle.
/// </summary>
internal sealed class TrustBundle
{
    public TrustBundle(string trustDomain, IEnumerable<X509Certificate2> roots)
    {
        TrustDomain = trustDomain;
        Roots = [.. roots];
    }

    /// <summary>Gets the trust domain whose identities the roots vouch for.</summary>
    public string TrustDomain { get; }

    /// <summary>Gets the trusted roots.</summary>
    public X509Certificate2Collection Roots { get; }

    /// <summary>Reads every certificate of a PEM text.</summary>
    public static TrustBundle FromPem(string trustDomain, string pem)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(pem);
        return new TrustBundle(trustDomain, roots);
    }

    /// <summary>Reads DER-encoded roots.</summary>
    public static TrustBundle FromDer(string trustDomain, IEnumerable<byte[]> roots) =>
        new(trustDomain, roots.Select(r => X509CertificateLoader.LoadCertificate(r)));
}
