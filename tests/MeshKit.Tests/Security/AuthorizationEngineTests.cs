using System.Net;
using System.Text.Json;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Security;

/// <summary>AuthorizationPolicy semantics, field by field, on the compiled engine.</summary>
public sealed class AuthorizationEngineTests
{
    private static AuthorizationRequest Request(
        string path = "/",
        string method = "GET",
        string? principal = "cluster.local/ns/default/sa/productpage",
        string? ns = "default",
        string ip = "10.0.0.5",
        int port = 9080,
        string host = "reviews:9080",
        RequestPrincipal? jwt = null,
        Dictionary<string, string>? headers = null)
    {
        var h = new HeaderDictionary();
        foreach (var (k, v) in headers ?? [])
        {
            h[k] = v;
        }

        return new AuthorizationRequest
        {
            Path = path, Method = method, SourcePrincipal = principal, SourceNamespace = ns, SourceIp = IPAddress.Parse(ip),
            DestinationIp = IPAddress.Parse("10.0.0.9"), DestinationPort = port, Host = host, Jwt = jwt, Headers = h, Sni = "reviews.default",
        };
    }

    private static AuthorizationPolicyRules Policy(string action, params AuthorizationRuleSpec[] rules)
    {
        var policy = new AuthorizationPolicyRules { Name = "default/" + action.ToLowerInvariant(), Action = action, HasRules = true };
        policy.Rules.AddRange(rules);
        return policy;
    }

    private static AuthorizationRuleSpec Rule(AuthorizationSourceSpec? from = null, AuthorizationOperationSpec? to = null, params AuthorizationConditionSpec[] when)
    {
        var rule = new AuthorizationRuleSpec();
        if (from is not null)
        {
            rule.From.Add(from);
        }

        if (to is not null)
        {
            rule.To.Add(to);
        }

        rule.When.AddRange(when);
        return rule;
    }

    private static AuthorizationConditionSpec When(string key, string[]? values = null, string[]? notValues = null)
    {
        var c = new AuthorizationConditionSpec { Key = key };
        c.Values.AddRange(values ?? []);
        c.NotValues.AddRange(notValues ?? []);
        return c;
    }

    private static bool Allowed(AuthorizationRequest request, params AuthorizationPolicyRules[] policies) =>
        AuthorizationEngine.Compile(policies).Evaluate(request).Allowed;

    private static RequestPrincipal Jwt(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement.Clone();
        return new RequestPrincipal(root.GetProperty("iss").GetString()!, root.GetProperty("sub").GetString()!, root.TryGetProperty("aud", out var aud) ? [aud.GetString()!] : [], root.TryGetProperty("azp", out var azp) ? azp.GetString() : null, root);
    }

    [Fact]
    public void NoPolicy_Allows()
    {
        Assert.True(Allowed(Request()));
    }

    [Fact]
    public void AnAllowPolicyWithoutRules_DeniesAll_AndAnEmptyRule_AllowsAll()
    {
        var denyAll = new AuthorizationPolicyRules { Name = "foo/deny-all", Action = "ALLOW", HasRules = false };
        var allowAll = Policy("ALLOW", new AuthorizationRuleSpec());

        Assert.False(Allowed(Request(), denyAll));
        Assert.True(Allowed(Request(), allowAll));
        Assert.True(Allowed(Request(), denyAll, allowAll));
    }

    [Fact]
    public void Deny_WinsOverAllow_AndAllowPoliciesThatDoNotMatch_Deny()
    {
        var allowGet = Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Methods = { "GET" } }));
        var denyAdmin = Policy("DENY", Rule(to: new AuthorizationOperationSpec { Paths = { "/admin*" } }));

        Assert.True(Allowed(Request("/books"), allowGet, denyAdmin));
        Assert.False(Allowed(Request("/admin/users"), allowGet, denyAdmin));
        Assert.False(Allowed(Request("/books", method: "POST"), allowGet, denyAdmin));
        Assert.False(Allowed(Request("/books", method: "POST"), allowGet));
        Assert.True(Allowed(Request("/books", method: "POST"), denyAdmin));
    }

    [Fact]
    public void AuditAndDryRun_NeverChangeTheOutcome_ButAreReported()
    {
        var audit = Policy("AUDIT", new AuthorizationRuleSpec());
        var dryDeny = Policy("DENY", new AuthorizationRuleSpec());
        dryDeny.DryRun = true;
        var reported = new List<string>();

        var decision = AuthorizationEngine.Compile([audit, dryDeny]).Evaluate(Request(), p => reported.Add($"{p.Action}:{p.DryRun}"));

        Assert.True(decision.Allowed);
        Assert.Equal(["AUDIT:False", "DENY:True"], reported);
    }

    [Theory]
    [InlineData("cluster.local/ns/default/sa/productpage", true)]
    [InlineData("cluster.local/ns/default/*", true)]
    [InlineData("*/sa/productpage", true)]
    [InlineData("*", true)]
    [InlineData("cluster.local/ns/default/sa/other", false)]
    public void Principals_UseIstioStringMatching(string pattern, bool matches)
    {
        var policy = Policy("ALLOW", Rule(new AuthorizationSourceSpec { Principals = { pattern } }));

        Assert.Equal(matches, Allowed(Request(), policy));
    }

    [Fact]
    public void Principals_NeverMatchAPlainTextRequest_AndNotPrincipalsStarDeniesIt()
    {
        var allow = Policy("ALLOW", Rule(new AuthorizationSourceSpec { Principals = { "*" } }));
        var denyPlain = Policy("DENY", Rule(new AuthorizationSourceSpec { NotPrincipals = { "*" } }));

        Assert.False(Allowed(Request(principal: null, ns: null), allow));
        Assert.False(Allowed(Request(principal: null, ns: null), denyPlain));
        Assert.True(Allowed(Request(), denyPlain));
    }

    [Fact]
    public void ServiceAccounts_MatchNamespaceSlashName_Exactly_AndNeverAPlainTextRequest()
    {
        // Istio 1.25's serviceAccounts: "namespace/name" whatever the trust domain; a dot is a dot.
        var allow = Policy("ALLOW", Rule(new AuthorizationSourceSpec { ServiceAccounts = { "default/cert-manager.io" } }));
        Assert.True(Allowed(With(Request(principal: "other.domain/ns/default/sa/cert-manager.io"), "default/cert-manager.io"), allow));
        Assert.False(Allowed(With(Request(), "default/cert-manager-io"), allow));
        Assert.False(Allowed(With(Request(principal: null, ns: null), null), allow));
        Assert.False(Allowed(With(Request(), "default/productpage"), Policy("ALLOW", Rule(new AuthorizationSourceSpec { NotServiceAccounts = { "default/productpage" } }))));
        Assert.True(Allowed(With(Request(), "default/productpage"), Policy("ALLOW", Rule(when: When("source.serviceAccount", ["default/productpage"])))));
        Assert.False(Allowed(With(Request(), "default/productpage"), Policy("ALLOW", Rule(when: When("source.serviceAccount", notValues: ["default/*"])))));

        static AuthorizationRequest With(AuthorizationRequest request, string? account)
        {
            request.SourceServiceAccount = account;
            return request;
        }
    }

    [Fact]
    public void SourceFields_NamespacesAndIpBlocks_WithTheirNotForms()
    {
        Assert.True(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { Namespaces = { "default" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { NotNamespaces = { "default" } }))));
        Assert.True(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { IpBlocks = { "10.0.0.0/24" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { IpBlocks = { "10.0.1.0/24" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { IpBlocks = { "10.0.0.0/8" }, NotIpBlocks = { "10.0.0.5" } }))));
        Assert.True(Allowed(Request(ip: "::ffff:10.0.0.5"), Policy("ALLOW", Rule(new AuthorizationSourceSpec { RemoteIpBlocks = { "10.0.0.5" } }))));
        Assert.True(Allowed(Request(jwt: Jwt("""{"iss":"https://idp","sub":"alice"}""")), Policy("ALLOW", Rule(new AuthorizationSourceSpec { RequestPrincipals = { "https://idp/*" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(new AuthorizationSourceSpec { RequestPrincipals = { "*" } }))));
        Assert.False(Allowed(Request(jwt: Jwt("""{"iss":"https://idp","sub":"alice"}""")), Policy("ALLOW", Rule(new AuthorizationSourceSpec { NotRequestPrincipals = { "*/alice" } }))));
    }

    [Fact]
    public void RemoteFields_ReadTheAddressTrustedProxiesAppended_SourceFieldsThePeers()
    {
        var remote = Policy("ALLOW", Rule(new AuthorizationSourceSpec { RemoteIpBlocks = { "203.0.113.0/24" } }));
        var remoteCondition = Policy("ALLOW", Rule(null, null, When("remote.ip", ["203.0.113.7"])));
        var source = Policy("ALLOW", Rule(new AuthorizationSourceSpec { IpBlocks = { "203.0.113.0/24" } }));
        var sourceCondition = Policy("ALLOW", Rule(null, null, When("source.ip", ["203.0.113.7"])));
        var peer = Policy("ALLOW", Rule(new AuthorizationSourceSpec { RemoteIpBlocks = { "10.0.0.5" } }));

        AuthorizationRequest Via(int trustedProxies, string forwardedFor)
        {
            var request = Request(headers: new() { ["X-Forwarded-For"] = forwardedFor });
            request.TrustedProxies = trustedProxies;
            return request;
        }

        Assert.True(Allowed(Via(1, "198.51.100.1, 203.0.113.7"), remote));
        Assert.True(Allowed(Via(1, "198.51.100.1, 203.0.113.7"), remoteCondition));
        Assert.False(Allowed(Via(1, "198.51.100.1, 203.0.113.7"), source)); // the peer is 10.0.0.5
        Assert.False(Allowed(Via(1, "198.51.100.1, 203.0.113.7"), sourceCondition));
        Assert.False(Allowed(Via(1, "203.0.113.7, 198.51.100.1"), remote)); // the client's own entry is left of the proxy's
        Assert.True(Allowed(Via(2, "203.0.113.7, 198.51.100.1"), remote));
        Assert.False(Allowed(Via(0, "198.51.100.1, 203.0.113.7"), remote)); // no proxy trusted: the peer's address
        Assert.True(Allowed(Via(0, "198.51.100.1, 203.0.113.7"), peer));
        Assert.True(Allowed(Via(3, "198.51.100.1, 203.0.113.7"), peer)); // fewer entries than trusted proxies: the peer's
        Assert.True(Allowed(Via(1, "203.0.113.7, garbage"), peer)); // the trusted entry is not an address: the peer's
    }

    [Fact]
    public void OperationFields_HostsPortsMethodsPaths_WithTheirNotForms()
    {
        Assert.True(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Hosts = { "REVIEWS" } }))));
        Assert.True(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Hosts = { "reviews:9080" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { NotHosts = { "*views" } }))));
        Assert.True(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Ports = { "9080" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { NotPorts = { "9080" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Methods = { "get" } }))));
        Assert.False(Allowed(Request(), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { NotMethods = { "GET" } }))));
        Assert.True(Allowed(Request("/api/v1/books"), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Paths = { "*/books" } }))));
        Assert.False(Allowed(Request("/api/v1/books"), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { NotPaths = { "/api/*" } }))));
    }

    [Theory]
    [InlineData("/api/{*}/books", "/api/v1/books", true)]
    [InlineData("/api/{*}/books", "/api/v1/v2/books", false)]
    [InlineData("/api/{*}/books", "/api//books", false)]
    [InlineData("/api/{**}", "/api/v1/books/7", true)]
    [InlineData("/api/{**}", "/api", false)]
    [InlineData("/api/{*}", "/api/v1", true)]
    [InlineData("/api/{*}", "/api/v1/x", false)]
    public void PathTemplates(string template, string path, bool matches)
    {
        Assert.Equal(matches, Allowed(Request(path), Policy("ALLOW", Rule(to: new AuthorizationOperationSpec { Paths = { template } }))));
    }

    [Fact]
    public void Conditions_EveryKey()
    {
        var jwt = Jwt("""{"iss":"https://idp","sub":"alice","aud":"bookinfo","azp":"web","groups":["admins","dev"],"org":{"team":"books"}}""");
        var request = Request(jwt: jwt, headers: new() { ["x-version"] = "v2" });
        (string Key, string Value, bool Matches)[] cases =
        [
            ("request.headers[x-version]", "v2", true),
            ("request.headers[x-version]", "v*", true),
            ("request.headers[x-missing]", "*", false),
            ("source.ip", "10.0.0.0/16", true),
            ("remote.ip", "192.168.0.1", false),
            ("source.namespace", "default", true),
            ("source.principal", "cluster.local/ns/default/sa/productpage", true),
            ("request.auth.principal", "https://idp/alice", true),
            ("request.auth.audiences", "bookinfo", true),
            ("request.auth.presenter", "web", true),
            ("request.auth.claims[groups]", "admins", true),
            ("request.auth.claims[groups]", "ops", false),
            ("request.auth.claims[org][team]", "books", true),
            ("destination.ip", "10.0.0.9", true),
            ("destination.port", "9080", true),
            ("connection.sni", "reviews.*", true),
        ];

        foreach (var (key, value, matches) in cases)
        {
            Assert.True(matches == Allowed(request, Policy("ALLOW", Rule(when: When(key, [value])))), $"{key} = {value}");
            Assert.True(matches != Allowed(request, Policy("ALLOW", Rule(when: When(key, notValues: [value])))), $"{key} not {value}");
        }
    }

    [Fact]
    public void ARule_NeedsFromToAndWhen_AllToMatch_AndAnyOfItsSources()
    {
        var rule = Rule(new AuthorizationSourceSpec { Namespaces = { "other" } }, new AuthorizationOperationSpec { Methods = { "GET" } });
        rule.From.Add(new AuthorizationSourceSpec { Namespaces = { "default" } });
        var policy = Policy("ALLOW", rule);

        Assert.True(Allowed(Request(), policy));
        Assert.False(Allowed(Request(method: "PUT"), policy));
        Assert.False(Allowed(Request(ns: "third"), policy));
    }

    [Fact]
    public void ARuleOnMethodAndPath_MakesNoHostOrPortTextPerRequest()
    {
        var to = new AuthorizationOperationSpec();
        to.Methods.Add("GET");
        to.Paths.Add("/reviews/*");
        var engine = AuthorizationEngine.Compile([Policy("ALLOW", Rule(to: to))]);
        var request = Request(path: "/reviews/1");
        Assert.True(engine.Evaluate(request).Allowed);

        // A new request: nothing of it is cached yet, so a port or host text made for it would show as allocation.
        var fresh = Request(path: "/reviews/2");
        var before = GC.GetAllocatedBytesForCurrentThread();
        var allowed = engine.Evaluate(fresh).Allowed;
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allowed);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void Custom_MatchesFirst_AndOneWorkloadAsksOneProvider()
    {
        var admin = new AuthorizationRuleSpec();
        admin.To.Add(new AuthorizationOperationSpec { Paths = { "/admin*" } });
        var custom = Policy("CUSTOM", admin);
        custom.Provider = "opa";
        custom.ExtAuthz = new ExtAuthzProvider { Name = "opa", Service = "opa.example.com", Port = 8181, PathPrefix = "/check", HeadersToUpstreamOnAllow = { "x-user*" } };
        var engine = AuthorizationEngine.Compile([custom, Policy("DENY")]);

        Assert.True(engine.HasCustom);
        var matched = engine.MatchCustom(Request("/admin/users"));
        Assert.NotNull(matched);
        Assert.Null(engine.MatchCustom(Request("/public")));
        Assert.Equal("http://opa.example.com:8181/check", matched.ExtAuthz!.BaseUrl);
        Assert.Equal((TimeSpan.FromSeconds(600), 403), (matched.ExtAuthz.Timeout, matched.ExtAuthz.StatusOnError));
        Assert.True(matched.ExtAuthz.ToUpstreamOnAllow("X-User-Id"));
        Assert.False(matched.ExtAuthz.ToUpstreamOnAllow("x-admin"));

        var other = Policy("CUSTOM", admin);
        other.Name = "default/other";
        other.Provider = "another";
        var conflicting = AuthorizationEngine.Compile([custom, other]).MatchCustom(Request("/admin/users"));
        Assert.Null(conflicting!.ExtAuthz);
        Assert.Contains("name 2 providers (opa, another)", conflicting.Unenforceable, StringComparison.Ordinal);
    }
}
