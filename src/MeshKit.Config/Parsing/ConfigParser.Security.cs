using System.Text.RegularExpressions;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// PeerAuthentication, RequestAuthentication and AuthorizationPolicy (security.istio.io).
public static partial class ConfigParser
{
    // Security kinds fail closed: a field MeshKit would not enforce is an error, never a warning.
    private static WorkloadSelector? ReadSelector(MapReader s)
    {
        s.NotSupported("targetRef", DiagnosticSeverity.Error, "targetRef applies to gateways and waypoints, which MeshKit has not");
        s.NotSupported("targetRefs", DiagnosticSeverity.Error, "targetRefs apply to gateways and waypoints, which MeshKit has not");
        s.Anchor("selector");
        return s.Map("selector", r => new WorkloadSelector(SelectorLabels(r, "matchLabels")));
    }

    private static PeerAuthentication ReadPeerAuthentication(MapReader s, Header h)
    {
        var selector = ReadSelector(s);
        var mode = s.Map("mtls", m => new BoxedString(ReadMtlsMode(m)))?.Value;
        var portLevel = new Dictionary<uint, string>();
        if (s.Get("portLevelMtls") is YamlMappingNode ports)
        {
            if (ports.Children.Count == 0)
            {
                s.Context.Error(ports, s.ChildPath("portLevelMtls"), "when present, needs at least one port (as in Istio)");
            }

            if (selector is null)
            {
                s.Context.Error(ports, s.ChildPath("portLevelMtls"), "needs a workload selector (as in Istio)");
            }

            foreach (var (k, v) in ports.Children)
            {
                var path = $"{s.ChildPath("portLevelMtls")}.{k}";
                var port = s.ToUInt(k, path, 1, 65535);
                if (v is YamlMappingNode vm)
                {
                    var reader = new MapReader(vm, path, s.Context);
                    var portMode = ReadMtlsMode(reader);
                    reader.Finish();
                    if (port is not null && portMode is not null)
                    {
                        portLevel[port.Value] = portMode;
                    }
                }
                else
                {
                    s.Context.Error(v, path, "must be an object with mode");
                }
            }
        }
        else if (s.Has("portLevelMtls"))
        {
            s.Context.Error(s.Get("portLevelMtls"), s.ChildPath("portLevelMtls"), "must be a map of port to {mode}");
        }

        return Fill(new PeerAuthentication
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, MtlsMode = mode, PortLevelMtls = portLevel,
        }, h);
    }

    private static string? ReadMtlsMode(MapReader m)
    {
        var mode = m.String("mode");
        if (mode is not null && !MtlsModes.Contains(mode))
        {
            m.Context.Error(m.Get("mode"), m.ChildPath("mode"), $"unknown mode '{mode}'; expected one of {string.Join(", ", MtlsModes)}");
            return null;
        }

        return mode;
    }

    private static RequestAuthentication ReadRequestAuthentication(MapReader s, Header h)
    {
        var selector = ReadSelector(s);
        var rules = s.List("jwtRules", r =>
        {
            var issuer = r.String("issuer", required: true) ?? string.Empty;
            var jwksUri = r.String("jwksUri");
            var jwks = r.String("jwks");
            if (jwksUri is not null && jwks is not null)
            {
                r.Context.Error(r.Node, r.Path, "set jwksUri or jwks, not both");
            }

            if (jwksUri is not null && (!Uri.TryCreate(jwksUri, UriKind.Absolute, out var uri) || (uri.Scheme != "https" && uri.Scheme != "http")))
            {
                r.Context.Error(r.Get("jwksUri"), r.ChildPath("jwksUri"), $"'{jwksUri}' is not an absolute http(s) URI");
            }

            var rule = new JwtRule
            {
                Issuer = issuer,
                Audiences = NonEmpty(r, "audiences"),
                JwksUri = jwksUri,
                Jwks = jwks,
                FromHeaders = r.List("fromHeaders", fh => new JwtHeader(fh.String("name", required: true) ?? string.Empty, fh.String("prefix"))),
                FromParams = NonEmpty(r, "fromParams"),
                FromCookies = NonEmpty(r, "fromCookies"),
                Timeout = r.TimerDuration("timeout"),
                OutputPayloadToHeader = r.String("outputPayloadToHeader"),
                ForwardOriginalToken = r.Bool("forwardOriginalToken") ?? false,
                OutputClaimToHeaders = r.List("outputClaimToHeaders", c => new ClaimToHeader(HeaderName(c, "header") ?? string.Empty, c.String("claim", required: true) ?? string.Empty)),
            };
            if (rule.Timeout is { } timeout && timeout > TimeSpan.FromMinutes(1))
            {
                r.Context.Error(r.Get("timeout"), r.ChildPath("timeout"), "must be at most 60s");
            }

            if (rule.OutputPayloadToHeader is not null)
            {
                HeaderName(r, "outputPayloadToHeader");
            }

            return rule;
        });
        return Fill(new RequestAuthentication
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, JwtRules = rules,
        }, h);
    }

    private static AuthorizationPolicy ReadAuthorizationPolicy(MapReader s, Header h)
    {
        var selector = ReadSelector(s);
        var action = s.String("action") ?? "ALLOW";
        if (action is not ("ALLOW" or "DENY" or "AUDIT" or "CUSTOM"))
        {
            s.Context.Error(s.Get("action"), s.ChildPath("action"), $"unknown action '{action}'; expected ALLOW, DENY, AUDIT or CUSTOM");
        }

        var provider = s.Map("provider", p =>
        {
            p.Anchor("name");
            return new BoxedString(p.String("name", required: true));
        })?.Value;
        if (action == "CUSTOM" && provider is null && !s.Has("provider"))
        {
            s.Context.Error(s.Node, s.ChildPath("provider.name"), "CUSTOM needs the extension provider to ask (MeshConfig extensionProviders)");
        }
        else if (action != "CUSTOM" && s.Has("provider"))
        {
            s.Context.Error(s.Get("provider"), s.ChildPath("provider"), $"applies to action CUSTOM only, not {action}");
        }

        if (action == "CUSTOM" && h.Metadata.Annotations.TryGetValue("istio.io/dry-run", out var dryRun) && dryRun == "true")
        {
            s.Context.Error(s.Node, "metadata.annotations.istio.io/dry-run", "dry-run is not supported with action CUSTOM (nor in Istio)");
        }
        IReadOnlyList<AuthorizationRule>? rules = s.Has("rules") ? s.List("rules", ReadRule) : null;
        if (rules is null)
        {
            s.Get("rules");
            if (action is "DENY" or "CUSTOM")
            {
                // As Istio refuses it: such a policy never applies, and the intent was more likely "every request".
                s.Context.Error(s.Node, s.ChildPath("rules"), $"{action} without rules never applies; add an empty rule ({{}}) to apply it to every request");
            }
        }

        if (action == "CUSTOM" && s.Get("rules") is YamlSequenceNode customRules)
        {
            RefuseIdentityMatchesInCustom(s, customRules);
        }

        return Fill(new AuthorizationPolicy
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, Action = action, Rules = rules, Provider = provider,
        }, h);
    }

    private static readonly string[] CustomRefusedSources =
        ["namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts", "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals"];

    // As Istio validates a CUSTOM policy: its rules may not match on the caller's identity or JWT (peer principals,
    // namespaces, service accounts, request principals, or conditions on them). Evaluating them here would make a
    // policy act that Istio rejects, and the same YAML must mean the same in both.
    private static void RefuseIdentityMatchesInCustom(MapReader s, YamlSequenceNode rules)
    {
        var key = new YamlScalarNode("key");
        for (var i = 0; i < rules.Children.Count; i++)
        {
            if (rules.Children[i] is not YamlMappingNode rule)
            {
                continue;
            }

            var path = $"{s.ChildPath("rules")}[{i}]";
            if (rule.Children.TryGetValue(new YamlScalarNode("from"), out var from) && from is YamlSequenceNode sources)
            {
                for (var j = 0; j < sources.Children.Count; j++)
                {
                    if (sources.Children[j] is YamlMappingNode item && item.Children.TryGetValue(new YamlScalarNode("source"), out var source) && source is YamlMappingNode fields)
                    {
                        foreach (var field in CustomRefusedSources.Where(f => fields.Children.ContainsKey(new YamlScalarNode(f))))
                        {
                            s.Context.Error(fields.Children[new YamlScalarNode(field)], $"{path}.from[{j}].source.{field}", "is not supported with action CUSTOM (Istio refuses it too); match identities in an ALLOW or DENY policy");
                        }
                    }
                }
            }

            if (rule.Children.TryGetValue(new YamlScalarNode("when"), out var when) && when is YamlSequenceNode conditions)
            {
                for (var k = 0; k < conditions.Children.Count; k++)
                {
                    if (conditions.Children[k] is YamlMappingNode condition && condition.Children.TryGetValue(key, out var name) && name is YamlScalarNode { Value: { } text }
                        && (text is "source.namespace" or "source.serviceAccount" or "source.principal" || text.StartsWith("request.auth.", StringComparison.Ordinal)))
                    {
                        s.Context.Error(name, $"{path}.when[{k}].key", $"'{text}' is not supported with action CUSTOM (Istio refuses it too); match identities in an ALLOW or DENY policy");
                    }
                }
            }
        }
    }

    private static AuthorizationRule ReadRule(MapReader r)
    {
        // As Istio validates: a from or to that is present names something. An empty list, an item without its
        // source or operation, or one with no field at all would otherwise match every request (fail open).
        var from = r.List("from", f => Required(f, "source", src => Named(src, "source", new AuthorizationSource
        {
            Principals = NonEmpty(src, "principals"),
            NotPrincipals = NonEmpty(src, "notPrincipals"),
            RequestPrincipals = NonEmpty(src, "requestPrincipals"),
            NotRequestPrincipals = NonEmpty(src, "notRequestPrincipals"),
            Namespaces = NonEmpty(src, "namespaces"),
            NotNamespaces = NonEmpty(src, "notNamespaces"),
            IpBlocks = ValidateCidrs(src, "ipBlocks"),
            NotIpBlocks = ValidateCidrs(src, "notIpBlocks"),
            RemoteIpBlocks = ValidateCidrs(src, "remoteIpBlocks"),
            NotRemoteIpBlocks = ValidateCidrs(src, "notRemoteIpBlocks"),
            ServiceAccounts = ServiceAccounts(src, "serviceAccounts"),
            NotServiceAccounts = ServiceAccounts(src, "notServiceAccounts"),
        })));
        var to = r.List("to", t => Required(t, "operation", op => Named(op, "operation", new AuthorizationOperation
        {
            Hosts = NonEmpty(op, "hosts"),
            NotHosts = NonEmpty(op, "notHosts"),
            Ports = ValidatePorts(op, "ports"),
            NotPorts = ValidatePorts(op, "notPorts"),
            Methods = NonEmpty(op, "methods"),
            NotMethods = NonEmpty(op, "notMethods"),
            Paths = ValidatePaths(op, "paths"),
            NotPaths = ValidatePaths(op, "notPaths"),
        })));
        foreach (var key in new[] { "from", "to" })
        {
            if (r.Get(key) is YamlSequenceNode { Children.Count: 0 } empty)
            {
                r.Context.Error(empty, r.ChildPath(key), $"an empty list is refused (as in Istio); leave {key} out to match any {(key == "from" ? "source" : "operation")}");
            }
        }
        var when = r.List("when", c =>
        {
            var key = c.String("key", required: true) ?? string.Empty;
            if (key.Length > 0 && !IsConditionKey(key))
            {
                c.Context.Error(c.Get("key"), c.ChildPath("key"), $"unknown condition key '{key}'; expected request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>]..., destination.ip, destination.port or connection.sni");
            }

            var values = c.Strings("values");
            var notValues = c.Strings("notValues");
            if (values.Count == 0 && notValues.Count == 0)
            {
                c.Context.Error(c.Node, c.Path, "needs values or notValues");
            }
            else if (key is "source.ip" or "remote.ip" or "destination.ip")
            {
                ValidateCidrs(c, "values");
                ValidateCidrs(c, "notValues");
            }
            else if (key == "destination.port")
            {
                ValidatePorts(c, "values");
                ValidatePorts(c, "notValues");
            }

            return new AuthorizationCondition(key, values, notValues);
        });
        return new AuthorizationRule(from, to, when);
    }

    private static readonly string[] ConditionKeys =
    [
        "source.ip", "remote.ip", "source.namespace", "source.principal", "source.serviceAccount", "request.auth.principal",
        "request.auth.audiences", "request.auth.presenter", "destination.ip", "destination.port", "connection.sni",
    ];

    private static bool IsConditionKey(string key) =>
        ConditionKeys.Contains(key, StringComparer.Ordinal)
        || Regex.IsMatch(key, @"^request\.headers\[[^\[\]]+\]$", RegexOptions.None, TimeSpan.FromSeconds(1))
        || Regex.IsMatch(key, @"^request\.auth\.claims(\[[^\[\]]+\])+$", RegexOptions.None, TimeSpan.FromSeconds(1));
}
