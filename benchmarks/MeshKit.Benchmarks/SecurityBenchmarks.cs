using System.Net;
using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Benchmarks;

/// <summary>
/// Per-request security work on the inbound side: evaluating a workload's AuthorizationPolicies (a DENY with paths and
/// ten ALLOW policies with principals, methods and a header condition; the matching one last), and validating a JWT.
/// </summary>
[MemoryDiagnoser]
public class SecurityBenchmarks
{
    private AuthorizationEngine _engine = null!;
    private AuthorizationRequest _request = null!;
    private JwtAuthenticator _jwt = null!;
    private DefaultHttpContext _context = null!;
    private string _token = null!;

    [GlobalSetup]
    public void Setup()
    {
        var policies = new List<AuthorizationPolicyRules>();
        var deny = new AuthorizationPolicyRules { Name = "default/deny-admin", Action = "DENY", HasRules = true };
        var denyRule = new AuthorizationRuleSpec();
        denyRule.To.Add(new AuthorizationOperationSpec { Paths = { "/admin*", "/internal/{**}" } });
        deny.Rules.Add(denyRule);
        policies.Add(deny);
        for (var i = 0; i < 10; i++)
        {
            var allow = new AuthorizationPolicyRules { Name = $"default/allow-{i}", Action = "ALLOW", HasRules = true };
            var rule = new AuthorizationRuleSpec();
            rule.From.Add(new AuthorizationSourceSpec { Principals = { $"cluster.local/ns/default/sa/caller-{i}" } });
            rule.To.Add(new AuthorizationOperationSpec { Methods = { "GET", "HEAD" }, Paths = { "/api/{*}/books" } });
            var when = new AuthorizationConditionSpec { Key = "request.headers[x-tenant]" };
            when.Values.Add("acme*");
            rule.When.Add(when);
            allow.Rules.Add(rule);
            policies.Add(allow);
        }

        _engine = AuthorizationEngine.Compile(policies);
        var headers = new HeaderDictionary { ["x-tenant"] = "acme-eu" };
        _request = new AuthorizationRequest
        {
            SourcePrincipal = "cluster.local/ns/default/sa/caller-9",
            SourceNamespace = "default",
            SourceIp = IPAddress.Parse("10.0.0.5"),
            DestinationPort = 9080,
            Host = "reviews:9080",
            Method = "GET",
            Path = "/api/v1/books",
            Headers = headers,
        };

        var key = RSA.Create(2048);
        var p = key.ExportParameters(false);
        var jwks = $$"""{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"{{Base64UrlEncoder.Encode(p.Modulus)}}","e":"{{Base64UrlEncoder.Encode(p.Exponent)}}"}]}""";
        var provider = new JwtProvider { Issuer = "https://idp.example", Jwks = jwks };
        provider.Audiences.Add("bookinfo");
        _jwt = JwtAuthenticator.Compile([provider]);
        _token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = "https://idp.example",
            Audience = "bookinfo",
            Expires = DateTime.UtcNow.AddDays(1),
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(key) { KeyId = "k1" }, SecurityAlgorithms.RsaSha256),
        });
        _context = new DefaultHttpContext();
    }

    [Benchmark]
    public bool Authorize() => _engine.Evaluate(_request).Allowed;

    [Benchmark]
    public async Task<bool> ValidateJwt()
    {
        _context.Request.Headers.Authorization = "Bearer " + _token;
        var (principal, _) = await _jwt.AuthenticateAsync(_context, DateTimeOffset.UtcNow);
        return principal is not null;
    }

    [Benchmark]
    public string NormalizePath() => PathNormalizer.Normalize("/api/./v1/../v1/books", PathNormalization.MergeSlashes);
}
