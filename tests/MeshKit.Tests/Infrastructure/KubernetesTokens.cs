using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Tests.Infrastructure;

/// <summary>A stand-in for a cluster's service-account issuer: its keys as a JWKS, and the tokens the kubelet projects for pods.</summary>
internal static class KubernetesTokens
{
    public const string Issuer = "https://kubernetes.default.svc.cluster.local";

    /// <summary>The key set <c>kubectl get --raw /openid/v1/jwks</c> prints, for one RSA key.</summary>
    public static string Jwks(RSA key, string keyId)
    {
        var parameters = key.ExportParameters(includePrivateParameters: false);
        return $$"""{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"{{keyId}}","n":"{{Base64UrlEncoder.Encode(parameters.Modulus)}}","e":"{{Base64UrlEncoder.Encode(parameters.Exponent)}}"}]}""";
    }

    /// <summary>A token as the kubelet projects one for a pod (RS256, its namespace and service account, an hour by default).</summary>
    public static string Token(RSA key, string keyId, string ns, string serviceAccount, string audience = "istio-ca", string issuer = Issuer,
        DateTimeOffset? expires = null, bool noExpiry = false, string? subject = null, string? claimedServiceAccount = null)
    {
        var now = DateTimeOffset.UtcNow;
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now.AddMinutes(-1).UtcDateTime,
            NotBefore = now.AddMinutes(-1).UtcDateTime,
            Expires = noExpiry ? null : (expires ?? now.AddHours(1)).UtcDateTime,
            Claims = new Dictionary<string, object>
            {
                [JwtRegisteredClaimNames.Sub] = subject ?? $"system:serviceaccount:{ns}:{serviceAccount}",
                ["kubernetes.io"] = new Dictionary<string, object>
                {
                    ["namespace"] = ns,
                    ["serviceaccount"] = new Dictionary<string, object> { ["name"] = claimedServiceAccount ?? serviceAccount, ["uid"] = Guid.NewGuid().ToString() },
                    ["pod"] = new Dictionary<string, object> { ["name"] = $"{serviceAccount}-7d9c6b5f4-x2k8q", ["uid"] = Guid.NewGuid().ToString() },
                },
            },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(key) { KeyId = keyId }, SecurityAlgorithms.RsaSha256),
        });
    }

    /// <summary>
    /// The API server's review of a token (a TokenReview's status): authenticated when it verifies with the cluster's
    /// key for one of the audiences asked for and its pod is not <paramref name="deleted"/>, with the user, groups and
    /// audiences the server names.
    /// </summary>
    public static System.Text.Json.Nodes.JsonObject Review(RSA key, string keyId, string token, string[] audiences, Func<string, bool>? deleted = null)
    {
        var (id, error) = MeshKit.Security.ServiceAccountTokens.ValidateAsync(token, Jwks(key, keyId), Issuer, audiences, "cluster.local", DateTimeOffset.UtcNow).GetAwaiter().GetResult();
        if (id is not { } valid)
        {
            return new() { ["authenticated"] = false, ["error"] = $"[invalid bearer token, {error}]", ["user"] = new System.Text.Json.Nodes.JsonObject() };
        }

        var jwt = new JsonWebToken(token);
        var pod = jwt.GetPayloadValue<System.Text.Json.JsonElement>("kubernetes.io").GetProperty("pod").GetProperty("name").GetString()!;
        if (deleted?.Invoke(pod) == true)
        {
            return new() { ["authenticated"] = false, ["error"] = $"[invalid bearer token, pods \"{pod}\" not found]", ["user"] = new System.Text.Json.Nodes.JsonObject() };
        }

        return new()
        {
            ["authenticated"] = true,
            ["user"] = new System.Text.Json.Nodes.JsonObject
            {
                ["username"] = $"system:serviceaccount:{valid.Namespace}:{valid.ServiceAccount}",
                ["uid"] = Guid.NewGuid().ToString(),
                ["groups"] = new System.Text.Json.Nodes.JsonArray("system:serviceaccounts", $"system:serviceaccounts:{valid.Namespace}", "system:authenticated"),
                ["extra"] = new System.Text.Json.Nodes.JsonObject { ["authentication.kubernetes.io/pod-name"] = new System.Text.Json.Nodes.JsonArray(pod) },
            },
            ["audiences"] = new System.Text.Json.Nodes.JsonArray([.. audiences.Intersect(jwt.Audiences).Select(a => System.Text.Json.Nodes.JsonValue.Create(a))]),
        };
    }
}
