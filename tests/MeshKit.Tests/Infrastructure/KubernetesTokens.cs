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
}
