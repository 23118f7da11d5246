using MeshKit.ControlPlane.Store;

namespace MeshKit.Tests.HighAvailability;

public class EtcdStoreUnitTests
{
    [Fact]
    public void TheCaRecord_OpensOnlyWithItsPassphrase_AndHoldsNoKeyInTheClear()
    {
        var files = new Dictionary<string, string>
        {
            ["root-cert.pem"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ["root-key.pem"] = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n",
        };

        var sealedRecord = EtcdCaShare.Encrypt(files, "right passphrase");
        Assert.DoesNotContain("PRIVATE KEY", System.Text.Encoding.UTF8.GetString(sealedRecord), StringComparison.Ordinal);
        Assert.Equal(files, EtcdCaShare.Decrypt(sealedRecord, "right passphrase"));

        var refused = Assert.Throws<InvalidOperationException>(() => EtcdCaShare.Decrypt(sealedRecord, "wrong passphrase"));
        Assert.Contains("CaKeyPassphrase", refused.Message, StringComparison.Ordinal);

        // A fresh salt and nonce every time: the same files never seal to the same bytes.
        Assert.NotEqual(sealedRecord, EtcdCaShare.Encrypt(files, "right passphrase"));
    }

    [Fact]
    public void ASource_SplitsIntoDocuments_WithTheLineEachStartsOn()
    {
        var documents = YamlDocuments.Split("""
            apiVersion: v1
            kind: A
            ---
            # comment
            kind: B
            ---

            kind: C
            """);

        Assert.Equal([1, 4, 7], documents.Select(d => d.FirstLine));
        Assert.Contains("kind: A", documents[0].Text, StringComparison.Ordinal);
        Assert.Contains("kind: B", documents[1].Text, StringComparison.Ordinal);
        Assert.Contains("kind: C", documents[2].Text, StringComparison.Ordinal);
        Assert.Single(YamlDocuments.Split("kind: only"));
    }

    [Fact]
    public void EtcdKeyRanges_CoverExactlyThePrefix()
    {
        Assert.Equal("/meshkit/config0", EtcdCluster.RangeEnd("/meshkit/config/"));
        Assert.Equal([new Uri("http://10.0.0.1:2379"), new Uri("http://10.0.0.2:2379")], EtcdCluster.ParseEndpoints("10.0.0.1:2379, http://10.0.0.2:2379"));
    }
}
