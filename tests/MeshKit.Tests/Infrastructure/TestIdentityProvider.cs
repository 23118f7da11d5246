using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Tests.Infrastructure;

/// <summary>An OIDC-style token issuer for tests: an RSA key, its JWKS, and signed tokens.</summary>
public sealed class TestIdentityProvider : IDisposable
{
    public const string Issuer = "https://idp.example";

    public RSA Key { get; } = RSA.Create(2048);

    public void Dispose() => Key.Dispose();

    public string Jwks(string kid = "k1")
    {
        var p = Key.ExportParameters(false);
        return $$"""{"keys":[{"kty":"RSA","kid":"{{kid}}","use":"sig","alg":"RS256","n":"{{Base64UrlEncoder.Encode(p.Modulus)}}","e":"{{Base64UrlEncoder.Encode(p.Exponent)}}"}]}""";
    }

    public string Token(DateTimeOffset now, string issuer = Issuer, string audience = "bookinfo", string kid = "k1", DateTimeOffset? notBefore = null, string? padding = null, string subject = "alice")
    {
        var claims = new Dictionary<string, object> { ["sub"] = subject };
        if (padding is not null)
        {
            claims["padding"] = padding;
        }

        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = (notBefore ?? now.AddMinutes(-1)).UtcDateTime,
            Expires = now.AddHours(1).UtcDateTime,
            Claims = claims,
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(Key) { KeyId = kid }, SecurityAlgorithms.RsaSha256),
        });
    }
}
