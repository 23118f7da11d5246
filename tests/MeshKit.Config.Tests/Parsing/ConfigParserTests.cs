using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Tests.Parsing;

public class ConfigParserTests
{
    private static ParseResult Parse(string yaml) => ConfigParser.Parse(yaml.Replace("\t", "  ", StringComparison.Ordinal), "test.yaml");

    private static ConfigDiagnostic SingleError(ParseResult result)
    {
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 1, "expected one error, got: " + string.Join(Environment.NewLine, result.Diagnostics));
        return errors[0];
    }

    [Fact]
    public void Parse_AKubectlList_ReadsEachItemAsAResource_AndPointsIntoIt()
    {
        // What `kubectl get virtualservices,destinationrules -o yaml` writes.
        var result = Parse("""
            apiVersion: v1
            kind: List
            metadata: { resourceVersion: "" }
            items:
            - apiVersion: networking.istio.io/v1
              kind: VirtualService
              metadata: { name: reviews, namespace: default, resourceVersion: "123", uid: 0e8b0f9c-1111-2222-3333-444455556666 }
              spec:
                hosts: [reviews]
                http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]
            - apiVersion: networking.istio.io/v1
              kind: DestinationRule
              metadata: { name: reviews, namespace: default }
              spec: { host: reviews, subsets: [{ name: v1, labels: { version: v1 } }] }
            - apiVersion: networking.istio.io/v1
              kind: DestinationRule
              metadata: { name: ratings, namespace: default }
              spec: { host: ratings, wieght: 1 }
            """);

        Assert.Equal(["DestinationRule default/reviews", "VirtualService default/reviews"], result.Resources.Select(r => r.DisplayName).Order(StringComparer.Ordinal));
        var error = SingleError(result);
        Assert.Equal("spec.wieght", error.Path);
        Assert.Equal(18, error.Line);
        Assert.Equal("DestinationRule default/ratings", error.Resource);
    }

    [Fact]
    public void Parse_AVirtualServiceForGatewaysOnly_IsIgnoredWithAWarning()
    {
        // An ingress route of an exported Istio config: it configures no sidecar in Istio, and no MeshKit workload.
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: bookinfo, namespace: default }
            spec:
              hosts: ["*"]
              gateways: [bookinfo-gateway]
              http: [{ match: [{ uri: { exact: /productpage } }], route: [{ destination: { host: productpage, port: { number: 9080 } } }] }]
            """);

        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Equal("spec.gateways", warning.Path);
        Assert.Empty(result.Resources);
    }

    [Fact]
    public void Parse_MatchBlocksForGatewaysOnly_AreSkipped_AndARuleOfOnlySuchBlocks_Too()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: vs }
            spec:
              hosts: [a]
              gateways: [mesh, gw]
              http:
              - match: [{ gateways: [gw], uri: { prefix: /a } }]
                route: [{ destination: { host: a } }]
              - match: [{ gateways: [gw], uri: { prefix: /b } }, { uri: { prefix: /c } }]
                route: [{ destination: { host: b } }]
              - route: [{ destination: { host: c } }]
            """);

        Assert.DoesNotContain(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Error);
        var http = Assert.IsType<VirtualService>(Assert.Single(result.Resources)).Http;
        Assert.Equal(["b", "c"], http.Select(r => r.Route[0].Destination.Host));
        Assert.Equal(new StringMatchSpec(StringMatchKind.Prefix, "/c"), Assert.Single(http[0].Match).Uri);
        Assert.Equal(["spec.gateways", "spec.http[0]", "spec.http[0].match[0].gateways", "spec.http[1].match[0].gateways"],
            result.Diagnostics.Select(d => d.Path).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Parse_RulesAfterACatchAll_AreReportedAsNeverUsed()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: vs }
            spec:
              hosts: [a]
              http:
              - match: [{ uri: { prefix: /a } }]
                route: [{ destination: { host: a } }]
              - route: [{ destination: { host: a } }]
              - name: late
                match: [{ uri: { prefix: /b } }]
                route: [{ destination: { host: b } }]
            """);

        // A warning, as Istio's analysis gives: the resource still applies.
        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Equal("spec.http[2]", warning.Path);
        Assert.Equal(10, warning.Line);
        Assert.Contains("'late' is never used: http[1]", warning.Message, StringComparison.Ordinal);
        Assert.Single(result.Resources);
    }

    [Theory]
    [InlineData("set", ":authority")]
    [InlineData("add", "host")]
    [InlineData("set", "Host")]
    public void Parse_AuthorityHeaderEdit_IsASetOfHost(string operation, string name)
    {
        // Istio rewrites the authority for a request's set or add of host or :authority; one Host, never two.
        var result = Parse($$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: vs }
            spec:
              hosts: [a]
              http:
              - headers: { request: { {{operation}}: { "{{name}}": edited.example, x-kept: v } } }
                route: [{ destination: { host: a } }]
            """);

        Assert.Empty(result.Diagnostics);
        var edits = Assert.IsType<VirtualService>(Assert.Single(result.Resources)).Http[0].Headers!.Request!;
        Assert.Equal("edited.example", edits.Set["Host"]);
        Assert.DoesNotContain(edits.Set.Keys.Concat(edits.Add.Keys), k => k is "host" or ":authority");
        Assert.Equal("v", operation == "set" ? edits.Set["x-kept"] : edits.Add["x-kept"]);
    }

    [Theory]
    [InlineData("networking.istio.io/v1")]
    [InlineData("networking.istio.io/v1beta1")]
    [InlineData("networking.istio.io/v1alpha3")]
    public void Parse_VirtualServiceInEveryVersion_ReadsRoutes(string apiVersion)
    {
        var result = Parse($$"""
            apiVersion: {{apiVersion}}
            kind: VirtualService
            metadata:
              name: reviews
              namespace: bookinfo
            spec:
              hosts: [reviews]
              http:
              - name: jason
                match:
                - headers:
                    end-user:
                      exact: jason
                  uri:
                    prefix: /reviews
                  method:
                    exact: GET
                route:
                - destination: { host: reviews, subset: v2 }
              - route:
                - destination: { host: reviews, subset: v1, port: { number: 9080 } }
                  weight: 80
                - destination: { host: reviews, subset: v3 }
                  weight: 20
            """);

        Assert.Empty(result.Diagnostics);
        var vs = Assert.IsType<VirtualService>(Assert.Single(result.Resources));
        Assert.Equal("bookinfo", vs.Namespace);
        Assert.Equal(["reviews"], vs.Hosts);
        Assert.Equal(2, vs.Http.Count);
        var match = Assert.Single(vs.Http[0].Match);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Exact, "jason"), match.Headers["end-user"]);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Prefix, "/reviews"), match.Uri);
        Assert.Equal(new StringMatchSpec(StringMatchKind.Exact, "GET"), match.Method);
        Assert.Equal(new Destination("reviews", "v1", 9080), vs.Http[1].Route[0].Destination);
        Assert.Equal(80, vs.Http[1].Route[0].Weight);
        Assert.Equal(20, vs.Http[1].Route[1].Weight);
    }

    [Fact]
    public void Parse_MultiDocumentFile_ReadsEveryKindAndDefaultsNamespace()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy: { loadBalancer: { simple: RANDOM } }
              subsets:
              - name: v1
                labels: { version: v1 }
                trafficPolicy: { loadBalancer: { simple: LEAST_REQUEST } }
            ---
            apiVersion: networking.istio.io/v1beta1
            kind: ServiceEntry
            metadata: { name: external }
            spec:
              hosts: [api.example.com]
              ports: [{ number: 443, name: https, protocol: HTTPS }]
              location: MESH_EXTERNAL
              resolution: STATIC
              endpoints:
              - address: 10.0.0.1
                labels: { zone: a }
                locality: us-east/zone-a
            ---
            ---
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: { name: default, namespace: istio-system }
            spec:
              mtls: { mode: STRICT }
            ---
            apiVersion: security.istio.io/v1beta1
            kind: RequestAuthentication
            metadata: { name: jwt }
            spec:
              selector: { matchLabels: { app: productpage } }
              jwtRules:
              - issuer: https://issuer.example.com
                jwksUri: https://issuer.example.com/jwks
                audiences: [bookinfo]
                fromHeaders: [{ name: authorization, prefix: "Bearer " }]
                outputClaimToHeaders: [{ header: x-sub, claim: sub }]
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: deny-admin }
            spec:
              action: DENY
              rules:
              - from: [{ source: { namespaces: [other], notPrincipals: ["cluster.local/ns/default/sa/x"] } }]
                to: [{ operation: { paths: ["/admin*"], methods: [POST] } }]
                when: [{ key: "request.headers[x-debug]", values: ["1"] }]
            ---
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              trustDomain: example.org
              outboundTrafficPolicy: { mode: REGISTRY_ONLY }
              defaultHttpRetryPolicy: { attempts: 1, perTryTimeout: 2s, retryOn: "5xx,503" }
            """);

        Assert.Empty(result.Diagnostics);
        Assert.Equal(6, result.Resources.Count);
        var dr = Assert.IsType<DestinationRule>(result.Resources[0]);
        Assert.Equal("default", dr.Namespace);
        Assert.Equal("RANDOM", dr.TrafficPolicy!.LoadBalancer);
        Assert.Equal("LEAST_REQUEST", dr.Subsets[0].TrafficPolicy!.LoadBalancer);
        var se = Assert.IsType<ServiceEntry>(result.Resources[1]);
        Assert.Equal("STATIC", se.Resolution);
        Assert.Equal("us-east/zone-a", se.Endpoints[0].Locality);
        Assert.Equal("STRICT", Assert.IsType<PeerAuthentication>(result.Resources[2]).MtlsMode);
        var ra = Assert.IsType<RequestAuthentication>(result.Resources[3]);
        Assert.Equal("Bearer ", ra.JwtRules[0].FromHeaders[0].Prefix);
        var ap = Assert.IsType<AuthorizationPolicy>(result.Resources[4]);
        Assert.Equal("DENY", ap.Action);
        Assert.Equal(["/admin*"], ap.Rules![0].To[0].Paths);
        Assert.Equal("request.headers[x-debug]", ap.Rules[0].When[0].Key);
        var mesh = Assert.IsType<MeshConfigResource>(result.Resources[5]);
        Assert.Equal("REGISTRY_ONLY", mesh.OutboundTrafficPolicy);
        Assert.Equal((1, TimeSpan.FromSeconds(2)), (mesh.DefaultHttpRetryPolicy!.Attempts, mesh.DefaultHttpRetryPolicy.PerTryTimeout));
        Assert.Equal(["5xx", "503"], mesh.DefaultHttpRetryPolicy.RetryOn);

        // Validated as a route's retries: no attempts with conditions would silently do nothing.
        var invalid = Parse("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec: { defaultHttpRetryPolicy: { attempts: 0, retryOn: 5xx } }
            """);
        Assert.Equal("spec.defaultHttpRetryPolicy.attempts", Assert.Single(invalid.Diagnostics).Path);
    }

    [Fact]
    public void Parse_MeshConfigProxyHeaders_AsIstiosDefaultConfig_TheRestOfTheSidecarsSettingsReportedAsIgnored()
    {
        var result = Parse("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              defaultConfig:
                concurrency: 2
                holdApplicationUntilProxyStarts: true
                proxyHeaders:
                  requestId: { disabled: true }
                  attemptCount: { disabled: false }
                  envoyDebugHeaders: { disabled: true }
                  forwardedClientCert: SANITIZE
                  metadataExchangeHeaders: { mode: IN_MESH }
            """);

        Assert.Equal(["spec.defaultConfig.concurrency", "spec.defaultConfig.holdApplicationUntilProxyStarts"], result.Diagnostics.Select(d => d.Path));
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        var headers = Assert.IsType<MeshConfigResource>(Assert.Single(result.Resources)).ProxyHeaders!;
        Assert.Equal((true, false, true, "SANITIZE"), (headers.RequestIdDisabled, headers.AttemptCountDisabled, headers.EnvoyDebugHeadersDisabled, headers.ForwardedClientCert));
    }

    [Theory]
    [InlineData("forwardedClientCert: FORWARD_ONLY", "spec.defaultConfig.proxyHeaders.forwardedClientCert", DiagnosticSeverity.Error, "the caller's own claim")]
    [InlineData("forwardedClientCert: ALWAYS_FORWARD_ONLY", "spec.defaultConfig.proxyHeaders.forwardedClientCert", DiagnosticSeverity.Error, "the caller's own claim")]
    [InlineData("forwardedClientCert: SOMETIMES", "spec.defaultConfig.proxyHeaders.forwardedClientCert", DiagnosticSeverity.Error, "unknown mode")]
    [InlineData("setCurrentClientCertDetails: { cert: true }", "spec.defaultConfig.proxyHeaders.setCurrentClientCertDetails", DiagnosticSeverity.Error, "By, Hash, Subject, URI and DNS")]
    [InlineData("metadataExchangeHeaders: { mode: UNDEFINED }", "spec.defaultConfig.proxyHeaders.metadataExchangeHeaders.mode", DiagnosticSeverity.Warning, "mesh workloads only")]
    [InlineData("server: { value: mine }", "spec.defaultConfig.proxyHeaders.server", DiagnosticSeverity.Warning, "AddServerHeader")]
    [InlineData("preserveHttp1HeaderCase: true", "spec.defaultConfig.proxyHeaders.preserveHttp1HeaderCase", DiagnosticSeverity.Warning, "ignored")]
    [InlineData("requestId: { disabled: maybe }", "spec.defaultConfig.proxyHeaders.requestId.disabled", DiagnosticSeverity.Error, "")]
    [InlineData("attemptCount: { off: true }", "spec.defaultConfig.proxyHeaders.attemptCount.off", DiagnosticSeverity.Error, "unknown field")]
    public void Parse_MeshConfigProxyHeaders_WhatMeshKitCannotHonour_IsReportedWithItsPath(string field, string path, DiagnosticSeverity severity, string message)
    {
        var result = Parse($$"""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              defaultConfig:
                proxyHeaders:
                  {{field}}
            """);

        var finding = Assert.Single(result.Diagnostics);
        Assert.Equal((path, severity), (finding.Path, finding.Severity));
        Assert.Contains(message, finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_MeshConfigDiscoverySelectors_AreKubernetesLabelSelectors_OredAsIstioReadsThem()
    {
        var result = Parse("""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              discoverySelectors:
              - matchLabels: { env: prod, region: us-east1 }
              - matchExpressions:
                - { key: app, operator: In, values: [cassandra, spark] }
                - { key: example.com/legacy, operator: DoesNotExist }
            """);

        Assert.Empty(result.Diagnostics);
        var selectors = Assert.IsType<MeshConfigResource>(Assert.Single(result.Resources)).DiscoverySelectors;
        bool Picked(params (string Key, string Value)[] labels) => selectors.Any(s => s.Matches(labels.ToDictionary(l => l.Key, l => l.Value)));

        Assert.True(Picked(("env", "prod"), ("region", "us-east1"), ("team", "a")));
        Assert.False(Picked(("env", "prod")));
        Assert.True(Picked(("app", "spark")));
        Assert.False(Picked(("app", "spark"), ("example.com/legacy", "")));
        Assert.False(Picked(("app", "kafka")));
        Assert.True(new LabelSelectorSpec().Matches(new Dictionary<string, string>()));
        Assert.True(new LabelSelectorSpec { MatchExpressions = [new("team", "NotIn", ["a"]), new("tier", "Exists", [])] }.Matches(new Dictionary<string, string> { ["tier"] = "web" }));
    }

    [Theory]
    [InlineData("{ matchLabels: { \"bad key!\": x } }", "spec.discoverySelectors[0].matchLabels.bad key!", "not a valid label")]
    [InlineData("{ matchLabels: { env: \"-prod\" } }", "spec.discoverySelectors[0].matchLabels.env", "not a valid label")]
    [InlineData("{ matchExpressions: [{ key: app, operator: Like, values: [a] }] }", "spec.discoverySelectors[0].matchExpressions[0].operator", "unknown operator 'Like'")]
    [InlineData("{ matchExpressions: [{ key: app, operator: In }] }", "spec.discoverySelectors[0].matchExpressions[0].values", "In needs at least one value")]
    [InlineData("{ matchExpressions: [{ key: app, operator: Exists, values: [a] }] }", "spec.discoverySelectors[0].matchExpressions[0].values", "Exists takes no values")]
    [InlineData("{ matchExpressions: [{ operator: Exists }] }", "spec.discoverySelectors[0].matchExpressions[0].key", "")]
    [InlineData("{ namespaces: [shop] }", "spec.discoverySelectors[0].namespaces", "unknown field")]
    public void Parse_MeshConfigDiscoverySelectors_AreValidatedAsTheApiServerValidatesThem(string selector, string path, string message)
    {
        var result = Parse($$"""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              discoverySelectors: [ {{selector}} ]
            """);

        var finding = Assert.Single(result.Diagnostics);
        Assert.Equal((path, DiagnosticSeverity.Error), (finding.Path, finding.Severity));
        Assert.Contains(message, finding.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ mode: ALLOW_ANY, egressProxy: { host: egress.istio-system.svc.cluster.local, subset: squid, port: { number: 3128 } } }", null, null)]
    [InlineData("{ egressProxy: { host: egress.istio-system.svc.cluster.local, port: { number: 3128 } } }", "spec.outboundTrafficPolicy.egressProxy", "only with mode ALLOW_ANY")]
    [InlineData("{ mode: REGISTRY_ONLY, egressProxy: { host: egress.istio-system.svc.cluster.local, port: { number: 3128 } } }", "spec.outboundTrafficPolicy.egressProxy", "only with mode ALLOW_ANY")]
    [InlineData("{ mode: ALLOW_ANY, egressProxy: { host: egress.istio-system.svc.cluster.local } }", "spec.outboundTrafficPolicy.egressProxy.port", "needs its port")]
    [InlineData("{ mode: ALLOW_ANY, egressProxy: { host: \"*.example.com\", port: { number: 3128 } } }", "spec.outboundTrafficPolicy.egressProxy.host", "no wildcard")]
    public void Parse_SidecarEgressProxy_AsIstioValidatesIt(string policy, string? path, string? message)
    {
        var result = Parse($$"""
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: { name: default, namespace: shop }
            spec:
              egress: [{ hosts: ["*/*"] }]
              outboundTrafficPolicy: {{policy}}
            """);

        if (path is null)
        {
            Assert.Empty(result.Diagnostics);
            Assert.Equal(new Destination("egress.istio-system.svc.cluster.local", "squid", 3128), Assert.IsType<SidecarResource>(Assert.Single(result.Resources)).EgressProxy);
            return;
        }

        var finding = Assert.Single(result.Diagnostics);
        Assert.Equal((path, DiagnosticSeverity.Error), (finding.Path, finding.Severity));
        Assert.Contains(message!, finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_AuthorizationPolicyWithoutSpec_IsDenyAllShape()
    {
        var result = Parse("""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: deny-all, namespace: foo }
            """);

        Assert.Empty(result.Diagnostics);
        var policy = Assert.IsType<AuthorizationPolicy>(Assert.Single(result.Resources));
        Assert.Equal("ALLOW", policy.Action);
        Assert.Null(policy.Rules);
    }

    [Fact]
    public void Parse_UnknownField_IsErrorWithPathAndLine()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - route:
                - destination: { host: reviews }
                  wieght: 10
            """);

        var error = SingleError(result);
        Assert.Equal("spec.http[0].route[0].wieght", error.Path);
        Assert.Equal(9, error.Line);
        Assert.Equal("unknown field", error.Message);
        Assert.Equal("VirtualService default/reviews", error.Resource);
        Assert.Empty(result.Resources);
        Assert.StartsWith("test.yaml:9:", error.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("hosts: []\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts", "at least one host")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ uri: { regex: \"(unclosed\" } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].uri.regex", "invalid regular expression")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ uri: { exact: /a, prefix: /b } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].uri", "exactly one of")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ headers: { End-User: { exact: x } } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].headers.End-User", "lower case")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a }, weight: 101 }] }]", "spec.http[0].route[0].weight", "between 0 and 100")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a }, weight: ten }] }]", "spec.http[0].route[0].weight", "whole number")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a } }, { destination: { host: b } }] }]", "spec.http[0].route", "weights are required")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ uri: { prefix: / } }] }]", "spec.http[0].route", "needs destinations, a redirect or a direct response")]
    [InlineData("hosts: [a]\n  http: [{ redirect: { uri: /x }, route: [{ destination: { host: a } }] }]", "spec.http[0]", "exclude each other")]
    [InlineData("hosts: [a]\n  http: [{ redirect: { uri: x } }]", "spec.http[0].redirect.uri", "must start with '/'")]
    [InlineData("hosts: [a]\n  http: [{ redirect: { scheme: ftp } }]", "spec.http[0].redirect.scheme", "http or https")]
    [InlineData("hosts: [a]\n  http: [{ redirect: { port: 1, derivePort: FROM_REQUEST_PORT } }]", "spec.http[0].redirect", "exclude each other")]
    [InlineData("hosts: [a]\n  http: [{ redirect: { redirectCode: 200 } }]", "spec.http[0].redirect.redirectCode", "between 300 and 399")]
    [InlineData("hosts: [a]\n  http: [{ directResponse: { status: 99 } }]", "spec.http[0].directResponse.status", "between 200 and 599")]
    [InlineData("hosts: [a]\n  http: [{ directResponse: { status: 200, body: { bytes: \"!!\" } } }]", "spec.http[0].directResponse.body.bytes", "base64")]
    [InlineData("hosts: [a]\n  http: [{ rewrite: { uri: /a, uriRegexRewrite: { match: a, rewrite: b } }, route: [{ destination: { host: a } }] }]", "spec.http[0].rewrite", "exclude each other")]
    [InlineData("hosts: [a]\n  http: [{ rewrite: { uriRegexRewrite: { match: \"(\", rewrite: b } }, route: [{ destination: { host: a } }] }]", "spec.http[0].rewrite.uriRegexRewrite.match", "invalid regular expression")]
    [InlineData("hosts: [a]\n  http: [{ rewrite: { uri: /a }, redirect: { uri: /b } }]", "spec.http[0].rewrite", "cannot be combined")]
    [InlineData("hosts: [a]\n  http: [{ headers: { request: { set: { \"bad name\": x } } }, route: [{ destination: { host: a } }] }]", "spec.http[0].headers.request.set", "not a valid header name")]
    [InlineData("hosts: [a]\n  http: [{ headers: { response: { set: { host: x } } }, route: [{ destination: { host: a } }] }]", "spec.http[0].headers.response.set", "pseudo-header or host")]
    [InlineData("hosts: [a]\n  http: [{ headers: { request: { remove: [\":path\"] } }, route: [{ destination: { host: a } }] }]", "spec.http[0].headers.request.remove", "pseudo-header or host")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a }, headers: { request: { set: { host: x, \":authority\": y } } } }] }]", "spec.http[0].route[0].headers.request.set", "authority is set twice")]
    [InlineData("hosts: [a]\n  http: [{ rewrite: { authority: x }, headers: { request: { add: { host: y } } }, route: [{ destination: { host: a } }] }]", "spec.http[0].headers.request", "authority is set twice")]
    [InlineData("hosts: [a]\n  http: [{ directResponse: { status: 200 }, fault: { abort: { httpStatus: 500, percentage: { value: 10 } } } }]", "spec.http[0].fault", "cannot be combined")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a } }], retries: { attempts: 2, perTryTimeout: 0s } }]", "spec.http[0].retries.perTryTimeout", "at least 1ms")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a } }], retries: { attempts: 2, backoff: 0s } }]", "spec.http[0].retries.backoff", "at least 1ms")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a } }], retries: { attempts: 0, retryOn: 5xx } }]", "spec.http[0].retries.attempts", "attempts are set to 0")]
    [InlineData("hosts: [a]\n  http: [{ route: [{ destination: { host: a } }], retries: { attempts: 0, perTryTimeout: 1s } }]", "spec.http[0].retries.attempts", "attempts are set to 0")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ sourceNamespace: Not_A_Namespace }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].sourceNamespace", "not a namespace name")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ queryParams: { q: { prefix: x } } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].queryParams.q.prefix", "exact or regex only")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ withoutHeaders: { X-A: {} } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].withoutHeaders.X-A", "lower case")]
    [InlineData("hosts: [Not_A_Host]\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts[0]", "not a valid host")]
    [InlineData("hosts: [\"*.*.com\"]\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts[0]", "not a valid host")]
    [InlineData("hosts: [\"*\"]\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts[0]", "cannot apply to the mesh")]
    [InlineData("hosts: [\"*.example.com\", api.example.com]\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts[1]", "repeats '*.example.com'")]
    [InlineData("hosts: [a, A]\n  http: [{ route: [{ destination: { host: a } }] }]", "spec.hosts[1]", "repeats 'a'")]
    [InlineData("hosts: [a]\n  http: [{ match: [{ headers: { \"@request.auth.claims.group\": { exact: x } } }], route: [{ destination: { host: a } }] }]", "spec.http[0].match[0].headers.@request.auth.claims.group", "gateways only")]
    [InlineData("hosts: [a]\n  http: { route: [] }", "spec.http", "must be a list")]
    public void Parse_InvalidVirtualService_ReportsPathAndReason(string spec, string path, string reason)
    {
        var result = Parse($$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: vs }
            spec:
              {{spec}}
            """);

        var error = SingleError(result);
        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
        Assert.True(error.Line >= 4, $"line {error.Line} should point into the spec");
        Assert.Empty(result.Resources);
    }

    [Theory]
    [InlineData("DestinationRule", "host: r\n  subsets: [{ name: v1 }, { name: v1 }]", "spec.subsets[1].name", "duplicate subset")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { outlierDetection: { interval: 0s } }", "spec.trafficPolicy.outlierDetection.interval", "at least 1ms")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { outlierDetection: { baseEjectionTime: 1.5ms } }", "spec.trafficPolicy.outlierDetection.baseEjectionTime", "whole milliseconds")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { connectionPool: { tcp: { connectTimeout: 0s } } }", "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "at least 1ms")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { failover: [{ from: us-east, to: us-east }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to", "its own region")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { failover: [{ from: us-east, to: \"us-*\" }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to", "without '*'")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: \"us-west/*\", to: { \"us-west/zone1\": 0, \"us-east\": 100 } }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.us-west/zone1", "between 1 and 100")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: \"us-west/*\", to: { us-west: 50, \"us-west/zone1\": 50 } }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.us-west/zone1", "overlaps 'us-west'")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: \"*/zone1\", to: { us-west: 100 } }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from", "only at the end")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { simple: FASTEST } }", "spec.trafficPolicy.loadBalancer.simple", "unknown load balancer")]
    [InlineData("DestinationRule", "subsets: []", "spec.host", "is required")]
    [InlineData("DestinationRule", "host: r\n  workloadSelector: { matchLabels: {} }", "spec.workloadSelector.matchLabels", "every workload")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  resolution: STATIC\n  ports: [{ number: 80, name: http }]\n  endpoints: [{ address: 10.0.0.1 }]\n  workloadSelector: { labels: { app: a } }", "spec.workloadSelector", "excludes endpoints")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { simple: RANDOM, consistentHash: { useSourceIp: true } } }", "spec.trafficPolicy.loadBalancer", "exclude each other")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: a, useSourceIp: true } } }", "spec.trafficPolicy.loadBalancer.consistentHash", "exactly one of")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 1000 } } } }", "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: c, ttl: forever } } } }", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl", "not a duration")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: a, httpHeaderNames: [a] } } }", "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderNames", "unknown field")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: c, ttl: 0s, attributes: [{ name: SameSite, value: \"Lax; Domain=evil\" }] } } } }", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].value", "';'")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: a/*, to: { b/*: 60 } }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "sum to 100")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { localityLbSetting: { distribute: [{ from: a, to: { b: 100 } }], failover: [{ from: a, to: b }] } } }", "spec.trafficPolicy.loadBalancer.localityLbSetting", "excludes failover")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tls: { mode: MUTUAL } }", "spec.trafficPolicy.tls", "clientCertificate")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { simple: RANDOM, warmupDurationSecs: 10s } }", "spec.trafficPolicy.loadBalancer", "ROUND_ROBIN and LEAST_REQUEST only")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { loadBalancer: { warmup: { minimumPercent: { value: 5 } } } }", "spec.trafficPolicy.loadBalancer.warmup.duration", "is required")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { outlierDetection: { consecutiveLocalOriginFailures: 3 } }", "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: MAYBE } } }", "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy", "unknown policy")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ loadBalancer: { simple: RANDOM } }] }", "spec.trafficPolicy.portLevelSettings[0].port.number", "is required")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, retryBudget: { percent: 5 } }] }", "spec.trafficPolicy.portLevelSettings[0].retryBudget", "unknown field")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, proxyProtocol: { version: V2 } }] }", "spec.trafficPolicy.portLevelSettings[0].proxyProtocol", "unknown field")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, tunnel: { targetHost: a, targetPort: 80 } }] }", "spec.trafficPolicy.portLevelSettings[0].tunnel", "unknown field")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { proxyProtocol: { version: V3 } }", "spec.trafficPolicy.proxyProtocol.version", "expected V1 or V2")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { proxyProtocol: { verison: V2 } }", "spec.trafficPolicy.proxyProtocol.verison", "unknown field")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tunnel: { protocol: GET, targetHost: a, targetPort: 80 } }", "spec.trafficPolicy.tunnel.protocol", "expected CONNECT or POST")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tunnel: { targetPort: 80 } }", "spec.trafficPolicy.tunnel.targetHost", "is required")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tunnel: { targetHost: \"not a host\", targetPort: 80 } }", "spec.trafficPolicy.tunnel.targetHost", "not a host name or an IP address")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tunnel: { targetHost: a } }", "spec.trafficPolicy.tunnel.targetPort", "is required")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { tunnel: { targetHost: a, targetPort: 0 } }", "spec.trafficPolicy.tunnel.targetPort", "between 1 and 65535")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, loadBalancer: { simple: RANDOM } }, { port: { number: 80 }, tls: { mode: DISABLE } }] }", "spec.trafficPolicy.portLevelSettings[1].port.number", "earlier entry")]
    [InlineData("DestinationRule", "host: r\n  subsets: [{ name: a, trafficPolicy: { portLevelSettings: [{ port: { number: 80 }, tls: { mode: MUTUAL } }] } }]", "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls", "clientCertificate")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  resolution: STATIC\n  ports: [{ number: 80, name: http }]", "spec.endpoints", "needs endpoints")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  resolution: STATIC\n  ports: [{ number: 80, name: http }]\n  endpoints: [{ address: e.com }]", "spec.endpoints[0].address", "IP address")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  resolution: MAGIC", "spec.resolution", "unknown resolution")]
    [InlineData("ServiceEntry", "hosts: [\"*.e.com\"]\n  resolution: DNS", "spec.resolution", "cannot resolve wildcard")]
    [InlineData("ServiceEntry", "hosts: [\"*\"]", "spec.hosts[0]", "every host")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: r } }], timeout: 500us }]", "spec.http[0].timeout", "at least 1ms")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: r } }], timeout: 0s }]", "spec.http[0].timeout", "at least 1ms")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: r } }], timeout: 1500us }]", "spec.http[0].timeout", "whole milliseconds")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: r } }], fault: { delay: { fixedDelay: 0s } } }]", "spec.http[0].fault.delay.fixedDelay", "at least 1ms")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: r } }], corsPolicy: { allowOrigins: [{ exact: \"https://a\" }], maxAge: 1500ms } }]", "spec.http[0].corsPolicy.maxAge", "whole seconds")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: \"*\" } }] }]", "spec.http[0].route[0].destination.host", "is not a destination host")]
    [InlineData("VirtualService", "hosts: [r]\n  http: [{ route: [{ destination: { host: \"*.bad_name\" } }] }]", "spec.http[0].route[0].destination.host", "not a valid host name")]
    [InlineData("ServiceEntry", "hosts: [\"*.e.com\", api.e.com]\n  resolution: DYNAMIC_DNS", "spec.hosts", "'api.e.com': DYNAMIC_DNS must be used with wildcard hosts")]
    [InlineData("ServiceEntry", "hosts: [\"*.e.com\"]\n  location: MESH_INTERNAL\n  resolution: DYNAMIC_DNS", "spec.location", "MESH_EXTERNAL entries only")]
    [InlineData("Sidecar", "egress: [{ hosts: [reviews.default.svc.cluster.local] }]", "spec.egress[0].hosts[0]", "namespace/host")]
    [InlineData("Sidecar", "egress: [{ hosts: [\"./*\"] }]\n  outboundTrafficPolicy: { mode: SOMETIMES }", "spec.outboundTrafficPolicy.mode", "unknown mode")]
    [InlineData("Sidecar", "egress: [{ hosts: [] }]", "spec.egress[0].hosts", "at least one host")]
    [InlineData("Sidecar", "egress: [{ hosts: [\"./*\"] }, { hosts: [\"istio-system/*\"], port: { number: 80 } }]", "spec.egress[0]", "must be the last one")]
    [InlineData("DestinationRule", "host: r\n  subsets: [{ name: v1, labels: { version: v1 }, trafficPolicy: {} }]", "spec.subsets[0].trafficPolicy", "at least one setting")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { portLevelSettings: [{ port: { number: 80 } }] }", "spec.trafficPolicy.portLevelSettings[0]", "besides its port")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { connectionPool: {} }", "spec.trafficPolicy.connectionPool", "tcp or http")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: UPGRADE, useClientProtocol: true } } }", "spec.trafficPolicy.connectionPool.http.useClientProtocol", "cannot be true")]
    [InlineData("DestinationRule", "host: r\n  trafficPolicy: { connectionPool: { tcp: { tcpKeepalive: { time: 0s } } } }", "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time", "at least 1ms")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  subjectAltNames: [spiffe://cluster.local/ns/a/sa/b, e.com]", "spec.subjectAltNames[1]", "not a SPIFFE ID")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 70000, name: x }]", "spec.ports[0].number", "between 1 and 65535")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: a }, { number: 80, name: b }]", "spec.ports[1].number", "already defined")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: http }]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{ address: a.e.com }, { address: b.e.com }]", "spec.endpoints", "at most one endpoint")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: http }]\n  resolution: DNS\n  endpoints: [{ address: \"not a host\" }]", "spec.endpoints[0].address", "neither an IP address nor a host name")]
    [InlineData("WorkloadEntry", "address: \"vm_1.example\"", "spec.address", "neither an IP address nor a host name")]
    [InlineData("WorkloadEntry", "address: 10.0.0.9\n  ports: { Http_Port: 8080 }", "spec.ports.Http_Port", "not a valid port name")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: a }, { number: 81, name: a }]", "spec.ports[1].name", "already defined")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: Web_Port }]", "spec.ports[0].name", "not a valid port name")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: http }]\n  endpoints: [{ address: 10.0.0.1 }]", "spec.endpoints", "resolution NONE takes no endpoints")]
    [InlineData("ServiceEntry", "hosts: [e.com]\n  ports: [{ number: 80, name: http }]\n  resolution: STATIC\n  endpoints: [{ address: 10.0.0.1, ports: { web: 8080 } }]", "spec.endpoints[0].ports.web", "not the name of a port")]
    [InlineData("PeerAuthentication", "mtls: { mode: SOMETIMES }", "spec.mtls.mode", "unknown mode")]
    [InlineData("PeerAuthentication", "portLevelMtls: { 8080: { mode: DISABLE } }", "spec.portLevelMtls", "selector")]
    [InlineData("AuthorizationPolicy", "action: CUSTOM\n  rules: [{}]", "spec.provider.name", "CUSTOM needs")]
    [InlineData("AuthorizationPolicy", "action: DENY\n  provider: { name: p }\n  rules: [{}]", "spec.provider", "CUSTOM only")]
    [InlineData("AuthorizationPolicy", "action: DENY", "spec.rules", "never applies")]
    [InlineData("AuthorizationPolicy", "action: CUSTOM\n  provider: { name: p }\n  rules: [{ from: [{ source: { principals: [cluster.local/ns/a/sa/b] } }] }]", "spec.rules[0].from[0].source.principals", "not supported with action CUSTOM")]
    [InlineData("AuthorizationPolicy", "action: CUSTOM\n  provider: { name: p }\n  rules: [{ to: [{ operation: { paths: [/a] } }] }, { from: [{ source: { notRequestPrincipals: [\"*\"] } }] }]", "spec.rules[1].from[0].source.notRequestPrincipals", "not supported with action CUSTOM")]
    [InlineData("AuthorizationPolicy", "action: CUSTOM\n  provider: { name: p }\n  rules: [{ when: [{ key: source.namespace, values: [a] }] }]", "spec.rules[0].when[0].key", "'source.namespace' is not supported with action CUSTOM")]
    [InlineData("AuthorizationPolicy", "action: CUSTOM\n  provider: { name: p }\n  rules: [{ when: [{ key: \"request.auth.claims[iss]\", values: [a] }] }]", "spec.rules[0].when[0].key", "is not supported with action CUSTOM")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [] }]", "spec.rules[0].from", "empty list")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{}] }]", "spec.rules[0].from[0].source", "is required")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: ~ }] }]", "spec.rules[0].from[0].source", "is required")]
    [InlineData("AuthorizationPolicy", "rules: [{ to: [{ operation: null }] }]", "spec.rules[0].to[0].operation", "is required")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: {} }] }]", "spec.rules[0].from[0].source", "empty source")]
    [InlineData("AuthorizationPolicy", "rules: [{ to: [{ operation: {} }] }]", "spec.rules[0].to[0].operation", "empty operation")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: { principals: [\"\"] } }] }]", "spec.rules[0].from[0].source.principals[0]", "empty value")]
    [InlineData("AuthorizationPolicy", "rules: [{ when: [{ key: source.ip, values: [nope] }] }]", "spec.rules[0].when[0].values[0]", "CIDR")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: { serviceAccounts: [productpage] } }] }]", "spec.rules[0].from[0].source.serviceAccounts[0]", "namespace/name")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: { serviceAccounts: [\"default/*\"] } }] }]", "spec.rules[0].from[0].source.serviceAccounts[0]", "no wildcards")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: { serviceAccounts: [default/a], namespaces: [default] } }] }]", "spec.rules[0].from[0].source.serviceAccounts", "cannot be used with namespaces")]
    [InlineData("AuthorizationPolicy", "rules: [{ when: [{ key: destination.port, notValues: [http] }] }]", "spec.rules[0].when[0].notValues[0]", "port number")]
    [InlineData("AuthorizationPolicy", "action: MAYBE", "spec.action", "unknown action")]
    [InlineData("AuthorizationPolicy", "rules: [{ from: [{ source: { ipBlocks: [not-an-ip] } }] }]", "spec.rules[0].from[0].source.ipBlocks[0]", "CIDR")]
    [InlineData("AuthorizationPolicy", "rules: [{ to: [{ operation: { pathz: [/a] } }] }]", "spec.rules[0].to[0].operation.pathz", "unknown field")]
    [InlineData("AuthorizationPolicy", "targetRef: { kind: Gateway, name: g }", "spec.targetRef", "gateways")]
    [InlineData("RequestAuthentication", "jwtRules: [{ issuer: i, jwksUri: not-a-uri }]", "spec.jwtRules[0].jwksUri", "absolute")]
    [InlineData("RequestAuthentication", "jwtRules: [{ jwks: \"{}\" }]", "spec.jwtRules[0].issuer", "is required")]
    [InlineData("RequestAuthentication", "jwtRules: [{ issuer: i, jwksUri: \"https://i/jwks\", timeout: 2m }]", "spec.jwtRules[0].timeout", "at most 60s")]
    [InlineData("RequestAuthentication", "jwtRules: [{ issuer: i, jwksUri: \"https://i/jwks\", timeout: 0s }]", "spec.jwtRules[0].timeout", "at least 1ms")]
    [InlineData("RequestAuthentication", "jwtRules: [{ issuer: i, jwksUri: \"https://i/jwks\", fromCookies: [\"\"] }]", "spec.jwtRules[0].fromCookies[0]", "empty value")]
    [InlineData("RequestAuthentication", "jwtRules: [{ issuer: i, jwksUri: \"https://i/jwks\", outputClaimToHeaders: [{ header: \"x y\", claim: sub }] }]", "spec.jwtRules[0].outputClaimToHeaders[0].header", "not a valid header name")]
    [InlineData("PeerAuthentication", "selector: { matchLabels: { app: \"*\" } }", "spec.selector.matchLabels.app", "wildcards are not supported")]
    [InlineData("PeerAuthentication", "selector: { matchLabels: { app: a } }\n  portLevelMtls: {}", "spec.portLevelMtls", "at least one port")]
    [InlineData("Sidecar", "workloadSelector: { labels: { version: \"v*\" } }\n  egress: [{ hosts: [\"./*\"] }]", "spec.workloadSelector.labels.version", "wildcards are not supported")]
    public void Parse_InvalidResource_ReportsPathAndReason(string kind, string spec, string path, string reason)
    {
        var group = kind is "VirtualService" or "DestinationRule" or "ServiceEntry" or "Sidecar" or "WorkloadEntry" ? "networking.istio.io/v1" : "security.istio.io/v1";
        var result = Parse($$"""
            apiVersion: {{group}}
            kind: {{kind}}
            metadata: { name: r }
            spec:
              {{spec}}
            """);

        var error = SingleError(result);
        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_ExtensionProviders_ReadsTheHttpExtAuthz_AndReportsWhatMeshKitDoesNotUse()
    {
        const string Valid = """
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              extensionProviders:
              - name: opa
                envoyExtAuthzHttp:
                  service: istio-system/opa.example.com
                  port: 8181
                  timeout: 2s
                  pathPrefix: /v1/check
                  statusOnError: "503"
                  includeHeadersInCheck: [x-legacy]
                  includeRequestHeadersInCheck: ["x-user*"]
                  includeAdditionalHeadersInCheck: { x-source: mesh }
                  includeRequestBodyInCheck: { maxRequestBytes: 1024, allowPartialMessage: true }
                  headersToUpstreamOnAllow: [x-user-id]

            """;
        var valid = Parse(Valid);
        var result = Parse(Valid + """
              - name: otel
                opentelemetry: { service: otel-collector.observability.svc.cluster.local, port: 4317 }
              - name: grpc-authz
                envoyExtAuthzGrpc: { service: authz.foo.svc.cluster.local, port: 9000, pathPrefix: /check, timeout: 0.5ms }
              - name: opa
                envoyExtAuthzHttp: { service: opa2.example.com, port: 80, statusOnError: teapot, pathPrefix: check, timeout: 0s }
            """);

        Assert.Empty(valid.Diagnostics);
        var provider = Assert.Single(Assert.IsType<MeshConfigResource>(Assert.Single(valid.Resources)).ExtensionProviders);
        Assert.Equal(("opa", "opa.example.com", 8181u, TimeSpan.FromSeconds(2), "/v1/check", 503), (provider.Name, provider.Service, provider.Port, provider.Timeout, provider.PathPrefix, provider.StatusOnError));
        Assert.Equal(["x-user*", "x-legacy"], provider.IncludeRequestHeadersInCheck);
        Assert.Equal(("mesh", 1024u, true), (provider.IncludeAdditionalHeadersInCheck["x-source"], provider.MaxRequestBytes, provider.AllowPartialMessage));
        Assert.Equal(
            [
                (DiagnosticSeverity.Warning, "spec.extensionProviders[1].opentelemetry"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[2].envoyExtAuthzGrpc.pathPrefix"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[2].envoyExtAuthzGrpc.timeout"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[3].envoyExtAuthzHttp.pathPrefix"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[3].envoyExtAuthzHttp.statusOnError"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[3].envoyExtAuthzHttp.timeout"),
                (DiagnosticSeverity.Error, "spec.extensionProviders[3].name"),
            ],
            result.Diagnostics.Select(d => (d.Severity, d.Path)).Order());
    }

    [Fact]
    public void Parse_CustomPolicy_IsRead_ButNotAsADryRun()
    {
        var result = Parse("""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: a }
            spec: { action: CUSTOM, provider: { name: opa }, rules: [{}] }
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: b, annotations: { istio.io/dry-run: "true" } }
            spec: { action: CUSTOM, provider: { name: opa }, rules: [{}] }
            """);

        Assert.Equal("opa", Assert.IsType<AuthorizationPolicy>(Assert.Single(result.Resources)).Provider);
        Assert.Contains("dry-run is not supported with action CUSTOM", SingleError(result).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_TlsOrigination_CredentialNameIsAnError_AndMutualNeedsItsFiles()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: payments }
            spec:
              host: payments.example.test
              trafficPolicy:
                tls: { mode: MUTUAL, credentialName: payments-client }
            """);

        Assert.Equal(["spec.trafficPolicy.tls", "spec.trafficPolicy.tls.credentialName"], result.Diagnostics.Select(d => d.Path).Order());
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
    }

    [Fact]
    public void Parse_TlsInSubsetsAndPortLevelSettings_IsAccepted()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: payments }
            spec:
              host: payments.example.com
              trafficPolicy:
                portLevelSettings: [{ port: { number: 443 }, tls: { mode: SIMPLE, sni: payments.example.com } }]
              subsets:
              - name: legacy
                labels: { version: legacy }
                trafficPolicy: { tls: { mode: DISABLE }, connectionPool: { http: { http2MaxRequests: 5 } } }
            """);

        Assert.Empty(result.Diagnostics);
        var rule = Assert.IsType<DestinationRule>(Assert.Single(result.Resources));
        Assert.Equal("SIMPLE", rule.TrafficPolicy!.PortLevelSettings[0].Policy.Tls!.Mode);
        Assert.Equal("DISABLE", rule.Subsets[0].TrafficPolicy!.Tls!.Mode);
    }

    [Fact]
    public void Parse_DynamicDns_IsAPassThroughForWildcardHosts_AndIgnoresEndpointsWithAWarning()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: wildcard }
            spec:
              hosts: ["*.example.com"]
              ports: [{ number: 443, name: https, protocol: TLS }]
              location: MESH_EXTERNAL
              resolution: DYNAMIC_DNS
              endpoints: [{ address: 10.0.0.1 }]
            """);

        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Equal("spec.endpoints", warning.Path);
        Assert.Contains("ignores endpoints", warning.Message, StringComparison.Ordinal);
        var entry = Assert.IsType<ServiceEntry>(Assert.Single(result.Resources));
        Assert.Equal("DYNAMIC_DNS", entry.Resolution);
        Assert.Empty(entry.Endpoints);
    }

    [Fact]
    public void Parse_KnownButUnenforcedField_IsWarningAndResourceIsKept()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                tunnel: { protocol: CONNECT, targetHost: x, targetPort: 80 }
            """);

        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Equal("spec.trafficPolicy.tunnel", warning.Path);
        Assert.Contains("TCP and TLS routes only", warning.Message, StringComparison.Ordinal);
        Assert.Equal(7, warning.Line);
        Assert.Single(result.Resources);
        Assert.False(result.HasErrors);
    }

    [Fact]
    public void Parse_ResilienceAndSecurityFields_AreValidated_AndUnusedTlsFieldsReported()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - timeout: 1.5s
                retries: { attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure,503", backoff: 100ms, retryIgnorePreviousHosts: false }
                fault:
                  delay: { fixedDelay: 7s, percentage: { value: 10 } }
                  abort: { httpStatus: 500, percentage: { value: 0.5 } }
                mirror: { host: reviews, subset: v2 }
                mirrorPercentage: { value: 25 }
                corsPolicy:
                  allowOrigins: [{ exact: "https://example.com" }, { regex: "https://.*\\.example\\.org" }]
                  allowMethods: [GET, POST]
                  maxAge: 24h
                  allowCredentials: true
                route: [{ destination: { host: reviews } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                connectionPool:
                  tcp: { maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: { time: 7200s, interval: 75s } }
                  http: { http2MaxRequests: 1000, maxRequestsPerConnection: 10, h2UpgradePolicy: UPGRADE }
                outlierDetection: { consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50 }
                tls: { mode: ISTIO_MUTUAL, sni: reviews.example }
                portLevelSettings:
                - port: { number: 9080 }
                  loadBalancer: { simple: LEAST_REQUEST }
            """);

        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        Assert.Equal(["spec.trafficPolicy.tls"], result.Diagnostics.Select(d => d.Path));
        Assert.Contains("sni, subjectAltNames", result.Diagnostics[0].Message, StringComparison.Ordinal);
        var route = ((VirtualService)result.Resources[0]).Http[0];
        Assert.Equal(TimeSpan.FromSeconds(1.5), route.Timeout);
        Assert.Equal(["5xx", "connect-failure", "503"], route.Retries!.RetryOn);
        Assert.Equal(TimeSpan.FromMilliseconds(500), route.Retries.PerTryTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(100), route.Retries.Backoff);
        Assert.False(route.Retries.RetryIgnorePreviousHosts);
        Assert.Equal(0.5, route.Fault!.Abort!.Percentage);
        Assert.Equal(TimeSpan.FromSeconds(7), route.Fault.Delay!.FixedDelay);
        Assert.Equal(25, Assert.Single(route.Mirrors).Percentage);
        Assert.Equal(TimeSpan.FromHours(24), route.CorsPolicy!.MaxAge);
        Assert.Equal(StringMatchKind.Regex, route.CorsPolicy.AllowOrigins[1].Kind);
        var policy = ((DestinationRule)result.Resources[1]).TrafficPolicy!;
        Assert.Equal(TimeSpan.FromMilliseconds(30), policy.ConnectionPool!.Tcp!.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMinutes(15), policy.OutlierDetection!.BaseEjectionTime);
        Assert.Equal("ISTIO_MUTUAL", policy.Tls!.Mode);
        Assert.Equal("LEAST_REQUEST", Assert.Single(policy.PortLevelSettings).Policy.LoadBalancer);
    }

    [Theory]
    [InlineData("timeout: soon", "spec.http[0].timeout", "not a duration")]
    [InlineData("retries: { attempts: 2, retryOn: \"5xx,sometimes\" }", "spec.http[0].retries.retryOn", "unknown retry condition 'sometimes'")]
    [InlineData("retries: { attempts: -1 }", "spec.http[0].retries.attempts", "between 0 and 1000")]
    [InlineData("fault: { abort: { httpStatus: 500, grpcStatus: UNAVAILABLE } }", "spec.http[0].fault.abort", "exactly one of httpStatus or grpcStatus")]
    [InlineData("fault: { abort: { grpcStatus: NOPE } }", "spec.http[0].fault.abort.grpcStatus", "unknown gRPC status")]
    [InlineData("fault: { abort: { http2Error: REFUSED_STREAM } }", "spec.http[0].fault.abort.http2Error", "Istio refuses it too")]
    [InlineData("fault: { delay: { fixedDelay: 1s, percentage: { value: 101 } } }", "spec.http[0].fault.delay.percentage.value", "from 0 to 100")]
    [InlineData("fault: {}", "spec.http[0].fault", "needs delay or abort")]
    [InlineData("mirrorPercentage: { value: 5 }", "spec.http[0].mirrorPercentage", "needs mirror")]
    [InlineData("corsPolicy: { unmatchedPreflights: SOMETIMES }", "spec.http[0].corsPolicy.unmatchedPreflights", "unknown value")]
    public void Parse_InvalidResilienceFields_AreErrors(string field, string path, string reason)
    {
        var result = Parse($$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: r }
            spec:
              hosts: [r]
              http:
              - {{field}}
                route: [{ destination: { host: r } }]
            """);

        var error = SingleError(result);
        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_InvalidYaml_ReportsLine()
    {
        var result = Parse("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: [unclosed\n");
        var error = SingleError(result);
        Assert.Contains("invalid YAML", error.Message, StringComparison.Ordinal);
        Assert.True(error.Line > 0);
    }

    [Fact]
    public void Parse_ATabAsIndentation_IsReportedOnItsOwnLine()
    {
        // YamlDotNet places it at the start of the mapping it interrupts (line 1 here).
        var result = ConfigParser.Parse("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: t }\nspec:\n\thosts: [a]\n", "test.yaml"); // not through Parse, which turns tabs into spaces
        var error = SingleError(result);
        Assert.Contains("tab", error.Message, StringComparison.Ordinal);
        Assert.Equal((5, 1), (error.Line, error.Column));
    }

    [Fact]
    public void Parse_UnsupportedKindOrVersion_IsError_AndIgnoredIstioKindIsWarning()
    {
        var result = Parse("""
            apiVersion: example.com/v1
            kind: Widget
            metadata: { name: w }
            ---
            apiVersion: security.istio.io/v1alpha3
            kind: PeerAuthentication
            metadata: { name: p }
            spec: {}
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: { name: g }
            spec: {}
            """);

        Assert.Collection(result.Diagnostics,
            d => Assert.Contains("unsupported kind 'Widget'", d.Message, StringComparison.Ordinal),
            d => Assert.Contains("version 'v1alpha3'", d.Message, StringComparison.Ordinal),
            d =>
            {
                Assert.Equal(DiagnosticSeverity.Warning, d.Severity);
                Assert.Contains("Gateway is not supported", d.Message, StringComparison.Ordinal);
            });
        Assert.Empty(result.Resources);
    }

    [Fact]
    public void Parse_KubernetesAndGatewayResources_AreSkippedWithWarning_AndMeshRouteOfGatewayApiIsError()
    {
        // A folder or kustomize output that holds the application's own Kubernetes resources next to its Istio YAML.
        var result = Parse("""
            apiVersion: v1
            kind: ConfigMap
            metadata: { name: reviews }
            data: { port: "9080" }
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: { name: reviews-v1 }
            spec: { replicas: 1 }
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata: { name: r }
            rules: []
            ---
            apiVersion: extensions.istio.io/v1alpha1
            kind: WasmPlugin
            metadata: { name: w }
            spec: {}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: ingress }
            spec:
              parentRefs: [{ name: bookinfo-gateway }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews } }] }]
            """);

        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        Assert.Collection(result.Diagnostics,
            d => Assert.Equal("ConfigMap (v1) is a Kubernetes resource, not mesh configuration; the document is ignored", d.Message),
            d => Assert.Contains("Deployment (apps/v1) is a Kubernetes resource", d.Message, StringComparison.Ordinal),
            d => Assert.Contains("Role (rbac.authorization.k8s.io/v1) is a Kubernetes resource", d.Message, StringComparison.Ordinal),
            d => Assert.Contains("WasmPlugin is not supported by MeshKit", d.Message, StringComparison.Ordinal),
            d => Assert.Equal("HTTPRoute configures gateways, which MeshKit has not; the document is ignored", d.Message));
        Assert.Equal("VirtualService", Assert.Single(result.Resources).Kind);

        // A route attached to a Service (GAMMA) would route the mesh's own calls: ignoring it would change routing
        // (an HTTPRoute or a GRPCRoute is read as such: GatewayRouteParserTests).
        var mesh = Parse("""
            apiVersion: gateway.networking.k8s.io/v1alpha2
            kind: TCPRoute
            metadata: { name: reviews }
            spec:
              parentRefs:
              - { name: bookinfo-gateway }
              - { group: "", kind: Service, name: reviews, port: 9080 }
              rules: [{ backendRefs: [{ name: reviews-v1, port: 9080 }] }]
            """);

        var error = Assert.Single(mesh.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Error, error.Severity);
        Assert.Equal("spec.parentRefs[1].kind", error.Path);
        Assert.Equal(7, error.Line);
        Assert.Contains("route them with a VirtualService", error.Message, StringComparison.Ordinal);
        Assert.True(mesh.HasErrors);

        // An unknown group is never skipped: it may be a misspelt Istio one.
        var typo = Parse("""
            apiVersion: networking.itsio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec: {}
            """);
        Assert.Contains("unsupported kind 'VirtualService' of apiVersion 'networking.itsio.io/v1'", Assert.Single(typo.Diagnostics).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_SeveralErrors_AreAllReported()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: Bad_Name, namespace: Bad }
            spec:
              hosts: []
              http:
              - route:
                - destination: { host: a }
                  weight: 500
                  extra: 1
            """);

        var paths = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.Path).ToList();
        Assert.Equal(["metadata.name", "metadata.namespace", "spec.hosts", "spec.http[0].route[0].weight", "spec.http[0].route[0].extra"], paths);
    }

    [Fact]
    public void Parse_IgnoreUriCase_MatchesCaseInsensitively()
    {
        var result = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: r }
            spec:
              hosts: [r]
              http:
              - match: [{ uri: { prefix: /Api }, ignoreUriCase: true }]
                route: [{ destination: { host: r } }]
            """);

        var vs = Assert.IsType<VirtualService>(Assert.Single(result.Resources));
        var uri = vs.Http[0].Match[0].Uri!;
        Assert.Equal(StringMatchKind.Regex, uri.Kind);
        var regex = Patterns.TryCompileFullMatch(uri.Value, false, out _)!;
        Assert.Matches(regex, "/API/items");
        Assert.DoesNotMatch(regex, "/other");
    }

    [Fact]
    public void Parse_NullArguments_Throw()
    {
        Assert.Throws<ArgumentNullException>(() => ConfigParser.Parse(null!, "f"));
        Assert.Throws<ArgumentNullException>(() => ConfigParser.Parse("", null!));
    }
}
