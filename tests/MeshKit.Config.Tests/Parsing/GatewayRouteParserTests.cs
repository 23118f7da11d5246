using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Tests.Parsing;

/// <summary>Gateway API's HTTPRoute attached to a Service (GEP-1426) read into the routes of the VirtualService model, with Gateway API's validation.</summary>
public class GatewayRouteParserTests
{
    private static ParseResult Parse(string yaml) => ConfigParser.Parse(yaml, "route.yaml");

    // An HTTPRoute of namespace shop attached to Service reviews's port 9080, with the spec fields given (at column 0).
    private static string Route(string spec) => $$"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: { name: reviews, namespace: shop }
        spec:
          parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
        {{string.Join("\n", spec.Split('\n').Select(line => "  " + line))}}
        """;

    private static void AssertOneError(ParseResult result, string path, string message)
    {
        var error = Assert.Single(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Error);
        Assert.Equal(path, error.Path);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    private static GatewayRouteResource Single(string yaml)
    {
        var result = Parse(yaml);
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        return Assert.IsType<GatewayRouteResource>(Assert.Single(result.Resources));
    }

    [Fact]
    public void Rules_BecomeOneRoutePerMatch_WithTheirFiltersBackendsAndTimeouts()
    {
        var route = Single(Route("""
              rules:
              - name: api
                matches:
                - path: { type: PathPrefix, value: /api/ }
                  headers: [{ name: End-User, value: jason }, { type: RegularExpression, name: x-tier, value: "gold|silver" }]
                  queryParams: [{ name: Debug, value: "1" }]
                  method: POST
                - path: { type: Exact, value: /login }
                filters:
                - type: RequestHeaderModifier
                  requestHeaderModifier: { set: [{ name: x-route, value: api }], add: [{ name: x-seen, value: "1" }], remove: [x-debug] }
                - type: URLRewrite
                  urlRewrite: { hostname: api.internal, path: { type: ReplaceFullPath, replaceFullPath: /v2 } }
                - type: RequestMirror
                  requestMirror: { backendRef: { name: shadow, port: 8080 }, fraction: { numerator: 1, denominator: 4 } }
                backendRefs:
                - { name: reviews-v1, port: 9080, weight: 90 }
                - name: reviews-v2
                  namespace: canary
                  port: 9080
                  weight: 10
                  filters: [{ type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: x-canary, value: "true" }] } }]
                - { name: reviews-v3, port: 9080, weight: 0 }
                timeouts: { request: 10s, backendRequest: 2s }
              - matches: [{ path: { type: RegularExpression, value: "/u/[0-9]+" } }]
              """));

        Assert.Equal([new ServiceParentRef("reviews", "shop", 9080, "spec.parentRefs[0]")], route.Parents);
        Assert.Equal(3, route.Rules.Count);
        var (prefix, exact, regex) = (route.Rules[0], route.Rules[1], route.Rules[2]);
        Assert.Equal((0, 0, 1), (prefix.Rule, exact.Rule, regex.Rule));

        var match = Assert.Single(prefix.Route.Match);
        Assert.Equal(new StringMatchSpec(StringMatchKind.PathPrefix, "/api/"), match.Uri);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Exact, "POST"), match.Method);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Exact, "jason"), match.Headers["end-user"]); // header names are case-insensitive
        Assert.Equal(new StringMatchSpec(StringMatchKind.Regex, "gold|silver"), match.Headers["x-tier"]);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Exact, "1"), match.QueryParams["Debug"]); // parameter names are not
        Assert.Equal(new MatchPrecedence(2, 5, 0, true, 2, 1), prefix.Precedence);
        Assert.Equal(new MatchPrecedence(0, 6, 0, false, 0, 0), exact.Precedence);
        Assert.Equal(new MatchPrecedence(1, 9, 0, false, 0, 0), regex.Precedence);
        Assert.True(exact.Precedence.CompareTo(regex.Precedence) < 0 && regex.Precedence.CompareTo(prefix.Precedence) < 0);

        // Both matches of the rule share its actions.
        foreach (var spec in new[] { prefix.Route, exact.Route })
        {
            Assert.Equal("api", spec.Name);
            Assert.Equal(["reviews-v1.shop.svc", "reviews-v2.canary.svc"], spec.Route.Select(d => d.Destination.Host)); // weight 0 takes nothing
            Assert.Equal([90, 10], spec.Route.Select(d => d.Weight ?? -1));
            Assert.Equal("true", spec.Route[1].Headers!.Response!.Set["x-canary"]);
            Assert.Equal("api", spec.Headers!.Request!.Set["x-route"]);
            Assert.Equal("1", spec.Headers.Request.Add["x-seen"]);
            Assert.Equal(["x-debug"], spec.Headers.Request.Remove);
            Assert.Equal(new RewriteSpec(null, "api.internal", "^.*$", "/v2"), spec.Rewrite);
            Assert.Equal(new MirrorSpec(new Destination("shadow.shop.svc", null, 8080), 25), Assert.Single(spec.Mirrors));
            Assert.Equal(TimeSpan.FromSeconds(10), spec.Timeout);
            Assert.Equal(TimeSpan.FromSeconds(2), spec.Retries!.PerTryTimeout);
            Assert.Equal(2, spec.Retries.Attempts);
            Assert.Empty(spec.Retries.RetryOn); // Istio's default conditions
        }

        // A rule without backends answers 500, as Gateway API requires.
        Assert.Equal(500u, regex.Route.DirectResponse!.Status);
        Assert.Empty(regex.Route.Route);
    }

    [Fact]
    public void RedirectAndPrefixRewrite_FollowGatewayApi()
    {
        var route = Single(Route("""
              rules:
              - matches: [{ path: { type: PathPrefix, value: /old } }]
                filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } } }]
              - matches: [{ path: { type: PathPrefix, value: /v1 } }]
                filters: [{ type: RequestRedirect, requestRedirect: { hostname: other.example.com, statusCode: 301 } }]
              - matches: [{ path: { type: PathPrefix, value: /api } }]
                filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
                backendRefs: [{ name: api, port: 80 }]
                retry: { attempts: 3, backoff: 100ms, codes: [503, 504] }
              """));

        var https = route.Rules[0].Route.Redirect!;
        Assert.Equal(("/new", true, "https", 443u, 302u, false), (https.Uri, https.ReplacesPrefix, https.Scheme, https.Port, https.RedirectCode, https.PortFromRequest));
        Assert.Null(route.Rules[0].Route.DirectResponse);
        var host = route.Rules[1].Route.Redirect!;
        Assert.Equal((null, "other.example.com", (uint?)null, 301u, true), (host.Uri, host.Authority, host.Port, host.RedirectCode, host.PortFromRequest));
        Assert.Equal(new RewriteSpec("/", null, null, null), route.Rules[2].Route.Rewrite);
        var retries = route.Rules[2].Route.Retries!;
        Assert.Equal((3, TimeSpan.FromMilliseconds(100)), (retries.Attempts, retries.Backoff));
        Assert.Equal(["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes", "503", "504"], retries.RetryOn);
    }

    [Fact]
    public void NoRulesOrNoMatches_TakeEveryPath()
    {
        var route = Single(Route("rules: [{ backendRefs: [{ name: reviews, port: 9080 }] }]"));
        var rule = Assert.Single(route.Rules);
        Assert.Equal(new StringMatchSpec(StringMatchKind.PathPrefix, "/"), Assert.Single(rule.Route.Match).Uri);
        Assert.Equal(new MatchPrecedence(2, 1, 0, false, 0, 0), rule.Precedence);

        var emptyMatches = Single(Route("rules: [{ matches: [], backendRefs: [{ name: reviews, port: 9080 }] }]"));
        Assert.Equal(new StringMatchSpec(StringMatchKind.PathPrefix, "/"), Assert.Single(Assert.Single(emptyMatches.Rules).Route.Match).Uri);

        var empty = Single(Route(string.Empty));
        Assert.Equal(500u, Assert.Single(empty.Rules).Route.DirectResponse!.Status);
    }

    [Fact]
    public void GatewayParentsAndHostnames_AreWarnings_TheServiceParentApplies()
    {
        var result = Parse("""
            apiVersion: gateway.networking.k8s.io/v1beta1
            kind: HTTPRoute
            metadata: { name: reviews, creationTimestamp: "2026-11-01T10:00:00Z" }
            spec:
              parentRefs: [{ name: bookinfo-gateway }, { group: "", kind: Service, name: reviews, namespace: other }]
              hostnames: [reviews.example.com]
              rules: [{ backendRefs: [{ name: reviews, port: 9080 }] }]
            """);

        Assert.False(result.HasErrors);
        Assert.Collection(result.Diagnostics,
            d => Assert.Equal(("spec.parentRefs[0]", DiagnosticSeverity.Warning), (d.Path, d.Severity)),
            d => Assert.Equal(("spec.hostnames", DiagnosticSeverity.Warning), (d.Path, d.Severity)));
        var route = Assert.IsType<GatewayRouteResource>(Assert.Single(result.Resources));
        Assert.Equal([new ServiceParentRef("reviews", "other", null, "spec.parentRefs[1]")], route.Parents);
        Assert.Equal(new DateTimeOffset(2026, 11, 1, 10, 0, 0, TimeSpan.Zero), route.CreationTimestamp);
    }

    [Theory]
    [InlineData("parentRefs: [{ kind: Service, name: reviews }]", "spec.parentRefs[0].group", "group \"\"")]
    [InlineData("parentRefs: [{ group: \"\", kind: Service, name: reviews, sectionName: HTTP }]", "spec.parentRefs[0].sectionName", "is not a port name")]
    [InlineData("parentRefs: [{ group: multicluster.x-k8s.io, kind: ServiceImport, name: reviews }]", "spec.parentRefs[0].kind", "ServiceImport parent")]
    [InlineData("parentRefs: [{ group: networking.istio.io, kind: ServiceEntry, name: httpbin, sectionName: \"http/1\" }]", "spec.parentRefs[0].sectionName", "is not a port name")]
    public void UnsupportedParents_AreErrors(string parents, string path, string message)
    {
        var result = Parse($$"""
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews }
            spec:
              {{parents}}
              rules: [{ backendRefs: [{ name: reviews, port: 9080 }] }]
            """);

        AssertOneError(result, path, message);
    }

    [Theory]
    [InlineData("- matches: [{ path: { type: Exact, value: /a } }]\n  filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /b } } }]\n  backendRefs: [{ name: a, port: 80 }]", "spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch", "exactly one match, of type PathPrefix")]
    [InlineData("- filters: [{ type: RequestRedirect, requestRedirect: { scheme: https } }]\n  backendRefs: [{ name: a, port: 80 }]", "spec.rules[0].backendRefs", "has no backendRefs")]
    [InlineData("- filters: [{ type: CORS, cors: { allowOrigins: [\"*\", \"https://a.example\"] } }]", "spec.rules[0].filters[0].cors.allowOrigins[0]", "cannot be listed with others")]
    [InlineData("- filters: [{ type: CORS, cors: { allowOrigins: [\"https://a.*.example\"] } }]", "spec.rules[0].filters[0].cors.allowOrigins[0]", "is not an origin")]
    [InlineData("- filters: [{ type: CORS, cors: { allowOrigins: [\"ftp://a.example\"] } }]", "spec.rules[0].filters[0].cors.allowOrigins[0]", "the scheme http or https")]
    [InlineData("- filters: [{ type: CORS, cors: { allowOrigins: [\"https://a.example:70000\"] } }]", "spec.rules[0].filters[0].cors.allowOrigins[0]", "is not an origin")]
    [InlineData("- filters: [{ type: CORS, cors: { allowMethods: [GET, \"*\"] } }]", "spec.rules[0].filters[0].cors.allowMethods[1]", "cannot be listed with others")]
    [InlineData("- filters: [{ type: CORS, cors: { allowMethods: [get] } }]", "spec.rules[0].filters[0].cors.allowMethods[0]", "is not one of GET")]
    [InlineData("- filters: [{ type: CORS, cors: { allowHeaders: [x-a, X-A] } }]", "spec.rules[0].filters[0].cors.allowHeaders[1]", "listed twice")]
    [InlineData("- filters: [{ type: CORS, cors: { exposeHeaders: [\"x a\"] } }]", "spec.rules[0].filters[0].cors.exposeHeaders[0]", "is not a header name")]
    [InlineData("- filters: [{ type: CORS, cors: { maxAge: 0 } }]", "spec.rules[0].filters[0].cors.maxAge", "between 1 and")]
    [InlineData("- filters: [{ type: CORS, cors: { allowOrigin: [\"*\"] } }]", "spec.rules[0].filters[0].cors.allowOrigin", "unknown field")]
    [InlineData("- filters: [{ type: ExtensionRef, extensionRef: { group: x, kind: y, name: z } }]", "spec.rules[0].filters[0].extensionRef", "another implementation")]
    [InlineData("- filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { remove: [a] } }, { type: RequestHeaderModifier, requestHeaderModifier: { remove: [b] } }]", "spec.rules[0].filters[1].type", "a second RequestHeaderModifier")]
    [InlineData("- filters: [{ type: RequestHeaderModifier, responseHeaderModifier: { remove: [a] } }]", "spec.rules[0].filters[0].responseHeaderModifier", "type RequestHeaderModifier")]
    [InlineData("- backendRefs: [{ group: networking.istio.io, kind: ServiceEntry, name: a, port: 80 }]", "spec.rules[0].backendRefs[0].kind", "kind ServiceEntry")]
    [InlineData("- backendRefs: [{ name: a }]", "spec.rules[0].backendRefs[0].port", "is required")]
    [InlineData("- backendRefs: [{ name: a, port: 80, filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: b, port: 80 } } }] }]", "spec.rules[0].backendRefs[0].filters[0].type", "a backend's filter")]
    [InlineData("- matches: [{ path: { value: //a } }]", "spec.rules[0].matches[0].path.value", "must not contain '//'")]
    [InlineData("- matches: [{ path: { type: RegularExpression, value: \"(\" } }]", "spec.rules[0].matches[0].path.value", "invalid regular expression")]
    [InlineData("- matches: [{ method: FETCH }]", "spec.rules[0].matches[0].method", "is not one of")]
    [InlineData("- timeouts: { request: 1s, backendRequest: 2s }", "spec.rules[0].timeouts.backendRequest", "not be longer than request")]
    [InlineData("- backendRefs: [{ group: networking.istio.io, kind: Hostname, name: a.example.com, namespace: x, port: 80 }]", "spec.rules[0].backendRefs[0].namespace", "has no namespace")]
    [InlineData("- sessionPersistence: { idleTimeout: 5m }", "spec.rules[0].sessionPersistence.idleTimeout", "is not supported by MeshKit")]
    [InlineData("- sessionPersistence: { cookieConfig: { lifetimeType: Permanent } }", "spec.rules[0].sessionPersistence.absoluteTimeout", "is required when cookieConfig.lifetimeType is Permanent")]
    [InlineData("- sessionPersistence: { absoluteTimeout: 1h }", "spec.rules[0].sessionPersistence.absoluteTimeout", "lifetimeType Permanent only")]
    [InlineData("- sessionPersistence: { type: Header, absoluteTimeout: 1h }", "spec.rules[0].sessionPersistence.absoluteTimeout", "type Cookie only")]
    [InlineData("- sessionPersistence: { type: Header, cookieConfig: { lifetimeType: Session } }", "spec.rules[0].sessionPersistence.cookieConfig", "is for type Cookie")]
    [InlineData("- sessionPersistence: { type: Url }", "spec.rules[0].sessionPersistence.type", "is not one of Cookie, Header")]
    [InlineData("- sessionPersistence: { sessionName: \"a b\" }", "spec.rules[0].sessionPersistence.sessionName", "is not a cookie or header name")]
    [InlineData("- retry: { codes: [200] }", "spec.rules[0].retry.codes[0]", "from 400 to 599")]
    [InlineData("- backendRefs: [{ name: a, port: 80, wieght: 1 }]", "spec.rules[0].backendRefs[0].wieght", "unknown field")]
    public void InvalidRules_AreErrorsWithTheirPath(string rules, string path, string message)
    {
        var result = Parse(Route("rules:\n" + rules));

        AssertOneError(result, path, message);
        Assert.Empty(result.Resources);
    }

    [Fact]
    public void TheCorsFilter_IsTheRulesCorsPolicy_InTheFormsBrowsersSendOrigins()
    {
        var route = Single(Route("""
            rules:
            - filters:
              - type: CORS
                cors:
                  allowOrigins: ["https://shop.example", "http://LOCALHOST:8080", "https://*.partner.example:443", "http://a.example:80", "https://*"]
                  allowMethods: ["*"]
                  allowHeaders: [x-user, "*"]
                  exposeHeaders: [x-trace]
                  allowCredentials: true
              backendRefs: [{ name: reviews, port: 9080 }]
            - filters: [{ type: CORS, cors: { allowOrigins: ["*"], maxAge: 60 } }]
              backendRefs: [{ name: reviews, port: 9080 }]
            """));

        var cors = route.Rules[0].Route.CorsPolicy!;
        Assert.Equal(
            ["Exact https://shop.example", "Exact http://localhost:8080", @"Regex https://[^/:]+\.partner\.example", "Exact http://a.example", "Regex https://[^/:]+"],
            cors.AllowOrigins.Select(o => $"{o.Kind} {o.Value}"));
        Assert.Equal(["*"], cors.AllowMethods);
        Assert.Equal(["x-user", "*"], cors.AllowHeaders);
        Assert.Equal(["x-trace"], cors.ExposeHeaders);
        Assert.Equal((TimeSpan.FromSeconds(5), true, true), (cors.MaxAge, cors.AllowCredentials, cors.EchoWildcards));

        var any = route.Rules[1].Route.CorsPolicy!;
        Assert.Equal(("Regex .*", TimeSpan.FromMinutes(1), null), ($"{any.AllowOrigins.Single().Kind} {any.AllowOrigins.Single().Value}", any.MaxAge, any.AllowCredentials));
    }

    [Fact]
    public void SessionPersistence_IsACookieOrAHeader_NamingTheEndpoint()
    {
        var route = Single(Route("""
            rules:
            - sessionPersistence: { sessionName: cart, absoluteTimeout: 10m, cookieConfig: { lifetimeType: Permanent } }
              backendRefs: [{ name: reviews, port: 9080 }]
            - sessionPersistence: {}
              backendRefs: [{ name: reviews, port: 9080 }]
            - sessionPersistence: { sessionName: X-Session, type: Header }
              backendRefs: [{ name: reviews, port: 9080 }]
            """));

        Assert.Equal(
            [
                new SessionPersistenceSpec("cart", null, "/", TimeSpan.FromMinutes(10)),
                new SessionPersistenceSpec("meshkit-session", null, "/", null),
                new SessionPersistenceSpec(null, "x-session", null, null),
            ],
            route.Rules.Select(r => r.Route.SessionPersistence));
    }

    [Fact]
    public void OfTwoHeaderMatchesOfOneName_TheFirstCounts_WithAWarning()
    {
        var result = Parse(Route("""
              rules:
              - matches: [{ headers: [{ name: x-user, value: a }, { name: X-User, value: b }] }]
                backendRefs: [{ name: a, port: 80 }]
              """));

        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(("spec.rules[0].matches[0].headers[1].name", DiagnosticSeverity.Warning), (warning.Path, warning.Severity));
        var route = Assert.IsType<GatewayRouteResource>(Assert.Single(result.Resources));
        Assert.Equal("a", Assert.Single(route.Rules[0].Route.Match[0].Headers).Value.Value);
    }

    [Fact]
    public void GrpcRoute_MethodMatchesBecomePathMatches_OrderedByServiceThenMethodLength()
    {
        var result = Parse("""
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: greeter, namespace: shop }
            spec:
              parentRefs: [{ group: "", kind: Service, name: greeter }]
              rules:
              - matches:
                - method: { service: helloworld.Greeter, method: SayHello }
                - method: { service: helloworld.Greeter }
                  headers: [{ name: X-Tier, value: gold }]
                - method: { method: SayHello }
                - method: { type: RegularExpression, service: "helloworld\\..*" }
                filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-route, value: grpc }] } }]
                backendRefs: [{ name: greeter-v2, port: 50051 }]
              - backendRefs: [{ name: greeter, port: 50051 }]
            """);

        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        var route = Assert.IsType<GatewayRouteResource>(Assert.Single(result.Resources));
        Assert.Equal("GRPCRoute", route.Kind);
        Assert.Equal(
            [
                new StringMatchSpec(StringMatchKind.Exact, "/helloworld.Greeter/SayHello"),
                new StringMatchSpec(StringMatchKind.Prefix, "/helloworld.Greeter/"),
                new StringMatchSpec(StringMatchKind.Regex, "/[^/]+/SayHello"),
                new StringMatchSpec(StringMatchKind.Regex, @"/(?:helloworld\..*)/(?:[^/]+)"),
                new StringMatchSpec(StringMatchKind.PathPrefix, "/"),
            ],
            route.Rules.Select(r => r.Route.Match[0].Uri));
        Assert.Equal("gold", route.Rules[1].Route.Match[0].Headers["x-tier"].Value);
        Assert.Equal(new MatchPrecedence(0, 18, 8, false, 0, 0), route.Rules[0].Precedence);
        Assert.True(route.Rules[0].Precedence.CompareTo(route.Rules[1].Precedence) < 0); // the method's characters count after the service's
        Assert.True(route.Rules[1].Precedence.CompareTo(route.Rules[2].Precedence) < 0);
        Assert.Equal("grpc", route.Rules[0].Route.Headers!.Request!.Set["x-route"]);
        Assert.Equal("greeter-v2.shop.svc", route.Rules[0].Route.Route[0].Destination.Host);
    }

    [Theory]
    [InlineData("- matches: [{ method: { type: Exact } }]", "spec.rules[0].matches[0].method", "names a service, a method or both")]
    [InlineData("- matches: [{ method: { service: \"hello world\" } }]", "spec.rules[0].matches[0].method.service", "not a gRPC service name")]
    [InlineData("- matches: [{ method: { method: Say.Hello } }]", "spec.rules[0].matches[0].method.method", "not a gRPC method name")]
    [InlineData("- matches: [{ method: { type: RegularExpression, method: \"(\" } }]", "spec.rules[0].matches[0].method.method", "invalid regular expression")]
    [InlineData("- filters: [{ type: URLRewrite, urlRewrite: { hostname: a } }]", "spec.rules[0].filters[0].type", "not a filter of GRPCRoute")]
    [InlineData("- timeouts: { request: 1s }", "spec.rules[0].timeouts", "unknown field")]
    public void InvalidGrpcRules_AreErrorsWithTheirPath(string rules, string path, string message)
    {
        var result = Parse($$"""
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: { name: greeter }
            spec:
              parentRefs: [{ group: "", kind: Service, name: greeter }]
              rules:
              {{rules.Replace("\n", "\n  ", StringComparison.Ordinal)}}
            """);

        AssertOneError(result, path, message);
    }

    [Fact]
    public void AServiceEntryParent_AndHostnameBackends_AsIstioExtendsGatewayApi()
    {
        var route = Single("""
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: egress, namespace: shop }
            spec:
              parentRefs: [{ group: networking.istio.io, kind: ServiceEntry, name: httpbin, port: 80 }]
              rules:
              - matches: [{ path: { value: /v2 } }]
                backendRefs: [{ group: networking.istio.io, kind: Hostname, name: Httpbin-V2.example.com, port: 80 }]
                timeouts: { request: 5s, backendRequest: 0s }
            """);

        Assert.Equal([new ServiceParentRef("httpbin", "shop", 80, "spec.parentRefs[0]") { IsServiceEntry = true }], route.Parents);
        var rule = Assert.Single(route.Rules).Route;
        Assert.Equal(new Destination("httpbin-v2.example.com", null, 80), rule.Route[0].Destination);
        Assert.Equal((TimeSpan.FromSeconds(5), (RetrySpec?)null), (rule.Timeout, rule.Retries)); // backendRequest 0s: no per-try timeout
    }
}
