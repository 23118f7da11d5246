using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Security;

/// <summary>
/// Kubernetes service-account tokens as a first certificate's credential, as istiod takes them: a projected token (a
/// JWT the cluster signs, bound to an audience, expiring) names its pod's namespace and service account, and the
/// control plane grants that identity once the token verifies against the cluster's keys (its issuer's JWKS). A pod
/// then needs no join token: the kubelet mounts and rotates its token. Renewals are authenticated by the current
/// certificate, as always.
/// </summary>
internal static class ServiceAccountTokens
{
    /// <summary>The audience Istio's sidecars ask their token for, and MeshKit's default.</summary>
    public const string DefaultAudience = "istio-ca";

    private const string SubjectPrefix = "system:serviceaccount:";
    private const int MaxTokenLength = 16 * 1024;

    /// <summary>
    /// Validates a token against the cluster's keys (<paramref name="jwks"/>, a JSON Web Key Set), issuer and
    /// audiences, and returns the identity it grants in <paramref name="trustDomain"/>.
    /// </summary>
    public static async Task<(SpiffeId? Id, string? Error)> ValidateAsync(string token, string jwks, string issuer, IReadOnlyCollection<string> audiences, string trustDomain, DateTimeOffset now)
    {
        if (token.Length > MaxTokenLength)
        {
            return (null, "the service-account token is too large");
        }

        JsonWebKeySet keys;
        try
        {
            keys = new JsonWebKeySet(jwks);
        }
        catch (ArgumentException ex)
        {
            return (null, $"the cluster's keys (JWKS) cannot be read: {ex.Message}");
        }

        var parameters = new TokenValidationParameters
        {
            ValidIssuer = issuer,
            ValidAudiences = audiences.Count > 0 ? audiences : [DefaultAudience],
            // Only asymmetric keys: a shared secret in a key set would let anyone who read it sign tokens.
            IssuerSigningKeys = keys.GetSigningKeys().Where(k => k is RsaSecurityKey or ECDsaSecurityKey or JsonWebKey { Kty: "RSA" or "EC" }),
            ValidAlgorithms = [SecurityAlgorithms.RsaSha256, SecurityAlgorithms.EcdsaSha256],
            RequireExpirationTime = true,
            RequireSignedTokens = true,

            // Legacy service-account secrets never expire: only bound, expiring tokens are taken.
            LifetimeValidator = JoinTokens.Lifetime(now),
        };
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return (null, $"the service-account token is not valid: {result.Exception?.Message ?? "rejected"}");
        }

        if (Subject((JsonWebToken)result.SecurityToken) is not { } subject)
        {
            return (null, "the service-account token names no service account (subject system:serviceaccount:<namespace>:<name>)");
        }

        return Identity(subject.Namespace, subject.ServiceAccount, trustDomain);
    }

    /// <summary>
    /// The identity a service account has in <paramref name="trustDomain"/>, or why it has none: the mesh's own rules
    /// for an identity (lower-case DNS names) hold for what the cluster vouches for too.
    /// </summary>
    public static (SpiffeId? Id, string? Error) Identity(string ns, string serviceAccount, string trustDomain)
    {
        var id = new SpiffeId(trustDomain, ns, serviceAccount);
        return IsDnsName(ns) && IsDnsName(serviceAccount) && SpiffeId.TryParse(id.ToString(), out var valid)
            ? (valid, null)
            : (null, $"the service-account token's service account '{ns}/{serviceAccount}' does not form an identity of trust domain '{trustDomain}'");
    }

    /// <summary>
    /// Reads a Kubernetes user name <c>system:serviceaccount:&lt;namespace&gt;:&lt;name&gt;</c> (a token's subject, a
    /// TokenReview's user); null when it names no service account.
    /// </summary>
    public static (string Namespace, string ServiceAccount)? ParseUserName(string? name)
    {
        if (name is null || !name.StartsWith(SubjectPrefix, StringComparison.Ordinal))
        {
            return null;
        }

        var parts = name[SubjectPrefix.Length..].Split(':');
        return parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0 ? null : (parts[0], parts[1]);
    }

    /// <summary>Reads whether a token carries an expiry (<c>exp</c>), without validating it: legacy secret tokens carry none.</summary>
    public static bool ReadHasExpiry(string token)
    {
        try
        {
            return new JsonWebToken(token).TryGetPayloadValue<long>(JwtRegisteredClaimNames.Exp, out _);
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Reads the namespace and service account a token names, without validating it (for the workload's own check).</summary>
    public static (string Namespace, string ServiceAccount)? ReadSubject(string token)
    {
        try
        {
            return Subject(new JsonWebToken(token));
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Reads the id of the key that signed a token (<c>kid</c>), without validating it; null when it has none.</summary>
    public static string? ReadKeyId(string token)
    {
        try
        {
            var kid = new JsonWebToken(token).Kid;
            return string.IsNullOrEmpty(kid) ? null : kid;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Reads a token's issuer without validating it; null when it is not a JWT.</summary>
    public static string? ReadIssuer(string token)
    {
        try
        {
            return new JsonWebToken(token).Issuer;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static bool IsDnsName(string value) =>
        value.Length is > 0 and <= 253 && value.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.');

    // The subject system:serviceaccount:<namespace>:<name>; where the token also carries Kubernetes' own claim
    // ("kubernetes.io": namespace and serviceaccount.name), both must agree.
    private static (string Namespace, string ServiceAccount)? Subject(JsonWebToken jwt)
    {
        if (ParseUserName(jwt.Subject) is not { } parts)
        {
            return null;
        }

        if (jwt.TryGetPayloadValue<JsonElement>("kubernetes.io", out var kubernetes) && kubernetes.ValueKind == JsonValueKind.Object)
        {
            var ns = kubernetes.TryGetProperty("namespace", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            var name = kubernetes.TryGetProperty("serviceaccount", out var sa) && sa.ValueKind == JsonValueKind.Object
                && sa.TryGetProperty("name", out var nm) && nm.ValueKind == JsonValueKind.String ? nm.GetString() : null;
            if (ns != parts.Namespace || name != parts.ServiceAccount)
            {
                return null;
            }
        }

        return parts;
    }
}
