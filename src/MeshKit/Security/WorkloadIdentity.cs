using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace MeshKit.Security;

/// <summary>
/// This workload's mesh certificate and the roots it trusts, replaced as one immutable value at each renewal, so
/// every TLS handshake (Kestrel's, the mesh handler's, the discovery stream's) reads one consistent pair without a lock.
/// </summary>
internal sealed class WorkloadIdentity
{
    private IssuedCertificate? _current;
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private readonly Lazy<bool> _enabled;

    public WorkloadIdentity(Microsoft.Extensions.Options.IOptions<MeshOptions> options, TimeProvider time)
    {
        // Read when first needed, not at construction: options are validated when they are first read.
        _enabled = new Lazy<bool>(() => options.Value.IsSecure);
        Time = time;
    }

    /// <summary>Gets whether the workload uses mesh certificates at all (secure control plane).</summary>
    public bool Enabled => _enabled.Value;

    /// <summary>Gets the clock certificates are checked against.</summary>
    public TimeProvider Time { get; }

    /// <summary>Gets the current certificate; null before the first one is issued.</summary>
    public IssuedCertificate? Current => Volatile.Read(ref _current);

    /// <summary>Completes when the first certificate is installed.</summary>
    public Task FirstIssued => _first.Task;

    /// <summary>Installs a newly issued certificate.</summary>
    public void Install(IssuedCertificate certificate)
    {
        Volatile.Write(ref _current, certificate);
        _first.TrySetResult();
    }

    /// <summary>Replaces the trust bundle (roots pushed by the control plane), keeping the certificate.</summary>
    public void UpdateTrustRoots(IEnumerable<byte[]> roots)
    {
        var list = roots.ToList();
        while (Volatile.Read(ref _current) is { } current)
        {
            var bundle = TrustBundle.FromDer(current.Bundle.TrustDomain, list);
            var same = bundle.Roots.Count == current.Bundle.Roots.Count
                && bundle.Roots.All(r => current.Bundle.Roots.Any(c => c.Thumbprint == r.Thumbprint));

            // A renewal installed meanwhile wins; retry on top of it.
            if (same || Interlocked.CompareExchange(ref _current, current.WithBundle(bundle), current) == current)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Verifies a peer's certificate against the current trust bundle and SPIFFE rules. Fails closed: no trust bundle
    /// yet means no peer verifies.
    /// </summary>
    public bool TryVerify(X509Certificate? certificate, X509Chain? chain, string usage, out SpiffeId? id, out string? error)
    {
        id = null;
        if (Current is not { } current)
        {
            error = "this workload has no mesh certificate and trust bundle yet";
            return false;
        }

        if (certificate is null)
        {
            error = "the peer sent no certificate";
            return false;
        }

        var leaf = CertificateProfile.AsCertificate2(certificate);
        // What the peer sent, plus this workload's own intermediates: peers issued by the same CA share them, and a
        // client selecting its certificate per connection sends the leaf alone.
        var intermediates = (chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>() ?? []).Concat(current.Intermediates);
        return PeerVerifier.TryVerify(leaf, intermediates, current.Bundle, Time.GetUtcNow(), usage, out id, out error);
    }
}

/// <summary>One issued certificate with its private key, chain and the trust bundle that came with it.</summary>
internal sealed class IssuedCertificate
{
    public IssuedCertificate(X509Certificate2 certificate, X509Certificate2Collection intermediates, TrustBundle bundle, SpiffeId id)
    {
        Certificate = certificate;
        Intermediates = intermediates;
        Bundle = bundle;
        Id = id;

        // Built once per certificate: the handshakes reuse it.
        Context = SslStreamCertificateContext.Create(certificate, intermediates, offline: true);
    }

    public X509Certificate2 Certificate { get; }

    public X509Certificate2Collection Intermediates { get; }

    public TrustBundle Bundle { get; }

    public SpiffeId Id { get; }

    /// <summary>Gets <see cref="Id"/> as its URI text, made once per certificate (metrics label every request with it).</summary>
    public string IdText => _idText ??= Id.ToString();

    private string? _idText;

    /// <summary>The same certificate trusting another bundle.</summary>
    public IssuedCertificate WithBundle(TrustBundle bundle) => new(Certificate, Intermediates, bundle, Id);

    /// <summary>Gets the certificate with its chain, for TLS in either role.</summary>
    public SslStreamCertificateContext Context { get; }

    public DateTimeOffset NotBefore => Certificate.NotBefore.ToUniversalTime();

    public DateTimeOffset NotAfter => Certificate.NotAfter.ToUniversalTime();
}
