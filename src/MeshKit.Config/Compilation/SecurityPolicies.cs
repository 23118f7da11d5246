using MeshKit.Config.Model;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>
/// Which AuthorizationPolicies and RequestAuthentications apply to a workload, as Istio scopes them: the root
/// namespace's policies without selector apply mesh-wide, a namespace's without selector to the namespace, and a
/// policy with a selector to the workloads of its namespace it selects. Compiled into the workload's inbound policy.
/// </summary>
internal static class SecurityPolicies
{
    /// <summary>The annotation that turns an AuthorizationPolicy into a dry run.</summary>
    public const string DryRunAnnotation = "istio.io/dry-run";

    public static bool Applies(WorkloadSelector? selector, string policyNamespace, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels) =>
        selector is null ? policyNamespace == rootNamespace || policyNamespace == ns : policyNamespace == ns && selector.Matches(labels);

    /// <summary>
    /// The names of the selector-bearing policies (security and Telemetry) that select a workload: they make its view
    /// differ from its namespace's, so they are part of the key its view is cached under.
    /// </summary>
    public static string SelectingKey(ConfigSet config, string ns, IReadOnlyDictionary<string, string> labels)
    {
        static IEnumerable<string> Selecting<T>(IEnumerable<T> policies, Func<T, WorkloadSelector?> selector, string ns, IReadOnlyDictionary<string, string> labels)
            where T : ConfigResource =>
            policies.Where(p => selector(p) is { } s && p.Namespace == ns && s.Matches(labels)).Select(p => p.Kind + "/" + p.Name);

        return string.Join(",", Selecting(config.PeerAuthentications, p => p.Selector, ns, labels)
            .Concat(Selecting(config.AuthorizationPolicies, p => p.Selector, ns, labels))
            .Concat(Selecting(config.RequestAuthentications, p => p.Selector, ns, labels))
            .Concat(Selecting(config.Telemetries, p => p.Selector, ns, labels))
            .Concat(Selecting(config.Sidecars, p => p.Selector, ns, labels)));
    }

    public static IEnumerable<AuthorizationPolicyRules> Authorization(ConfigSet config, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels)
    {
        // MeshConfig's trust domain and its aliases: a principal in one of them stands for its counterpart in each.
        string[] domains = config.MeshConfig is { TrustDomainAliases.Count: > 0 } mesh
            ? [.. new[] { mesh.TrustDomain ?? MeshCompiler.DefaultTrustDomain }.Concat(mesh.TrustDomainAliases).Distinct(StringComparer.Ordinal)]
            : [];
        foreach (var policy in config.AuthorizationPolicies)
        {
            if (!Applies(policy.Selector, policy.Namespace, rootNamespace, ns, labels))
            {
                continue;
            }

            var compiled = new AuthorizationPolicyRules
            {
                Name = $"{policy.Namespace}/{policy.Name}",
                Action = policy.Action,
                DryRun = policy.Annotations.TryGetValue(DryRunAnnotation, out var dry) && dry == "true",
                HasRules = policy.Rules is not null,
                Provider = policy.Provider ?? string.Empty,
            };
            if (policy.Action == "CUSTOM" && config.MeshConfig?.ExtensionProviders.FirstOrDefault(p => p.Name == policy.Provider) is { } provider)
            {
                compiled.ExtAuthz = ToProto(provider);
            }

            foreach (var rule in policy.Rules ?? [])
            {
                var spec = new AuthorizationRuleSpec();
                foreach (var source in rule.From)
                {
                    var s = new AuthorizationSourceSpec();
                    s.Principals.AddRange(WithAliases(source.Principals, domains));
                    s.NotPrincipals.AddRange(WithAliases(source.NotPrincipals, domains));
                    s.RequestPrincipals.AddRange(source.RequestPrincipals);
                    s.NotRequestPrincipals.AddRange(source.NotRequestPrincipals);
                    s.Namespaces.AddRange(source.Namespaces);
                    s.NotNamespaces.AddRange(source.NotNamespaces);
                    s.IpBlocks.AddRange(source.IpBlocks);
                    s.NotIpBlocks.AddRange(source.NotIpBlocks);
                    s.RemoteIpBlocks.AddRange(source.RemoteIpBlocks);
                    s.NotRemoteIpBlocks.AddRange(source.NotRemoteIpBlocks);
                    s.ServiceAccounts.AddRange(source.ServiceAccounts);
                    s.NotServiceAccounts.AddRange(source.NotServiceAccounts);
                    spec.From.Add(s);
                }

                foreach (var operation in rule.To)
                {
                    var o = new AuthorizationOperationSpec();
                    o.Hosts.AddRange(operation.Hosts);
                    o.NotHosts.AddRange(operation.NotHosts);
                    o.Ports.AddRange(operation.Ports);
                    o.NotPorts.AddRange(operation.NotPorts);
                    o.Methods.AddRange(operation.Methods);
                    o.NotMethods.AddRange(operation.NotMethods);
                    o.Paths.AddRange(operation.Paths);
                    o.NotPaths.AddRange(operation.NotPaths);
                    spec.To.Add(o);
                }

                foreach (var condition in rule.When)
                {
                    var c = new AuthorizationConditionSpec { Key = condition.Key };
                    var principal = condition.Key == "source.principal";
                    c.Values.AddRange(principal ? WithAliases(condition.Values, domains) : condition.Values);
                    c.NotValues.AddRange(principal ? WithAliases(condition.NotValues, domains) : condition.NotValues);
                    spec.When.Add(c);
                }

                compiled.Rules.Add(spec);
            }

            yield return compiled;
        }
    }

    // Istio's trust domain aliases: "td/ns/a/sa/b" with td among the domains matches that identity in every domain.
    private static IEnumerable<string> WithAliases(IEnumerable<string> principals, string[] domains)
    {
        foreach (var principal in principals)
        {
            var slash = principal.IndexOf('/', StringComparison.Ordinal);
            if (domains.Length == 0 || slash <= 0 || !domains.Contains(principal[..slash], StringComparer.Ordinal))
            {
                yield return principal;
                continue;
            }

            foreach (var domain in domains)
            {
                yield return domain + principal[slash..];
            }
        }
    }

    public static IEnumerable<JwtProvider> JwtProviders(ConfigSet config, string rootNamespace, string ns, IReadOnlyDictionary<string, string> labels, IReadOnlyDictionary<string, string> fetchedJwks)
    {
        foreach (var authentication in config.RequestAuthentications)
        {
            if (!Applies(authentication.Selector, authentication.Namespace, rootNamespace, ns, labels))
            {
                continue;
            }

            foreach (var rule in authentication.JwtRules)
            {
                var provider = new JwtProvider
                {
                    Issuer = rule.Issuer,
                    ForwardOriginalToken = rule.ForwardOriginalToken,
                    OutputPayloadToHeader = rule.OutputPayloadToHeader ?? string.Empty,
                    JwksUri = rule.JwksUri ?? string.Empty,
                };
                if (rule.Jwks is not null)
                {
                    provider.Jwks = rule.Jwks;
                }
                else if (rule.JwksUri is not null && fetchedJwks.TryGetValue(rule.JwksUri, out var keys))
                {
                    provider.Jwks = keys;
                }
                else
                {
                    // Never fetched (or no location given): fail closed for this issuer.
                    provider.KeysUnavailable = true;
                }

                provider.Audiences.AddRange(rule.Audiences);
                provider.FromHeaders.AddRange(rule.FromHeaders.Select(h => new JwtHeaderLocation { Name = h.Name, Prefix = h.Prefix ?? string.Empty }));
                provider.FromParams.AddRange(rule.FromParams);
                provider.FromCookies.AddRange(rule.FromCookies);
                provider.OutputClaimToHeaders.AddRange(rule.OutputClaimToHeaders.Select(c => new JwtClaimToHeader { Header = c.Header, Claim = c.Claim }));
                yield return provider;
            }
        }
    }

    private static ExtAuthzProvider ToProto(ExtAuthzProviderSpec provider)
    {
        var proto = new ExtAuthzProvider
        {
            Name = provider.Name,
            Service = provider.Service,
            Port = provider.Port,
            TimeoutMs = (ulong)(provider.Timeout?.TotalMilliseconds ?? 0),
            PathPrefix = provider.PathPrefix ?? string.Empty,
            FailOpen = provider.FailOpen,
            StatusOnError = (uint)(provider.StatusOnError ?? 0),
            MaxRequestBytes = provider.MaxRequestBytes ?? 0,
            AllowPartialMessage = provider.AllowPartialMessage,
            Grpc = provider.Grpc,
            PackAsBytes = provider.PackAsBytes,
        };
        proto.IncludeRequestHeadersInCheck.AddRange(provider.IncludeRequestHeadersInCheck);
        foreach (var (name, value) in provider.IncludeAdditionalHeadersInCheck)
        {
            proto.IncludeAdditionalHeadersInCheck[name] = value;
        }

        proto.HeadersToUpstreamOnAllow.AddRange(provider.HeadersToUpstreamOnAllow);
        proto.HeadersToDownstreamOnDeny.AddRange(provider.HeadersToDownstreamOnDeny);
        proto.HeadersToDownstreamOnAllow.AddRange(provider.HeadersToDownstreamOnAllow);
        return proto;
    }
}
