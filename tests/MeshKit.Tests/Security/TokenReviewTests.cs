using System.Security.Cryptography;
using System.Text.Json.Nodes;
using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Ca;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.Security;

/// <summary>
/// Service-account tokens reviewed by the Kubernetes API server (TokenReview), as istiod reviews them, when the control
/// plane reads the cluster: the server alone decides without the cluster's keys, and on top of the offline check with
/// them it refuses what only it knows, a token whose pod was deleted. Real control plane, real workloads, a fake API
/// server on loopback.
/// </summary>
public sealed class TokenReviewTests : MeshTestBase, IDisposable
{
    private readonly RSA _clusterKey = RSA.Create(2048);
    private readonly string _files = Directory.CreateTempSubdirectory("meshkit-review-").FullName;
    private readonly HashSet<string> _deletedPods = [];
    private FakeKubernetesApi _cluster = null!;

    public override async Task InitializeAsync()
    {
        _cluster = await FakeKubernetesApi.StartAsync();
        _cluster.Reviewer = (token, audiences) => KubernetesTokens.Review(_clusterKey, "cluster-key", token, audiences, pod => _deletedPods.Contains(pod));
        File.WriteAllText(Path.Combine(_files, "jwks.json"), KubernetesTokens.Jwks(_clusterKey, "cluster-key"));
        ControlPlane = await TestControlPlane.StartAsync(configure: _cluster.Configure);
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await _cluster.DisposeAsync();
    }

    public void Dispose()
    {
        _clusterKey.Dispose();
        Directory.Delete(_files, recursive: true);
    }

    [Fact]
    public async Task WithTheClusterRead_APodsTokenIsReviewedByTheApiServer_AndNoKeysAreConfigured()
    {
        var token = Token("reviews");
        var reviews = await StartWithTokenAsync("reviews", token);

        await Eventually.TrueAsync(() => reviews.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the certificate arrives");
        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", reviews.Services.GetRequiredService<WorkloadIdentity>().Current!.Id.ToString());
        var review = Assert.Single(_cluster.Reviews);
        Assert.Equal(token, review.Token);
        Assert.Equal(["istio-ca"], review.Audiences);
    }

    [Fact]
    public async Task ATokenWhosePodWasDeleted_IsRefused_ThoughItsSignatureVerifiesOffline()
    {
        await UseOfflineKeysAsync();
        _deletedPods.Add("reviews-7d9c6b5f4-x2k8q");

        var reviews = await StartWithTokenAsync("reviews", Token("reviews"), TimeSpan.FromMilliseconds(500));
        await Eventually.TrueAsync(() => _cluster.Reviews.Count >= 1, "the verified token is reviewed");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Null(reviews.Services.GetRequiredService<WorkloadIdentity>().Current);

        // The pod is back (a new one, with the same name here): its token buys its certificate at the next attempt.
        _deletedPods.Clear();
        await Eventually.TrueAsync(() => reviews.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the certificate arrives once the review passes");
    }

    [Fact]
    public async Task WithReviewsOff_TheOfflineCheckAloneDecides()
    {
        await UseOfflineKeysAsync(review: false);
        _deletedPods.Add("reviews-7d9c6b5f4-x2k8q");

        var reviews = await StartWithTokenAsync("reviews", Token("reviews"));
        await Eventually.TrueAsync(() => reviews.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the certificate arrives");
        Assert.Empty(_cluster.Reviews);
    }

    [Fact]
    public async Task JoinTokens_AreNotSentForReview_AndATokenThatNeverExpires_IsRefusedBeforeAnyReview()
    {
        var joined = await StartSecureAsync("ratings");
        await Eventually.TrueAsync(() => joined.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the join token buys the certificate");

        var legacy = await StartWithTokenAsync("reviews", KubernetesTokens.Token(_clusterKey, "cluster-key", "default", "reviews", noExpiry: true), TimeSpan.FromMilliseconds(500));
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Null(legacy.Services.GetRequiredService<WorkloadIdentity>().Current);
        Assert.Empty(_cluster.Reviews);
    }

    [Theory]
    [InlineData("valid", null)]
    [InlineData("not authenticated", "does not authenticate the token")]
    [InlineData("error", "does not authenticate the token: [invalid bearer token, token has been invalidated]")]
    [InlineData("not audience-aware", "names none of the audiences asked for (istio-ca)")]
    [InlineData("another audience", "names none of the audiences asked for (istio-ca)")]
    [InlineData("a user", "is not a service account's")]
    [InlineData("user name", "names no service account")]
    [InlineData("not a name", "does not form an identity")]
    [InlineData("no status", "has no status")]
    public async Task TheApiServersReview_IsReadAsIstiodReadsIt(string which, string? error)
    {
        var groups = new JsonArray("system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated");
        _cluster.Reviewer = (_, _) => which switch
        {
            "not authenticated" => new JsonObject { ["authenticated"] = false },
            "error" => new JsonObject { ["authenticated"] = false, ["error"] = "[invalid bearer token, token has been invalidated]" },
            "not audience-aware" => Status("system:serviceaccount:default:reviews", groups, null),
            "another audience" => Status("system:serviceaccount:default:reviews", groups, new JsonArray("vault")),
            "a user" => Status("system:serviceaccount:default:reviews", new JsonArray("system:authenticated"), new JsonArray("istio-ca")),
            "user name" => Status("jane@example.com", groups, new JsonArray("istio-ca")),
            "not a name" => Status("system:serviceaccount:default:Reviews_Admin", groups, new JsonArray("istio-ca")),
            "no status" => null!,
            _ => Status("system:serviceaccount:default:reviews", groups, new JsonArray("istio-ca")),
        };
        var options = new ControlPlaneOptions();
        _cluster.Configure(options);
        using var reviewer = new TokenReviewer(Microsoft.Extensions.Options.Options.Create(options));

        var (id, message, unavailable) = await reviewer.ReviewAsync("any-token", [], "cluster.local", CancellationToken.None);

        Assert.False(unavailable);
        if (error is null)
        {
            Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", id?.ToString());
        }
        else
        {
            Assert.Null(id);
            Assert.True(message?.Contains(error, StringComparison.Ordinal), message);
        }

        static JsonObject Status(string user, JsonArray groups, JsonArray? audiences)
        {
            var status = new JsonObject { ["authenticated"] = true, ["user"] = new JsonObject { ["username"] = user, ["groups"] = groups.DeepClone() } };
            if (audiences is not null)
            {
                status["audiences"] = audiences;
            }

            return status;
        }
    }

    [Fact]
    public async Task AServerThatRefusesReviews_SaysWhichPermissionIsMissing_AndOneThatCannotBeReached_IsARetryableOutage()
    {
        _cluster.Reviewer = null;
        var options = new ControlPlaneOptions();
        _cluster.Configure(options);
        using (var reviewer = new TokenReviewer(Microsoft.Extensions.Options.Options.Create(options)))
        {
            var (id, message, unavailable) = await reviewer.ReviewAsync(Token("reviews"), [], "cluster.local", CancellationToken.None);
            Assert.Null(id);
            Assert.False(unavailable);
            Assert.Contains("the API server refuses to review tokens (403)", message, StringComparison.Ordinal);
            Assert.Contains("cannot create resource \"tokenreviews\"", message, StringComparison.Ordinal);
        }

        // A server that is gone: no identity, and the workload is told to retry (Unavailable), not that it is refused.
        options.KubernetesApiServer = $"http://127.0.0.1:{FreePorts.Next()}/";
        using (var reviewer = new TokenReviewer(Microsoft.Extensions.Options.Options.Create(options)))
        {
            var (id, message, unavailable) = await reviewer.ReviewAsync(Token("reviews"), [], "cluster.local", CancellationToken.None);
            Assert.Null(id);
            Assert.True(unavailable);
            Assert.StartsWith("the API server cannot review the token", message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AReviewThatVouchesForAnotherAccountThanTheSignature_IsRefused()
    {
        await UseOfflineKeysAsync();
        _cluster.Reviewer = (token, audiences) =>
        {
            var status = KubernetesTokens.Review(_clusterKey, "cluster-key", token, audiences);
            status["user"]!["username"] = "system:serviceaccount:default:ratings";
            return status;
        };

        var reviews = await StartWithTokenAsync("reviews", Token("reviews"), TimeSpan.FromMilliseconds(500));
        await Eventually.TrueAsync(() => _cluster.Reviews.Count >= 1, "the verified token is reviewed");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Null(reviews.Services.GetRequiredService<WorkloadIdentity>().Current);
    }

    private async Task UseOfflineKeysAsync(bool review = true)
    {
        await ControlPlane.DisposeAsync();
        ControlPlane = await TestControlPlane.StartAsync(configure: o =>
        {
            _cluster.Configure(o);
            (o.KubernetesTokenIssuer, o.KubernetesTokenJwksFile, o.KubernetesTokenReview) = (KubernetesTokens.Issuer, Path.Combine(_files, "jwks.json"), review);
        });
    }

    private string Token(string serviceAccount) => KubernetesTokens.Token(_clusterKey, "cluster-key", "default", serviceAccount);

    private Task<TestWorkload> StartWithTokenAsync(string serviceAccount, string token, TimeSpan? initialFetch = null) =>
        StartWithServiceAccountTokenAsync(_files, serviceAccount, token, initialFetch: initialFetch);
}
