using System.Text;
using System.Text.Json;
using MeshKit.Protocol.V1;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Security;

/// <summary>The identity a valid JWT gave a request: Istio's request principal <c>iss/sub</c> and the token's claims.</summary>
internal sealed class RequestPrincipal
{
    private readonly JsonElement _payload;

    public RequestPrincipal(string issuer, string subject, IReadOnlyList<string> audiences, string? presenter, JsonElement payload)
    {
        Issuer = issuer;
        Subject = subject;
        Audiences = audiences;
        Presenter = presenter;
        _payload = payload;
    }

    public string Issuer { get; }

    public string Subject { get; }

    /// <summary>Gets <c>iss/sub</c>, what <c>requestPrincipals</c> match.</summary>
    public string Principal => $"{Issuer}/{Subject}";

    public IReadOnlyList<string> Audiences { get; }

    /// <summary>Gets the <c>azp</c> claim.</summary>
    public string? Presenter { get; }

    /// <summary>Gets the token's payload.</summary>
    public JsonElement Payload => _payload;

    /// <summary>The values of a (nested) claim: a string, each string of a list, or nothing.</summary>
    public IEnumerable<string?> Claim(IReadOnlyList<string> path)
    {
        var current = _payload;
        foreach (var name in path)
        {
            if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(name, out current))
            {
                return [null];
            }
        }

        return current.ValueKind switch
        {
            JsonValueKind.String => [current.GetString()],
            JsonValueKind.Array => current.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString() : e.GetRawText()).ToArray(),
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => [current.GetRawText()],
            _ => [null],
        };
    }
}

/// <summary>
/// RequestAuthentication, compiled once per config version: finds a JWT where the rules say (headers, query
/// parameters, cookies; by default <c>Authorization: Bearer</c> and the <c>access_token</c> query parameter), picks the provider by its issuer and
/// validates it with Microsoft.IdentityModel against the provider's keys: signature with an asymmetric algorithm fixed
/// by the key (no <c>none</c>, no HMAC, so no RS/HS confusion), issuer, audiences, expiry and not-before with 60 s of
/// skew, and a size limit. A request with no token goes on unauthenticated; one with an invalid token is refused.
/// </summary>
internal sealed class JwtAuthenticator
{
    /// <summary>Tokens larger than this are refused without parsing.</summary>
    public const int MaxTokenBytes = 16 * 1024;

    private static readonly TimeSpan Skew = TimeSpan.FromSeconds(60);
    private static readonly string[] Algorithms =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
        SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512,
    ];

    private readonly Provider[] _providers;
    private readonly (string Header, string Prefix)[] _headers;
    private readonly string[] _params;
    private readonly string[] _cookies;
    private readonly string[] _outputHeaders;

    private JwtAuthenticator(Provider[] providers)
    {
        _providers = providers;
        _headers = [.. providers.SelectMany(p => p.Headers).Distinct()];
        _params = [.. providers.SelectMany(p => p.Params).Distinct(StringComparer.Ordinal)];
        _cookies = [.. providers.SelectMany(p => p.Cookies).Distinct(StringComparer.Ordinal)];
        _outputHeaders = [.. providers.SelectMany(p => p.OutputHeaders).Distinct(StringComparer.OrdinalIgnoreCase)];
    }

    public static JwtAuthenticator None { get; } = new([]);

    public bool IsEmpty => _providers.Length == 0;

    /// <summary>Gets each issuer with how many signing keys it has (null: they were never fetched, so its tokens are refused), for diagnostics.</summary>
    public IEnumerable<(string Issuer, int? Keys)> Issuers => _providers.Select(p => (p.Issuer, p.Keys?.Length));

    public static JwtAuthenticator Compile(IEnumerable<JwtProvider> providers) => new([.. providers.Select(p => new Provider(p))]);

    /// <summary>Authenticates the request's token, if it has one; on success applies the provider's header outputs.</summary>
    public async ValueTask<(RequestPrincipal? Principal, string? Error)> AuthenticateAsync(HttpContext context, DateTimeOffset now)
    {
        var headers = context.Request.Headers;

        // What a provider writes, a client must not be able to send.
        foreach (var header in _outputHeaders)
        {
            headers.Remove(header);
        }

        if (!TryFindToken(context.Request, out var token, out var location))
        {
            return (null, null);
        }

        if (Encoding.UTF8.GetByteCount(token) > MaxTokenBytes)
        {
            return (null, "Jwt is too large");
        }

        string? issuer;
        try
        {
            issuer = new JsonWebToken(token).Issuer;
        }
        catch (ArgumentException)
        {
            return (null, "Jwt is not in the form of Header.Payload.Signature");
        }

        var provider = Array.Find(_providers, p => string.Equals(p.Issuer, issuer, StringComparison.Ordinal));
        if (provider is null)
        {
            return (null, "Jwt issuer is not configured");
        }

        if (provider.Keys is null)
        {
            return (null, "Jwks remote fetch failed: the issuer's keys are unavailable");
        }

        var result = await provider.Handler.ValidateTokenAsync(token, provider.Parameters(now)).ConfigureAwait(false);
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt)
        {
            return (null, "Jwt verification fails");
        }

        using var payloadDocument = JsonDocument.Parse(Base64UrlEncoder.Decode(jwt.EncodedPayload));
        var payload = payloadDocument.RootElement.Clone();
        var principal = new RequestPrincipal(
            jwt.Issuer,
            jwt.Subject ?? string.Empty,
            [.. jwt.Audiences],
            jwt.TryGetPayloadValue<string>("azp", out var azp) ? azp : null,
            payload);

        if (!provider.ForwardOriginalToken)
        {
            if (location.Header is { } name)
            {
                headers.Remove(name);
            }
        }

        if (provider.PayloadHeader.Length > 0)
        {
            headers[provider.PayloadHeader] = jwt.EncodedPayload;
        }

        foreach (var (header, claim) in provider.ClaimHeaders)
        {
            var values = principal.Claim(claim.Split('.')).OfType<string>().ToArray();
            if (values.Length > 0)
            {
                headers[header] = string.Join(',', values);
            }
        }

        return (principal, null);
    }

    private bool TryFindToken(HttpRequest request, out string token, out (string? Header, string? Param) location)
    {
        foreach (var (header, prefix) in _headers)
        {
            if (request.Headers.TryGetValue(header, out var values) && values.ToString() is { Length: > 0 } value)
            {
                if (prefix.Length == 0 || value.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                {
                    token = value[prefix.Length..].Trim();
                    location = (header, null);
                    return token.Length > 0;
                }
            }
        }

        foreach (var name in _params)
        {
            if (request.Query.TryGetValue(name, out var values) && values.ToString() is { Length: > 0 } value)
            {
                token = value;
                location = (null, name);
                return true;
            }
        }

        foreach (var name in _cookies)
        {
            if (request.Cookies.TryGetValue(name, out var value) && value is { Length: > 0 })
            {
                token = value;
                location = (null, null);
                return true;
            }
        }

        token = string.Empty;
        location = default;
        return false;
    }

    private sealed class Provider
    {
        public Provider(JwtProvider provider)
        {
            Issuer = provider.Issuer;
            Audiences = [.. provider.Audiences];
            ForwardOriginalToken = provider.ForwardOriginalToken;
            PayloadHeader = provider.OutputPayloadToHeader;
            ClaimHeaders = [.. provider.OutputClaimToHeaders.Select(c => (c.Header, c.Claim))];
            // Istio's default locations apply only when the rule names none.
            var named = provider.FromHeaders.Count > 0 || provider.FromParams.Count > 0 || provider.FromCookies.Count > 0;
            Headers = named ? [.. provider.FromHeaders.Select(h => (h.Name, h.Prefix))] : [("Authorization", "Bearer ")];
            Params = named ? [.. provider.FromParams] : ["access_token"];
            Cookies = [.. provider.FromCookies];
            if (!provider.KeysUnavailable)
            {
                try
                {
                    // Only asymmetric keys: a shared secret in a key set would let anyone who read it sign tokens.
                    var set = new JsonWebKeySet(provider.Jwks);
                    Keys = [.. set.GetSigningKeys().Where(k => k is RsaSecurityKey or ECDsaSecurityKey or JsonWebKey { Kty: "RSA" or "EC" })];
                }
                catch (ArgumentException ex)
                {
                    throw new MeshConfigException($"RequestAuthentication issuer '{Issuer}': the JWKS is not valid: {ex.Message}");
                }
            }
        }

        public string Issuer { get; }

        public string[] Audiences { get; }

        public SecurityKey[]? Keys { get; }

        public bool ForwardOriginalToken { get; }

        public string PayloadHeader { get; }

        public (string Header, string Claim)[] ClaimHeaders { get; }

        public (string Header, string Prefix)[] Headers { get; }

        public string[] Params { get; }

        public string[] Cookies { get; }

        public IEnumerable<string> OutputHeaders => ClaimHeaders.Select(c => c.Header).Concat(PayloadHeader.Length > 0 ? [PayloadHeader] : []);

        public JsonWebTokenHandler Handler { get; } = new() { MaximumTokenSizeInBytes = MaxTokenBytes };

        public TokenValidationParameters Parameters(DateTimeOffset now) => new()
        {
            ValidIssuer = Issuer,
            ValidateAudience = Audiences.Length > 0,
            ValidAudiences = Audiences,
            IssuerSigningKeys = Keys,
            ValidAlgorithms = Algorithms,
            RequireSignedTokens = true,
            RequireExpirationTime = false,
            TryAllIssuerSigningKeys = false,
            LifetimeValidator = (notBefore, expires, _, _) =>
                (expires is not { } exp || now.UtcDateTime <= exp + Skew) && (notBefore is not { } nbf || now.UtcDateTime >= nbf - Skew),
        };
    }
}
