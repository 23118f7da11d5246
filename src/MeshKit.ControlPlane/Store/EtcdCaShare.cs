using System.Security.Cryptography;
using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;

namespace MeshKit.ControlPlane.Store;

/// <summary>
/// Shares the CA's files (generated root or plugged-in CA, and the join-token key) among replicas through one etcd key,
/// encrypted with AES-256-GCM under a key derived from <see cref="ControlPlaneOptions.CaKeyPassphrase"/> (PBKDF2-SHA256),
/// so etcd and its backups never hold a private key in the clear. The first replica publishes its CA (generating one
/// if its directory is empty); the others write the same files into their CA directory before the CA loads, so any
/// replica signs, and a token one replica created is accepted by all. A replica whose directory already holds another
/// CA refuses to start rather than split the mesh's trust.
/// </summary>
internal static class EtcdCaShare
{
    private static readonly string[] Files = ["root-cert.pem", "root-key.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem", "token-key.pem"];
    private static readonly string[] Identifying = ["root-cert.pem", "ca-cert.pem"];
    private const int Iterations = 210_000;

    public static async Task PrepareAsync(EtcdCluster etcd, ControlPlaneOptions options, Func<Ca.CertificateAuthority> generate, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(options.CaKeyPassphrase))
        {
            throw new InvalidOperationException("ControlPlane:CaKeyPassphrase is required with the etcd store: the CA's keys are shared through etcd encrypted with it (the same on every replica)");
        }

        var directory = Ca.CertificateAuthority.ResolveDirectory(options.CaDirectory);
        Directory.CreateDirectory(directory);
        var key = etcd.Prefix + "/ca/files";
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var existing = await etcd.GetAsync(key, cancellationToken).ConfigureAwait(false);
            if (existing.Kvs.Count > 0)
            {
                Materialize(directory, Decrypt(existing.Kvs[0].Value.ToByteArray(), options.CaKeyPassphrase));
                return;
            }

            var generated = !Identifying.Any(f => File.Exists(Path.Combine(directory, f)));
            if (generated)
            {
                // Nothing anywhere yet: let the CA create its root (and token key) in this replica's directory.
                generate().Dispose();
            }

            var files = Files.Where(f => File.Exists(Path.Combine(directory, f))).ToDictionary(f => f, f => File.ReadAllText(Path.Combine(directory, f)), StringComparer.Ordinal);
            var request = new TxnRequest();
            request.Compare.Add(new Compare { Key = ByteString.CopyFromUtf8(key), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
            request.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(Encrypt(files, options.CaKeyPassphrase)) } });
            if ((await etcd.TxnAsync(request, cancellationToken).ConfigureAwait(false)).Succeeded)
            {
                return;
            }

            if (generated)
            {
                // Another replica published first: take its CA instead of the one just generated.
                foreach (var file in Files)
                {
                    File.Delete(Path.Combine(directory, file));
                }
            }
        }

        throw new InvalidOperationException("could not agree on the CA through etcd after 3 attempts");
    }

    private static void Materialize(string directory, Dictionary<string, string> files)
    {
        foreach (var name in Identifying)
        {
            var path = Path.Combine(directory, name);
            if (File.Exists(path) && (!files.TryGetValue(name, out var shared) || shared != File.ReadAllText(path)))
            {
                throw new InvalidOperationException($"the CA directory '{directory}' holds another CA than the one the mesh shares in etcd ({name} differs); empty it, or make it the same on every replica");
            }
        }

        foreach (var (name, content) in files)
        {
            var path = Path.Combine(directory, name);
            if (File.Exists(path))
            {
                continue;
            }

            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using var stream = new FileStream(path, options);
            using var writer = new StreamWriter(stream);
            writer.Write(content);
        }
    }

    internal static byte[] Encrypt(Dictionary<string, string> files, string passphrase)
    {
        var plain = JsonSerializer.SerializeToUtf8Bytes(files);
        var salt = RandomNumberGenerator.GetBytes(16);
        var nonce = RandomNumberGenerator.GetBytes(AesGcm.NonceByteSizes.MaxSize);
        var tag = new byte[AesGcm.TagByteSizes.MaxSize];
        var cipher = new byte[plain.Length];
        using (var aes = new AesGcm(DeriveKey(passphrase, salt), tag.Length))
        {
            aes.Encrypt(nonce, plain, cipher, tag);
        }

        return JsonSerializer.SerializeToUtf8Bytes(new Sealed(1, Iterations, salt, nonce, tag, cipher));
    }

    internal static Dictionary<string, string> Decrypt(byte[] value, string passphrase)
    {
        var sealedValue = JsonSerializer.Deserialize<Sealed>(value) ?? throw new InvalidOperationException("the CA record in etcd is empty");
        var plain = new byte[sealedValue.Cipher.Length];
        try
        {
            using var aes = new AesGcm(DeriveKey(passphrase, sealedValue.Salt, sealedValue.Iterations), sealedValue.Tag.Length);
            aes.Decrypt(sealedValue.Nonce, sealedValue.Cipher, sealedValue.Tag, plain);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new InvalidOperationException("the CA record in etcd does not open with this ControlPlane:CaKeyPassphrase (every replica needs the same one)");
        }

        return JsonSerializer.Deserialize<Dictionary<string, string>>(plain) ?? [];
    }

    private static byte[] DeriveKey(string passphrase, byte[] salt, int iterations = Iterations) =>
        Rfc2898DeriveBytes.Pbkdf2(passphrase, salt, iterations, HashAlgorithmName.SHA256, 32);

    private sealed record Sealed(int Format, int Iterations, byte[] Salt, byte[] Nonce, byte[] Tag, byte[] Cipher);
}
