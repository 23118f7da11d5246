using System.Formats.Asn1;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MeshKit.Http;

/// <summary>
/// DestinationRule <c>tls.caCrl</c>: certificate revocation lists (PEM or DER, one file) the server's chain is checked
/// against, as Envoy checks its <c>crl</c>: every certificate of the chain but the root needs a list from its issuer,
/// signed by that issuer and current (this update passed, next update not), and must not be on it. The file is read
/// when the rule is applied; a file that holds no list, or a list that cannot be read, rejects the config version.
/// </summary>
internal sealed class RevocationLists
{
    private readonly RevocationList[] _lists;

    private RevocationLists(RevocationList[] lists) => _lists = lists;

    /// <summary>Reads every list of <paramref name="path"/>.</summary>
    public static RevocationLists Load(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var text = System.Text.Encoding.ASCII.GetString(bytes);
        const string Begin = "-----BEGIN X509 CRL-----", End = "-----END X509 CRL-----";
        var ders = new List<byte[]>();
        if (text.Contains(Begin, StringComparison.Ordinal))
        {
            for (var start = text.IndexOf(Begin, StringComparison.Ordinal); start >= 0; start = text.IndexOf(Begin, start, StringComparison.Ordinal))
            {
                var end = text.IndexOf(End, start, StringComparison.Ordinal);
                if (end < 0)
                {
                    break;
                }

                ders.Add(Convert.FromBase64String(text[(start + Begin.Length)..end]));
                start = end + End.Length;
            }
        }
        else if (bytes.Length > 0)
        {
            ders.Add(bytes);
        }

        if (ders.Count == 0)
        {
            throw new MeshConfigException($"DestinationRule tls.caCrl '{path}' holds no certificate revocation list");
        }

        try
        {
            return new RevocationLists([.. ders.Select(RevocationList.Parse)]);
        }
        catch (Exception ex) when (ex is AsnContentException or FormatException)
        {
            throw new MeshConfigException($"DestinationRule tls.caCrl '{path}': not a certificate revocation list: {ex.Message}");
        }
    }

    /// <summary>Checks a built chain (leaf first); null when it passes, else why not.</summary>
    public string? Check(X509ChainElementCollection chain, DateTimeOffset now)
    {
        for (var i = 0; i + 1 < chain.Count; i++)
        {
            var certificate = chain[i].Certificate;
            var issuer = chain[i + 1].Certificate;
            var list = Array.Find(_lists, l => l.Issuer.AsSpan().SequenceEqual(certificate.IssuerName.RawData) && l.IsSignedBy(issuer));
            if (list is null)
            {
                return $"no revocation list from {certificate.Issuer} (as Envoy, every certificate of the chain needs one)";
            }

            if (now < list.ThisUpdate || (list.NextUpdate is { } next && now > next))
            {
                return $"the revocation list of {certificate.Issuer} is not current";
            }

            if (list.Revoked.Contains(new BigInteger(certificate.SerialNumberBytes.Span, isUnsigned: true, isBigEndian: true)))
            {
                return $"{certificate.Subject} (serial {certificate.SerialNumber}) is revoked";
            }
        }

        return null;
    }

    private sealed class RevocationList
    {
        public required byte[] Issuer { get; init; }

        public required byte[] Signed { get; init; }

        public required string SignatureAlgorithm { get; init; }

        public required byte[] Signature { get; init; }

        public required DateTimeOffset ThisUpdate { get; init; }

        public DateTimeOffset? NextUpdate { get; init; }

        public required HashSet<BigInteger> Revoked { get; init; }

        // RFC 5280, 5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }.
        public static RevocationList Parse(byte[] der)
        {
            var list = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
            var signed = list.PeekEncodedValue().ToArray();
            var tbs = list.ReadSequence();
            var algorithm = list.ReadSequence().ReadObjectIdentifier();
            var signature = list.ReadBitString(out _);

            if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer))
            {
                tbs.ReadInteger(); // version
            }

            tbs.ReadSequence(); // signature algorithm, again
            var issuer = tbs.ReadEncodedValue().ToArray();
            var thisUpdate = ReadTime(tbs);
            DateTimeOffset? nextUpdate = tbs.HasData && (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) || tbs.PeekTag().HasSameClassAndValue(Asn1Tag.GeneralizedTime)) ? ReadTime(tbs) : null;
            var revoked = new HashSet<BigInteger>();
            if (tbs.HasData && tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
            {
                var entries = tbs.ReadSequence();
                while (entries.HasData)
                {
                    revoked.Add(entries.ReadSequence().ReadInteger());
                }
            }

            return new RevocationList
            {
                Issuer = issuer, Signed = signed, SignatureAlgorithm = algorithm, Signature = signature,
                ThisUpdate = thisUpdate, NextUpdate = nextUpdate, Revoked = revoked,
            };
        }

        public bool IsSignedBy(X509Certificate2 issuer)
        {
            var hash = SignatureAlgorithm switch
            {
                "1.2.840.10045.4.3.2" or "1.2.840.113549.1.1.11" => HashAlgorithmName.SHA256,
                "1.2.840.10045.4.3.3" or "1.2.840.113549.1.1.12" => HashAlgorithmName.SHA384,
                "1.2.840.10045.4.3.4" or "1.2.840.113549.1.1.13" => HashAlgorithmName.SHA512,
                _ => default,
            };
            if (hash == default)
            {
                return false;
            }

            using var ecdsa = issuer.GetECDsaPublicKey();
            if (ecdsa is not null)
            {
                return ecdsa.VerifyData(Signed, Signature, hash, DSASignatureFormat.Rfc3279DerSequence);
            }

            using var rsa = issuer.GetRSAPublicKey();
            return rsa is not null && rsa.VerifyData(Signed, Signature, hash, RSASignaturePadding.Pkcs1);
        }

        private static DateTimeOffset ReadTime(AsnReader reader) =>
            reader.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) ? reader.ReadUtcTime() : reader.ReadGeneralizedTime();
    }
}
