using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MeshKit.Security;

/// <summary>
/// The mesh certificate profile: how roots and workload certificates are made and read. Workload certificates carry
/// exactly one URI SAN (the SPIFFE ID), CA:false, key usage digitalSignature (critical) and EKU serverAuth +
/// clientAuth, as Istio's do.
/// </summary>
internal static class CertificateProfile
{
    /// <summary>EKU OID of TLS server authentication.</summary>
    public const string ServerAuth = "1.3.6.1.5.5.7.3.1";

    /// <summary>EKU OID of TLS client authentication.</summary>
    public const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    private const string SubjectAltNameOid = "2.5.29.17";

    // Certificates are backdated a little so a peer whose clock is slightly behind accepts them at once.
    private static readonly TimeSpan Backdate = TimeSpan.FromMinutes(1);

    /// <summary>Creates a self-signed root CA (ECDSA P-256) for <paramref name="trustDomain"/>.</summary>
    public static X509Certificate2 CreateRoot(string trustDomain, DateTimeOffset now, TimeSpan lifetime)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"O={trustDomain}, CN=MeshKit Root CA"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        using var created = request.CreateSelfSigned(now - Backdate, now + lifetime);

        // Re-import so the key is usable for signing on every platform (an ephemeral key cannot be on some).
        return X509Certificate2.CreateFromPem(created.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>
    /// Reads a PKCS#10 request and returns its public key after checking the request's own signature and the key's
    /// strength (ECDSA P-256/P-384, RSA of 2048 bits or more). Everything else the request asks for is ignored: the
    /// identity comes from the authenticated caller, never from the request.
    /// </summary>
    public static PublicKey ReadSigningRequest(byte[] der)
    {
        CertificateRequest request;
        try
        {
            request = CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (CryptographicException ex)
        {
            throw new ArgumentException($"the certificate signing request is not valid: {ex.Message}", nameof(der), ex);
        }

        var key = request.PublicKey;
        switch (key.Oid.Value)
        {
            case "1.2.840.10045.2.1":
                // The curve is named in the key's parameters: read it rather than import the key again (an import
                // is the costliest step of a signing; the request's signature check above has done one already).
                var curve = NamedCurve(key);
                if (curve is not ("1.2.840.10045.3.1.7" or "1.3.132.0.34"))
                {
                    throw new ArgumentException($"ECDSA keys must be P-256 or P-384, not curve {curve ?? "(explicit parameters)"}", nameof(der));
                }

                break;
            case "1.2.840.113549.1.1.1":
                using (var rsa = key.GetRSAPublicKey()!)
                {
                    if (rsa.KeySize < 2048)
                    {
                        throw new ArgumentException($"RSA keys must have at least 2048 bits, not {rsa.KeySize}", nameof(der));
                    }
                }

                break;
            default:
                throw new ArgumentException($"unsupported key algorithm {key.Oid.Value}", nameof(der));
        }

        return key;
    }

    /// <summary>The named-curve OID of an EC public key, or null when the key carries explicit curve parameters.</summary>
    private static string? NamedCurve(PublicKey key)
    {
        if (key.EncodedParameters?.RawData is not { Length: > 0 } parameters)
        {
            return null;
        }

        try
        {
            return System.Formats.Asn1.AsnDecoder.ReadObjectIdentifier(parameters, System.Formats.Asn1.AsnEncodingRules.DER, out var consumed) is var oid
                && consumed == parameters.Length ? oid : null;
        }
        catch (System.Formats.Asn1.AsnContentException)
        {
            return null;
        }
    }

    /// <summary>Creates a PKCS#10 request for <paramref name="id"/> signed by <paramref name="key"/>.</summary>
    public static byte[] CreateSigningRequest(ECDsa key, SpiffeId id)
    {
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(id.ToUri());
        request.CertificateExtensions.Add(san.Build(true));
        return request.CreateSigningRequest();
    }

    /// <summary>
    /// Issues a certificate for <paramref name="id"/> over <paramref name="publicKey"/>, signed by
    /// <paramref name="issuer"/> (which must hold its private key). It never outlives the issuer.
    /// </summary>
    /// <param name="publicKey">The subject's public key.</param>
    /// <param name="id">The subject's identity.</param>
    /// <param name="issuer">The signing CA, with its private key.</param>
    /// <param name="now">The issuing time.</param>
    /// <param name="lifetime">How long the certificate is valid.</param>
    /// <param name="dnsNames">Extra DNS names; only the control plane's own serving certificate has any.</param>
    /// <param name="addresses">Extra IP addresses; only the control plane's own serving certificate has any.</param>
    public static X509Certificate2 Issue(
        PublicKey publicKey,
        SpiffeId id,
        X509Certificate2 issuer,
        DateTimeOffset now,
        TimeSpan lifetime,
        IEnumerable<string>? dnsNames = null,
        IEnumerable<System.Net.IPAddress>? addresses = null) =>
        X509CertificateLoader.LoadCertificate(IssueDer(publicKey, id, issuer, now, lifetime, dnsNames, addresses).Der);

    /// <summary>
    /// Issues as <see cref="Issue"/> does, and returns the certificate's DER and its expiry without loading it: a CA
    /// hands out bytes, and loading a certificate (which decodes its public key) costs more than signing it.
    /// </summary>
    public static (byte[] Der, DateTimeOffset NotAfter) IssueDer(
        PublicKey publicKey,
        SpiffeId id,
        X509Certificate2 issuer,
        DateTimeOffset now,
        TimeSpan lifetime,
        IEnumerable<string>? dnsNames = null,
        IEnumerable<System.Net.IPAddress>? addresses = null)
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(id.ToUri());
        foreach (var dns in dnsNames ?? [])
        {
            san.AddDnsName(dns);
        }

        foreach (var address in addresses ?? [])
        {
            san.AddIpAddress(address);
        }

        X509Extension[] extensions =
        [
            san.Build(true),
            new X509BasicConstraintsExtension(false, false, 0, true),
            new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true),
            new X509EnhancedKeyUsageExtension([new Oid(ServerAuth), new Oid(ClientAuth)], false),
            new X509SubjectKeyIdentifierExtension(publicKey, false),
            X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false),
        ];
        var notBefore = WholeSeconds(now - Backdate);
        var notAfter = WholeSeconds(now + lifetime);
        if (notAfter > issuer.NotAfter.ToUniversalTime())
        {
            notAfter = WholeSeconds(issuer.NotAfter.ToUniversalTime());
        }

        // Positive and minimally encoded (the first byte neither zero nor with its top bit set): 126 random bits.
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x3F) | 0x40);

        using var key = issuer.GetECDsaPrivateKey();
        using var rsa = key is null ? issuer.GetRSAPrivateKey() : null;
        var generator = key is not null ? X509SignatureGenerator.CreateForECDsa(key)
            : rsa is not null ? X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1)
            : throw new InvalidOperationException("the issuing certificate has no ECDSA or RSA private key");
        var algorithm = generator.GetSignatureAlgorithmIdentifier(HashAlgorithmName.SHA256);

        // RFC 5280 §4.1: the TBSCertificate, then the certificate around it and its signature.
        var tbs = new AsnWriter(AsnEncodingRules.DER);
        using (tbs.PushSequence())
        {
            using (tbs.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0)))
            {
                tbs.WriteInteger(2); // v3
            }

            tbs.WriteInteger(serial);
            tbs.WriteEncodedValue(algorithm);
            tbs.WriteEncodedValue(issuer.SubjectName.RawData);
            using (tbs.PushSequence())
            {
                WriteTime(tbs, notBefore);
                WriteTime(tbs, notAfter);
            }

            tbs.WriteEncodedValue(new X500DistinguishedName($"O={id.TrustDomain}").RawData);
            tbs.WriteEncodedValue(publicKey.ExportSubjectPublicKeyInfo());
            using (tbs.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 3)))
            using (tbs.PushSequence())
            {
                foreach (var extension in extensions)
                {
                    using (tbs.PushSequence())
                    {
                        tbs.WriteObjectIdentifier(extension.Oid!.Value!);
                        if (extension.Critical)
                        {
                            tbs.WriteBoolean(true); // DEFAULT FALSE is omitted
                        }

                        tbs.WriteOctetString(extension.RawData);
                    }
                }
            }
        }

        var toBeSigned = tbs.Encode();
        var certificate = new AsnWriter(AsnEncodingRules.DER);
        using (certificate.PushSequence())
        {
            certificate.WriteEncodedValue(toBeSigned);
            certificate.WriteEncodedValue(algorithm);
            certificate.WriteBitString(generator.SignData(toBeSigned, HashAlgorithmName.SHA256));
        }

        return (certificate.Encode(), notAfter);
    }

    // A certificate's times have whole seconds (UTC).
    private static DateTimeOffset WholeSeconds(DateTimeOffset time)
    {
        var utc = time.ToUniversalTime();
        return new DateTimeOffset(utc.Ticks - (utc.Ticks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
    }

    // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
    private static void WriteTime(AsnWriter writer, DateTimeOffset utc)
    {
        if (utc.Year is >= 1950 and <= 2049)
        {
            writer.WriteUtcTime(utc, twoDigitYearMax: 2049);
        }
        else
        {
            writer.WriteGeneralizedTime(utc, omitFractionalSeconds: true);
        }
    }

    /// <summary>Returns every URI subject alternative name of <paramref name="certificate"/>.</summary>
    public static IReadOnlyList<string> UriNames(X509Certificate2 certificate)
    {
        var names = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != SubjectAltNameOid)
            {
                continue;
            }

            var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
            var sequence = reader.ReadSequence();
            var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
            while (sequence.HasData)
            {
                var tag = sequence.PeekTag();
                if (tag == uriTag)
                {
                    names.Add(sequence.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                }
                else
                {
                    sequence.ReadEncodedValue();
                }
            }
        }

        return names;
    }

    /// <summary>The certificate a TLS callback was handed, as an <see cref="X509Certificate2"/>.</summary>
    public static X509Certificate2 AsCertificate2(X509Certificate certificate) =>
        certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());

    /// <summary>
    /// Joins a certificate and its private key, re-imported so the key travels with the certificate on every
    /// platform's TLS stack (an ephemeral key cannot be used for TLS on some).
    /// </summary>
    public static X509Certificate2 WithKey(X509Certificate2 certificate, ECDsa key)
    {
        using var withKey = certificate.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>The SHA-256 of a certificate, base64url: how a join token pins the mesh root.</summary>
    public static string Pin(X509Certificate2 certificate) => Base64Url(SHA256.HashData(certificate.RawData));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
