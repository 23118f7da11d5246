using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Security;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Ca;

/// <summary>
/// The mesh certificate authority (Istio's Citadel). On first start it generates a root (ECDSA P-256) and persists it
/// with its private key readable by the owner only; or it signs with a user-supplied CA (Istio's "plugged-in" files:
/// <c>ca-cert.pem</c>, <c>ca-key.pem</c>, <c>cert-chain.pem</c>, <c>root-cert.pem</c>). Every certificate in
/// <c>root-cert.pem</c> is trusted, so a new root can be added before the old one is retired. It also holds the key
/// that signs join tokens and the control plane's own serving certificate, renewed at half its lifetime.
/// </summary>
internal sealed partial class CertificateAuthority : IDisposable
{
    private const string RootCertFile = "root-cert.pem";
    private const string RootKeyFile = "root-key.pem";
    private const string CaCertFile = "ca-cert.pem";
    private const string CaKeyFile = "ca-key.pem";
    private const string CertChainFile = "cert-chain.pem";
    private const string TokenKeyFile = "token-key.pem";
    private static readonly TimeSpan RootLifetime = TimeSpan.FromDays(3650);
    private static readonly TimeSpan ServingLifetime = TimeSpan.FromHours(24);

    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<CertificateAuthority> _logger;
    private readonly X509Certificate2 _signer;
    private readonly X509Certificate2[] _intermediates;
    private readonly ECDsa _tokenKey;
    private readonly ITimer _servingRenewal;
    private volatile ServingCertificate _serving;

    /// <summary>With the etcd store: the CA's files are agreed on through etcd first, so every replica loads the same CA.</summary>
    public CertificateAuthority(IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<CertificateAuthority> logger, Store.EtcdCluster etcd)
        : this(Shared(options, time, logger, etcd), time, logger)
    {
    }

    public CertificateAuthority(IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<CertificateAuthority> logger)
    {
        _options = options.Value;
        _time = time;
        _logger = logger;
        TrustDomain = _options.TrustDomain;
        if (!SpiffeId.IsTrustDomain(TrustDomain))
        {
            throw new InvalidOperationException($"ControlPlane:TrustDomain '{TrustDomain}' is not a valid trust domain (lower-case letters, digits, '.', '-', '_')");
        }

        Directory = ResolveDirectory(_options.CaDirectory);
        System.IO.Directory.CreateDirectory(Directory);
        (_signer, _intermediates, var roots) = LoadOrCreate();
        Bundle = new TrustBundle(TrustDomain, roots);
        RootPin = CertificateProfile.Pin(roots[0]);
        _tokenKey = LoadOrCreateTokenKey();
        TokenKeyId = CertificateProfile.Pin(X509CertificateLoader.LoadCertificate(_signer.RawData))[..16];
        Identity = SpiffeId.ControlPlane(TrustDomain);
        _serving = IssueServing();
        _servingRenewal = time.CreateTimer(_ => Renew(), null, ServingLifetime / 2, ServingLifetime / 2);
    }

    private static IOptions<ControlPlaneOptions> Shared(IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<CertificateAuthority> logger, Store.EtcdCluster etcd)
    {
        // Once, at start-up, before anything is served: blocking here is the simplest correct order.
        Store.EtcdCaShare.PrepareAsync(etcd, options.Value, () => new CertificateAuthority(options, time, logger), CancellationToken.None).GetAwaiter().GetResult();
        return options;
    }

    /// <summary>Gets the directory the CA files live in.</summary>
    public string Directory { get; }

    /// <summary>Gets the trust domain of every identity the CA issues.</summary>
    public string TrustDomain { get; }

    /// <summary>Gets the roots workloads trust.</summary>
    public TrustBundle Bundle { get; }

    /// <summary>Gets the pin of the first root: join tokens carry it.</summary>
    public string RootPin { get; }

    /// <summary>Gets the control plane's own identity.</summary>
    public SpiffeId Identity { get; }

    /// <summary>Gets the serving certificate for the TLS port, with its chain.</summary>
    public SslStreamCertificateContext ServingContext => _serving.Context;

    private string TokenKeyId { get; }

    /// <summary>Issues a workload certificate; returns the certificate followed by the intermediates (DER).</summary>
    public IReadOnlyList<byte[]> Issue(PublicKey key, SpiffeId id, TimeSpan? requested)
    {
        var ttl = requested is { } r && r > TimeSpan.Zero ? (r < _options.MaxWorkloadCertificateTtl ? r : _options.MaxWorkloadCertificateTtl) : _options.WorkloadCertificateTtl;
        var (certificate, notAfter) = CertificateProfile.IssueDer(key, id, _signer, _time.GetUtcNow(), ttl);
        Log.Issued(_logger, id.ToString(), notAfter.UtcDateTime);
        return [certificate, .. _intermediates.Select(c => c.RawData)];
    }

    /// <summary>Creates a join token for a namespace and service account.</summary>
    public string CreateJoinToken(string ns, string serviceAccount, TimeSpan lifetime)
    {
        var id = new SpiffeId(TrustDomain, ns, serviceAccount);
        if (!SpiffeId.TryParse(id.ToString(), out _))
        {
            throw new ArgumentException($"'{ns}' / '{serviceAccount}' do not form a valid identity");
        }

        Log.TokenCreated(_logger, id.ToString(), lifetime);
        return JoinTokens.Create(_tokenKey, TokenKeyId, id, RootPin, _time.GetUtcNow(), lifetime);
    }

    /// <summary>Validates a join token; returns the identity it grants.</summary>
    public Task<(SpiffeId? Id, string? Error)> ValidateJoinTokenAsync(string token) =>
        JoinTokens.ValidateAsync(token, [_tokenKey], TrustDomain, _time.GetUtcNow());

    /// <summary>Verifies a workload's client certificate; returns its identity.</summary>
    public bool TryVerifyWorkload(X509Certificate2 certificate, IEnumerable<X509Certificate2> intermediates, out SpiffeId? id, out string? error)
    {
        // The CA's own intermediates complete chains the peer did not send in full.
        return PeerVerifier.TryVerify(certificate, intermediates.Concat(_intermediates), Bundle, _time.GetUtcNow(), CertificateProfile.ClientAuth, out id, out error);
    }

    public void Dispose()
    {
        _servingRenewal.Dispose();
        _tokenKey.Dispose();
        _signer.Dispose();
    }

    private void Renew()
    {
        try
        {
            _serving = IssueServing();
        }
        catch (CryptographicException ex)
        {
            Log.ServingRenewalFailed(_logger, ex.Message);
        }
    }

    private ServingCertificate IssueServing()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var addresses = new List<IPAddress> { IPAddress.Loopback, IPAddress.IPv6Loopback };
        var names = new List<string> { "localhost" };
        foreach (var name in _options.ServingNames)
        {
            if (IPAddress.TryParse(name, out var ip))
            {
                addresses.Add(ip);
            }
            else
            {
                names.Add(name);
            }
        }

        using var issued = CertificateProfile.Issue(request.PublicKey, Identity, _signer, _time.GetUtcNow(), ServingLifetime, names, addresses);
        var exported = CertificateProfile.WithKey(issued, key);
        return new ServingCertificate(exported, SslStreamCertificateContext.Create(exported, new X509Certificate2Collection(_intermediates), offline: true));
    }

    private (X509Certificate2 Signer, X509Certificate2[] Intermediates, X509Certificate2Collection Roots) LoadOrCreate()
    {
        var caCert = Path.Combine(Directory, CaCertFile);
        var caKey = Path.Combine(Directory, CaKeyFile);
        var rootCert = Path.Combine(Directory, RootCertFile);
        var rootKey = Path.Combine(Directory, RootKeyFile);
        var roots = new X509Certificate2Collection();
        if (File.Exists(caCert) || File.Exists(caKey))
        {
            // A user-supplied (typically intermediate) CA: all four files are needed.
            foreach (var required in new[] { caCert, caKey, rootCert })
            {
                if (!File.Exists(required))
                {
                    throw new InvalidOperationException($"plugged-in CA: '{required}' is missing (ca-cert.pem, ca-key.pem and root-cert.pem are needed; cert-chain.pem optional)");
                }
            }

            CheckKeyPermissions(caKey);
            roots.ImportFromPemFile(rootCert);
            var signer = X509Certificate2.CreateFromPemFile(caCert, caKey);
            var chain = new X509Certificate2Collection();
            var chainFile = Path.Combine(Directory, CertChainFile);
            if (File.Exists(chainFile))
            {
                chain.ImportFromPemFile(chainFile);
            }

            // cert-chain.pem holds the CA certificate and its intermediates; workloads are sent the intermediates.
            var intermediates = chain.Where(c => c.Thumbprint != signer.Thumbprint && roots.All(r => r.Thumbprint != c.Thumbprint)).ToList();
            intermediates.Insert(0, X509CertificateLoader.LoadCertificate(signer.RawData));
            Log.Loaded(_logger, "plugged-in CA", Directory, signer.Subject);
            return (signer, [.. intermediates], roots);
        }

        if (File.Exists(rootCert) && File.Exists(rootKey))
        {
            CheckKeyPermissions(rootKey);
            roots.ImportFromPemFile(rootCert);
            var keyPem = File.ReadAllText(rootKey);
            foreach (var root in roots)
            {
                try
                {
                    var signer = X509Certificate2.CreateFromPem(root.ExportCertificatePem(), keyPem);
                    Log.Loaded(_logger, "root CA", Directory, signer.Subject);

                    // The signing root first: join tokens pin it.
                    var ordered = new X509Certificate2Collection { root };
                    ordered.AddRange(roots.Where(r => r.Thumbprint != root.Thumbprint).ToArray());
                    return (signer, [], ordered);
                }
                catch (CryptographicException)
                {
                    // Not this root's key; try the next (root-cert.pem may list an old and a new root).
                }
            }

            throw new InvalidOperationException($"'{rootKey}' is the key of none of the certificates in '{rootCert}'");
        }

        if (File.Exists(rootCert) != File.Exists(rootKey))
        {
            throw new InvalidOperationException($"'{Directory}' has only one of {RootCertFile} and {RootKeyFile}; both or neither are needed");
        }

        var created = CertificateProfile.CreateRoot(TrustDomain, _time.GetUtcNow(), RootLifetime);
        WriteSecret(rootKey, created.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(rootCert, created.ExportCertificatePem() + "\n");
        Log.Created(_logger, Directory, created.Subject);
        roots.Add(X509CertificateLoader.LoadCertificate(created.RawData));
        return (created, [], roots);
    }

    private ECDsa LoadOrCreateTokenKey()
    {
        var path = Path.Combine(Directory, TokenKeyFile);
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        if (File.Exists(path))
        {
            CheckKeyPermissions(path);
            key.ImportFromPem(File.ReadAllText(path));
        }
        else
        {
            WriteSecret(path, key.ExportPkcs8PrivateKeyPem());
        }

        return key;
    }

    /// <summary>Writes a private key so that only the owner can read it, from the moment the file exists.</summary>
    private static void WriteSecret(string path, string pem)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using var stream = new FileStream(path, options);
        using var writer = new StreamWriter(stream);
        writer.Write(pem);
        writer.Write('\n');
    }

    private void CheckKeyPermissions(string path)
    {
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            Log.KeyReadableByOthers(_logger, path);
        }
    }

    internal static string ResolveDirectory(string configured) =>
        Path.GetFullPath(string.IsNullOrWhiteSpace(configured)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "meshkit", "ca")
            : configured);

    private sealed record ServingCertificate(X509Certificate2 Certificate, SslStreamCertificateContext Context);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Created a new mesh root CA in {Directory}: {Subject}", EventName = "RootCreated")]
        public static partial void Created(ILogger logger, string directory, string subject);

        [LoggerMessage(2, LogLevel.Information, "Loaded the {Kind} from {Directory}: {Subject}", EventName = "CaLoaded")]
        public static partial void Loaded(ILogger logger, string kind, string directory, string subject);

        [LoggerMessage(3, LogLevel.Warning, "{Path} is readable or writable by other users; a CA key should be readable by its owner only", EventName = "KeyReadableByOthers")]
        public static partial void KeyReadableByOthers(ILogger logger, string path);

        [LoggerMessage(4, LogLevel.Debug, "Issued a certificate for {Identity}, valid until {NotAfter:u}", EventName = "CertificateIssued")]
        public static partial void Issued(ILogger logger, string identity, DateTime notAfter);

        [LoggerMessage(5, LogLevel.Information, "Created a join token for {Identity}, valid for {Lifetime}", EventName = "JoinTokenCreated")]
        public static partial void TokenCreated(ILogger logger, string identity, TimeSpan lifetime);

        [LoggerMessage(6, LogLevel.Error, "Renewing the control plane's serving certificate failed; the current one stays: {Error}", EventName = "ServingRenewalFailed")]
        public static partial void ServingRenewalFailed(ILogger logger, string error);
    }
}
