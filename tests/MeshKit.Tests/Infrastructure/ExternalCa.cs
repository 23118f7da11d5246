using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Security;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// A CA outside the mesh, as an external HTTPS server's would be: its root, leaves it issues, and a folder for the PEM
/// files a DestinationRule's TLS settings name (deleted with it).
/// </summary>
internal sealed class ExternalCa : IDisposable
{
    /// <summary>Gets the folder of the PEM files.</summary>
    public string Folder { get; } = Directory.CreateTempSubdirectory("meshkit-external-ca-").FullName;

    public X509Certificate2 Root { get; } = CertificateProfile.CreateRoot("external.test", DateTimeOffset.UtcNow, TimeSpan.FromDays(1));

    /// <summary>Writes <paramref name="pem"/> to a file of the folder and returns its path.</summary>
    public string WritePem(string name, string pem)
    {
        var path = Path.Combine(Folder, name);
        File.WriteAllText(path, pem);
        return path;
    }

    /// <summary>Issues a P-256 leaf for <paramref name="name"/> (its DNS name), for a server or a client.</summary>
    public X509Certificate2 Leaf(string name, bool server)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? CertificateProfile.ServerAuth : CertificateProfile.ClientAuth)], false));
        using var issued = request.Create(Root, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1), RandomNumberGenerator.GetBytes(8));
        return CertificateProfile.WithKey(issued, key);
    }

    public void Dispose()
    {
        Root.Dispose();
        Directory.Delete(Folder, recursive: true);
    }
}
