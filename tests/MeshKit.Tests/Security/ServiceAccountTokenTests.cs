using System.Security.Cryptography;
using MeshKit.ControlPlane.Registry;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.Security;

/// <summary>
/// Kubernetes service-account tokens as a first certificate's credential, as istiod takes them: a pod's projected token,
/// signed by the cluster's key, bound to the audience <c>istio-ca</c>, gets its namespace's and service account's
/// identity; the workload sends it only to a control plane that shows the root it was given.
/// </summary>
public sealed class ServiceAccountTokenTests : MeshTestBase, IDisposable
{
    private const string Issuer = KubernetesTokens.Issuer;

    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private readonly RSA _clusterKey = RSA.Create(2048);
    private readonly string _files = Directory.CreateTempSubdirectory("meshkit-sa-").FullName;

    public override async Task InitializeAsync()
    {
        File.WriteAllText(Path.Combine(_files, "jwks.json"), Jwks(_clusterKey, "cluster-key-1"));
        ControlPlane = await TestControlPlane.StartAsync(configure: o => (o.KubernetesTokenIssuer, o.KubernetesTokenJwksFile) = (Issuer, Path.Combine(_files, "jwks.json")));
    }

    public void Dispose()
    {
        _clusterKey.Dispose();
        Directory.Delete(_files, recursive: true);
    }

    [Fact]
    public async Task AProjectedToken_GetsThePodsIdentity_WithoutAJoinToken_AndTheWorkloadJoinsOverMutualTls()
    {
        var reviews = await StartWithTokenAsync("reviews", Token(_clusterKey, "cluster-key-1"));
        var identity = reviews.Services.GetRequiredService<WorkloadIdentity>();
        await Eventually.TrueAsync(() => identity.Current is not null, "the certificate arrives");
        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", identity.Current!.Id.ToString());

        var registry = ControlPlane.Services.GetRequiredService<IWorkloadRegistry>();
        await Eventually.TrueAsync(() => registry.Workloads.Any(w => w.Identity == "spiffe://cluster.local/ns/default/sa/reviews"), "registered with its proven identity");
    }

    [Theory]
    [InlineData("audience")]
    [InlineData("issuer key")]
    [InlineData("expired")]
    [InlineData("another account")]
    [InlineData("another root")]
    public async Task ATokenThatDoesNotProveTheWorkload_GetsNoCertificate(string wrong)
    {
        using var otherKey = RSA.Create(2048);
        var token = wrong switch
        {
            "audience" => Token(_clusterKey, "cluster-key-1", audience: "vault"),
            "issuer key" => Token(otherKey, "cluster-key-1"),
            "expired" => Token(_clusterKey, "cluster-key-1", expires: Now.AddMinutes(-10)),
            "another account" => Token(_clusterKey, "cluster-key-1", serviceAccount: "ratings"),
            _ => Token(_clusterKey, "cluster-key-1"),
        };
        var root = wrong == "another root" ? OtherRoot() : null;

        var reviews = await StartWithTokenAsync("reviews", token, root, initialFetch: TimeSpan.FromMilliseconds(500));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Null(reviews.Services.GetRequiredService<WorkloadIdentity>().Current);
    }

    [Theory]
    [InlineData("valid", null)]
    [InlineData("audience", "IDX10214")]
    [InlineData("issuer", "IDX10205")]
    [InlineData("key", "Signature validation failed")]
    [InlineData("expired", "Lifetime validation failed")]
    [InlineData("no expiry", "Lifetime validation failed")]
    [InlineData("subject", "names no service account")]
    [InlineData("claims disagree", "names no service account")]
    [InlineData("not a name", "does not form an identity")]
    public async Task TheClustersTokens_AreCheckedAsIstioChecksThem(string which, string? error)
    {
        using var otherKey = RSA.Create(2048);
        var token = which switch
        {
            "audience" => Token(_clusterKey, "k", audience: "vault"),
            "issuer" => Token(_clusterKey, "k", issuer: "https://elsewhere.example"),
            "key" => Token(otherKey, "k"),
            "expired" => Token(_clusterKey, "k", expires: Now.AddMinutes(-5)),
            "no expiry" => Token(_clusterKey, "k", noExpiry: true),
            "subject" => Token(_clusterKey, "k", subject: "reviews"),
            "claims disagree" => Token(_clusterKey, "k", claimedServiceAccount: "ratings"),
            "not a name" => Token(_clusterKey, "k", serviceAccount: "Reviews_Admin"),
            _ => Token(_clusterKey, "k"),
        };

        var (id, message) = await ServiceAccountTokens.ValidateAsync(token, Jwks(_clusterKey, "k"), Issuer, [], "cluster.local", Now);

        if (error is null)
        {
            Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", id?.ToString());
        }
        else
        {
            Assert.Null(id);
            Assert.True(message?.Contains(error, StringComparison.Ordinal), message);
        }
    }

    [Fact]
    public async Task TheClustersKeys_FetchedFromItsApiServer_WithTheControlPlanesOwnToken_VerifyAPodsToken()
    {
        using var apiCa = new ExternalCa();
        await using var api = await JwksServer.StartAsync(apiCa, Jwks(_clusterKey, "cluster-key-1"));
        await ControlPlane.DisposeAsync();
        ControlPlane = await TestControlPlane.StartAsync(configure: o =>
        {
            o.KubernetesTokenIssuer = Issuer;
            o.KubernetesTokenJwksUri = api.Uri.ToString();
            o.KubernetesApiTokenFile = apiCa.WritePem("controlplane-token", JwksServer.ControlPlaneToken);
            o.KubernetesApiCaFile = apiCa.WritePem("ca.crt", apiCa.Root.ExportCertificatePem());
        });

        var reviews = await StartWithTokenAsync("reviews", Token(_clusterKey, "cluster-key-1"));
        await Eventually.TrueAsync(() => reviews.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the certificate arrives");
        Assert.Equal(1, api.Fetches);
    }

    [Fact]
    public async Task FetchedKeys_AreKeptFiveMinutes_ANewKeyIdFetchesThemAgain_AtMostEvery30Seconds_AndTheLastGoodOnesOutliveAnOutage()
    {
        using var apiCa = new ExternalCa();
        await using var api = await JwksServer.StartAsync(apiCa, Jwks(_clusterKey, "key-1"));
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        using var keys = new MeshKit.ControlPlane.Ca.ClusterKeys(Microsoft.Extensions.Options.Options.Create(new MeshKit.ControlPlane.ControlPlaneOptions
        {
            KubernetesTokenJwksUri = api.Uri.ToString(),
            KubernetesApiTokenFile = apiCa.WritePem("controlplane-token", JwksServer.ControlPlaneToken),
            KubernetesApiCaFile = apiCa.WritePem("ca.crt", apiCa.Root.ExportCertificatePem()),
        }), time);
        async Task<string> KeySetAsync(string kid) => (await keys.GetAsync(kid)).Jwks ?? throw new InvalidOperationException((await keys.GetAsync(kid)).Error);

        Assert.Contains("\"key-1\"", await KeySetAsync("key-1"), StringComparison.Ordinal);
        time.Advance(TimeSpan.FromMinutes(4));
        await KeySetAsync("key-1");
        Assert.Equal(1, api.Fetches);

        // The cluster rotates its key: a token of the new one fetches the set again, but not within 30 s of the last fetch.
        using var rotated = RSA.Create(2048);
        api.Jwks = Jwks(rotated, "key-2");
        time.Advance(TimeSpan.FromSeconds(31));
        Assert.Contains("\"key-2\"", await KeySetAsync("key-2"), StringComparison.Ordinal);
        Assert.Equal(2, api.Fetches);
        api.Jwks = Jwks(_clusterKey, "key-3");
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Contains("\"key-2\"", await KeySetAsync("key-3"), StringComparison.Ordinal);
        time.Advance(TimeSpan.FromSeconds(21));
        Assert.Contains("\"key-3\"", await KeySetAsync("key-3"), StringComparison.Ordinal);
        Assert.Equal(3, api.Fetches);

        // The API server refuses (or is down): the last good keys stay.
        api.Refuse = true;
        time.Advance(TimeSpan.FromMinutes(6));
        Assert.Contains("\"key-3\"", await KeySetAsync("key-3"), StringComparison.Ordinal);
        Assert.Equal(4, api.Fetches);
    }

    [Fact]
    public async Task AnApiServerTheClustersCaDoesNotVouchFor_OrThatRefusesTheControlPlane_GivesNoKeys()
    {
        using var apiCa = new ExternalCa();
        using var otherCa = new ExternalCa();
        await using var api = await JwksServer.StartAsync(apiCa, Jwks(_clusterKey, "key-1"));
        MeshKit.ControlPlane.Ca.ClusterKeys Keys(ExternalCa trusted, string token) => new(Microsoft.Extensions.Options.Options.Create(new MeshKit.ControlPlane.ControlPlaneOptions
        {
            KubernetesTokenJwksUri = api.Uri.ToString(),
            KubernetesApiTokenFile = trusted.WritePem("controlplane-token", token),
            KubernetesApiCaFile = trusted.WritePem("ca.crt", trusted.Root.ExportCertificatePem()),
        }), TimeProvider.System);

        using var untrusting = Keys(otherCa, JwksServer.ControlPlaneToken);
        var (jwks, error) = await untrusting.GetAsync("key-1");
        Assert.Null(jwks);
        Assert.StartsWith($"the cluster's keys cannot be fetched from {api.Uri}", error, StringComparison.Ordinal);
        Assert.Equal(0, api.Fetches);

        using var unauthorized = Keys(apiCa, "someone-else");
        (jwks, error) = await unauthorized.GetAsync("key-1");
        Assert.Null(jwks);
        Assert.Contains("the API server answered 401", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AClusterIssuerWithoutItsKeys_StopsTheControlPlanesStart()
    {
        var ex = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(async () =>
        {
            await using var app = MeshKit.ControlPlane.ControlPlaneApp.Build(["--kubernetes-token-issuer", Issuer, "--kubernetes-token-jwks-file", Path.Combine(_files, "missing.json"),
                "--config-dir", _files, "--ca-dir", Path.Combine(_files, "ca"), "--listen", "http://127.0.0.1:0", "--secure-listen", "https://127.0.0.1:0", "--admin-listen", "http://127.0.0.1:0"]);
            await app.StartAsync();
        });
        Assert.Contains("ControlPlane:KubernetesTokenIssuer needs the cluster's keys: ControlPlane:KubernetesTokenJwksFile", ex.Message, StringComparison.Ordinal);
    }

    private Task<TestWorkload> StartWithTokenAsync(string serviceAccount, string token, string? rootFile = null, TimeSpan? initialFetch = null) =>
        StartWithServiceAccountTokenAsync(_files, serviceAccount, token, rootFile, initialFetch);

    // A root the control plane does not hold: the workload must not send its token there.
    private string OtherRoot()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=other root", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
        using var root = request.CreateSelfSigned(Now.AddDays(-1), Now.AddDays(1));
        var file = Path.Combine(_files, "other-root.pem");
        File.WriteAllText(file, root.ExportCertificatePem());
        return file;
    }

    private static string Jwks(RSA key, string keyId) => KubernetesTokens.Jwks(key, keyId);

    private static string Token(RSA key, string keyId, string audience = ServiceAccountTokens.DefaultAudience, string issuer = Issuer, DateTimeOffset? expires = null,
        bool noExpiry = false, string serviceAccount = "reviews", string? subject = null, string? claimedServiceAccount = null) =>
        KubernetesTokens.Token(key, keyId, "default", serviceAccount, audience, issuer, expires, noExpiry, subject, claimedServiceAccount);
}
