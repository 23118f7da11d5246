using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Security;

namespace MeshKit.Tests.Security;

/// <summary>What a peer certificate must be to be accepted, each rule on its own.</summary>
public sealed class PeerVerifierTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly X509Certificate2 _root = CertificateProfile.CreateRoot("cluster.local", Now.AddDays(-1), TimeSpan.FromDays(365));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private TrustBundle Bundle => new("cluster.local", [_root]);

    public void Dispose()
    {
        _root.Dispose();
        _key.Dispose();
    }

    [Fact]
    public void AWorkloadCertificateOfTheMesh_Verifies_AsItsIdentity()
    {
        using var leaf = Issue(new SpiffeId("cluster.local", "default", "reviews"));

        Assert.True(Verify(leaf, out var id, out var error), error);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", id.ToString());
        Assert.Equal("cluster.local/ns/default/sa/reviews", id!.Value.Principal);
    }

    [Fact]
    public void AnotherTrustDomain_IsRefused()
    {
        using var leaf = Issue(new SpiffeId("other.example", "default", "reviews"));

        Assert.False(Verify(leaf, out _, out var error));
        Assert.Contains("trust domain 'other.example'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void AnotherRoot_IsRefused()
    {
        using var otherRoot = CertificateProfile.CreateRoot("cluster.local", Now.AddDays(-1), TimeSpan.FromDays(365));
        using var leaf = CertificateProfile.Issue(PublicKey(), new SpiffeId("cluster.local", "default", "reviews"), otherRoot, Now, TimeSpan.FromHours(1));

        Assert.False(Verify(leaf, out _, out var error));
        Assert.Contains("does not chain", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TwoUriSans_AreRefused()
    {
        using var leaf = Custom(b =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/reviews"));
            san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/admin"));
            b.CertificateExtensions.Add(san.Build(true));
        });

        Assert.False(Verify(leaf, out _, out var error));
        Assert.Contains("exactly one URI SAN", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ACaCertificate_IsRefused()
    {
        using var leaf = Custom(b =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/reviews"));
            b.CertificateExtensions.Add(san.Build(true));
            b.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        });

        Assert.False(Verify(leaf, out _, out var error));
        Assert.Contains("CA certificate", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/default/sa/reviews/extra")]
    [InlineData("spiffe://cluster.local/ns/default")]
    [InlineData("spiffe://cluster.local/ns//sa/reviews")]
    [InlineData("spiffe://cluster.local/ns/%2e%2e/sa/reviews")]
    [InlineData("https://cluster.local/ns/default/sa/reviews")]
    public void AMalformedSpiffeId_IsRefused(string uri)
    {
        using var leaf = Custom(b =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri(uri));
            b.CertificateExtensions.Add(san.Build(true));
        });

        Assert.False(Verify(leaf, out _, out var error));
        Assert.Contains("not a SPIFFE ID", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ExpiredAndNotYetValid_AreRefused()
    {
        using var expired = CertificateProfile.Issue(PublicKey(), new SpiffeId("cluster.local", "default", "reviews"), _root, Now.AddHours(-3), TimeSpan.FromHours(1));
        using var future = CertificateProfile.Issue(PublicKey(), new SpiffeId("cluster.local", "default", "reviews"), _root, Now.AddHours(3), TimeSpan.FromHours(1));

        Assert.False(Verify(expired, out _, out var expiredError));
        Assert.False(Verify(future, out _, out var futureError));
        Assert.Contains("valid from", expiredError, StringComparison.Ordinal);
        Assert.Contains("valid from", futureError, StringComparison.Ordinal);
    }

    [Fact]
    public void ACertificateWithoutTheUsage_IsRefused()
    {
        using var leaf = Custom(b =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/reviews"));
            b.CertificateExtensions.Add(san.Build(true));
            b.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.3")], false)); // code signing
        });

        Assert.False(Verify(leaf, out _, out _));
    }

    [Fact]
    public void ASigningRequest_GivesOnlyItsKey_AndWeakKeysAreRefused()
    {
        var csr = CertificateProfile.CreateSigningRequest(_key, new SpiffeId("cluster.local", "kube-system", "admin"));
        Assert.Equal(_key.ExportSubjectPublicKeyInfo(), CertificateProfile.ReadSigningRequest(csr).ExportSubjectPublicKeyInfo());

        using var weak = RSA.Create(1024);
        var weakCsr = new CertificateRequest("CN=x", weak, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequest();
        Assert.Throws<ArgumentException>(() => CertificateProfile.ReadSigningRequest(weakCsr));

        var tampered = (byte[])csr.Clone();
        tampered[^5] ^= 0xFF;
        Assert.Throws<ArgumentException>(() => CertificateProfile.ReadSigningRequest(tampered));

        // The curve is read from the key's parameters: P-256 and P-384 pass, any other curve is refused.
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Assert.NotNull(CertificateProfile.ReadSigningRequest(new CertificateRequest("CN=x", p384, HashAlgorithmName.SHA384).CreateSigningRequest()));
        using var p521 = ECDsa.Create(ECCurve.NamedCurves.nistP521);
        var refused = Assert.Throws<ArgumentException>(() => CertificateProfile.ReadSigningRequest(new CertificateRequest("CN=x", p521, HashAlgorithmName.SHA512).CreateSigningRequest()));
        Assert.Contains("1.3.132.0.35", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnIssuedCertificate_IsWhatDotNetsCertificateBuilderMakes_SignedByTheIssuer(bool servingNames)
    {
        // The CA encodes certificates itself (loading one to read its bytes costs more than signing it): the part that
        // is signed must be byte for byte what CertificateRequest builds from the same fields.
        var id = new SpiffeId("cluster.local", "default", "reviews");
        string[] dns = servingNames ? ["meshkit-controlplane", "localhost"] : [];
        System.Net.IPAddress[] addresses = servingNames ? [System.Net.IPAddress.Loopback] : [];
        var (der, notAfter) = CertificateProfile.IssueDer(PublicKey(), id, _root, Now, TimeSpan.FromHours(1), dns, addresses);
        using var issued = X509CertificateLoader.LoadCertificate(der);

        var request = new CertificateRequest(new X500DistinguishedName("O=cluster.local"), PublicKey(), HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(id.ToUri());
        foreach (var name in dns)
        {
            san.AddDnsName(name);
        }

        foreach (var address in addresses)
        {
            san.AddIpAddress(address);
        }

        request.CertificateExtensions.Add(san.Build(true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(CertificateProfile.ServerAuth), new Oid(CertificateProfile.ClientAuth)], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_root, true, false));
        using var signer = _root.GetECDsaPrivateKey()!;
        using var reference = request.Create(_root.SubjectName, X509SignatureGenerator.CreateForECDsa(signer), Now.AddMinutes(-1), Now.AddHours(1), issued.SerialNumberBytes.Span);

        Assert.Equal(ToBeSigned(reference.RawData), ToBeSigned(der));
        Assert.Equal(Now.AddHours(1), notAfter);
        Assert.Equal(notAfter.UtcDateTime, issued.NotAfter.ToUniversalTime());
        Assert.True(Verify(issued, out var verified, out var error), error);
        Assert.Equal(id, verified);
        Assert.Equal(0x40, issued.SerialNumberBytes.Span[0] & 0xC0); // positive and minimal: the serial (big-endian) starts with bits 01
    }

    [Fact]
    public void AnIssuedCertificate_NeverOutlivesItsIssuer_AndHasWholeSeconds()
    {
        var now = Now.AddMilliseconds(123.4);
        var (der, notAfter) = CertificateProfile.IssueDer(PublicKey(), new SpiffeId("cluster.local", "default", "reviews"), _root, now, TimeSpan.FromDays(3650));
        using var issued = X509CertificateLoader.LoadCertificate(der);

        Assert.Equal(_root.NotAfter, issued.NotAfter);
        Assert.Equal(_root.NotAfter.ToUniversalTime(), notAfter.UtcDateTime);
        Assert.Equal(new DateTimeOffset(2026, 11, 25, 11, 59, 0, TimeSpan.Zero).UtcDateTime, issued.NotBefore.ToUniversalTime());
    }

    private static byte[] ToBeSigned(byte[] certificate) =>
        new System.Formats.Asn1.AsnReader(certificate, System.Formats.Asn1.AsnEncodingRules.DER).ReadSequence().ReadEncodedValue().ToArray();

    private bool Verify(X509Certificate2 leaf, out SpiffeId? id, out string? error) =>
        PeerVerifier.TryVerify(leaf, [], Bundle, Now, CertificateProfile.ClientAuth, out id, out error);

    private PublicKey PublicKey() => new CertificateRequest("CN=x", _key, HashAlgorithmName.SHA256).PublicKey;

    private X509Certificate2 Issue(SpiffeId id) => CertificateProfile.Issue(PublicKey(), id, _root, Now, TimeSpan.FromHours(1));

    /// <summary>A leaf signed by the mesh root with only the extensions <paramref name="extensions"/> adds.</summary>
    private X509Certificate2 Custom(Action<CertificateRequest> extensions)
    {
        var request = new CertificateRequest("O=cluster.local", _key, HashAlgorithmName.SHA256);
        extensions(request);
        return request.Create(_root, Now.AddMinutes(-1), Now.AddHours(1), RandomNumberGenerator.GetBytes(8));
    }
}
