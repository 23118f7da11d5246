using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Security;

/// <summary>
/// Join tokens: the bootstrap credential a workload presents for its first certificate. A token is a JWT (ES256,
/// signed by the control plane's token key) naming one identity, with an expiry and the SHA-256 pin of the mesh root,
/// so that a workload holding only the token can check it talks to the right control plane before sending it.
/// Renewals never need the token: they are authenticated by the current certificate.
/// </summary>
internal static class JoinTokens
{
    /// <summary>The token issuer.</summary>
    public const string Issuer = "meshkit-control-plane";

    /// <summary>The token audience.</summary>
    public const string Audience = "meshkit-join";

    private const string RootPinClaim = "meshkit.dev/root-sha256";
    private const int MaxTokenLength = 8 * 1024;

    /// <summary>Creates a token for <paramref name="id"/>.</summary>
    public static string Create(ECDsa key, string keyId, SpiffeId id, string rootPin, DateTimeOffset now, TimeSpan lifetime) =>
        new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = (now + lifetime).UtcDateTime,
            Claims = new Dictionary<string, object>
            {
                [JwtRegisteredClaimNames.Sub] = id.ToString(),
                [JwtRegisteredClaimNames.Jti] = Guid.NewGuid().ToString("N"),
                [RootPinClaim] = rootPin,
            },
            SigningCredentials = new SigningCredentials(Owned(key, keyId), SecurityAlgorithms.EcdsaSha256),
        });

    // The caller owns the key object and disposes it with its CA. The library's default factory caches signature
    // providers process-wide by the key's thumbprint, so a CA made again in the same process (a restart, the etcd
    // share's first replica) would be handed a provider holding the old, disposed key object. Join tokens are rare:
    // a provider per token costs nothing that matters.
    private static ECDsaSecurityKey Owned(ECDsa key, string? keyId = null) =>
        new(key) { KeyId = keyId, CryptoProviderFactory = new CryptoProviderFactory { CacheSignatureProviders = false } };

    /// <summary>
    /// Validates a token against the control plane's token keys (the algorithm is fixed to ES256) and returns the
    /// identity it grants.
    /// </summary>
    public static async Task<(SpiffeId? Id, string? Error)> ValidateAsync(string token, IEnumerable<ECDsa> keys, string trustDomain, DateTimeOffset now)
    {
        if (token.Length > MaxTokenLength)
        {
            return (null, "the join token is too large");
        }

        var parameters = new TokenValidationParameters
        {
            ValidIssuer = Issuer,
            ValidAudience = Audience,
            IssuerSigningKeys = keys.Select(k => Owned(k)).ToArray(),
            ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
            RequireExpirationTime = true,
            RequireSignedTokens = true,

            LifetimeValidator = Lifetime(now),
        };
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return (null, $"the join token is not valid: {result.Exception?.Message ?? "rejected"}");
        }

        var subject = result.Claims.TryGetValue(JwtRegisteredClaimNames.Sub, out var sub) ? sub as string : null;
        if (!SpiffeId.TryParse(subject, out var id) || id.Value.TrustDomain != trustDomain)
        {
            return (null, $"the join token's subject '{subject}' is not an identity of trust domain '{trustDomain}'");
        }

        return (id, null);
    }

    /// <summary>
    /// The lifetime check of the tokens a first certificate takes: an expiry is required, and it and the start are read
    /// against the injected clock (not the machine's), with a minute of skew either way.
    /// </summary>
    internal static LifetimeValidator Lifetime(DateTimeOffset now) => (notBefore, expires, _, _) =>
        expires is { } exp && now.UtcDateTime <= exp.AddSeconds(60) && (notBefore is not { } nbf || now.UtcDateTime >= nbf.AddSeconds(-60));

    /// <summary>
    /// Reads the root pin from a token without validating it: the workload does this before it trusts anything, to
    /// check the control plane's root. The token's signature is checked by the control plane.
    /// </summary>
    public static string? ReadRootPin(string token)
    {
        try
        {
            var jwt = new JsonWebToken(token);
            return jwt.TryGetPayloadValue<string>(RootPinClaim, out var pin) ? pin : null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Reads the identity a token names, without validating it (for messages and the announcement).</summary>
    public static SpiffeId? ReadSubject(string token)
    {
        try
        {
            return SpiffeId.TryParse(new JsonWebToken(token).Subject, out var id) ? id : null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}
