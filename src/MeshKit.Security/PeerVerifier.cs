using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography.X509Certificates;

namespace MeshKit.Security;

/// <summary>
/// Verifies a peer's certificate the way the mesh requires, whatever the platform's own trust store says: the chain
/// ends in a root of the mesh trust bundle, the leaf is not a CA, carries exactly one URI SAN that is a well-formed
/// SPIFFE ID of the bundle's trust domain, is valid at the given time and is meant for the peer's role.
/// </summary>
internal static class PeerVerifier
{
    /// <summary>Verifies <paramref name="leaf"/>; on success returns the peer's identity.</summary>
    /// <param name="leaf">The peer's certificate.</param>
    /// <param name="intermediates">Certificates the peer sent with it (may be empty).</param>
    /// <param name="bundle">The roots to trust.</param>
    /// <param name="now">The time to verify at.</param>
    /// <param name="usage">The EKU the peer must have: <see cref="CertificateProfile.ClientAuth"/> or <see cref="CertificateProfile.ServerAuth"/>.</param>
    /// <param name="id">The peer's identity.</param>
    /// <param name="error">Why the certificate was refused.</param>
    public static bool TryVerify(
        X509Certificate2 leaf,
        IEnumerable<X509Certificate2> intermediates,
        TrustBundle bundle,
        DateTimeOffset now,
        string usage,
        [NotNullWhen(true)] out SpiffeId? id,
        [NotNullWhen(false)] out string? error)
    {
        id = null;
        if (now < leaf.NotBefore.ToUniversalTime() || now > leaf.NotAfter.ToUniversalTime())
        {
            error = $"the certificate is valid from {leaf.NotBefore.ToUniversalTime():u} to {leaf.NotAfter.ToUniversalTime():u}, not at {now.UtcDateTime:u}";
            return false;
        }

        if (leaf.Extensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
        {
            error = "a CA certificate cannot be a workload identity";
            return false;
        }

        var uris = CertificateProfile.UriNames(leaf);
        if (uris.Count != 1)
        {
            error = $"a workload certificate carries exactly one URI SAN, this one has {uris.Count}";
            return false;
        }

        if (!SpiffeId.TryParse(uris[0], out var parsed))
        {
            error = $"'{uris[0]}' is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
            return false;
        }

        if (!string.Equals(parsed.Value.TrustDomain, bundle.TrustDomain, StringComparison.Ordinal))
        {
            error = $"trust domain '{parsed.Value.TrustDomain}' is not this mesh's ('{bundle.TrustDomain}')";
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(bundle.Roots);
        foreach (var certificate in intermediates)
        {
            chain.ChainPolicy.ExtraStore.Add(certificate);
        }

        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTimeIgnored = false;
        chain.ChainPolicy.VerificationTime = now.UtcDateTime;
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid(usage));
        if (!chain.Build(leaf))
        {
            var reasons = chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct();
            error = $"the certificate does not chain to the mesh trust bundle: {string.Join("; ", reasons)}";
            return false;
        }

        id = parsed;
        error = null;
        return true;
    }
}
