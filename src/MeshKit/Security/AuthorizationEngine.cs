using System.Net;
using MeshKit.Protocol.V1;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Security;

/// <summary>What a request looks like to authorization: who sent it, with what credentials, to what.</summary>
internal sealed class AuthorizationRequest
{
    /// <summary>Takes the thread's cleared request (or a new one); give it back with <see cref="Return"/>.</summary>
    /// <remarks>One per thread, reused: a request is evaluated synchronously and given back before the middleware awaits.</remarks>
    public static AuthorizationRequest Rent() => PerThread<AuthorizationRequest>.Rent();

    /// <summary>Clears a request whose evaluation is over and keeps it for the next one on this thread.</summary>
    public static void Return(AuthorizationRequest request)
    {
        request.SourcePrincipal = null;
        request.SourceNamespace = null;
        request.SourceServiceAccount = null;
        request.SourceIp = null;
        request.ClientIp = null;
        request.TrustedProxies = 0;
        request._remoteIp = null;
        request._remoteIpKnown = false;
        request.DestinationIp = null;
        request.DestinationPort = 0;
        request._sni = null;
        request._sniKnown = false;
        request._connection = null;
        request.Jwt = null;
        request.Host = string.Empty;
        request.Method = string.Empty;
        request.Path = string.Empty;
        request.Headers = EmptyHeaders;
        request._hostWithoutPort = null;
        request._portText = null;
        PerThread<AuthorizationRequest>.Return(request);
    }

    public string? SourcePrincipal { get; set; }

    public string? SourceNamespace { get; set; }

    /// <summary>Gets or sets <c>namespace/name</c> of the peer's service account (mutual TLS only).</summary>
    public string? SourceServiceAccount { get; set; }

    /// <summary>Gets or sets the peer's address (<c>source.ip</c>, <c>ipBlocks</c>).</summary>
    public IPAddress? SourceIp { get; set; }

    /// <summary>
    /// Gets or sets the connection's client address when a load balancer's PROXY header named it (the peer's otherwise,
    /// as null means): what <see cref="RemoteIp"/> is without trusted <c>X-Forwarded-For</c> entries.
    /// </summary>
    public IPAddress? ClientIp { get; set; }

    /// <summary>Gets or sets how many proxies that append to <c>X-Forwarded-For</c> are trusted (<see cref="MeshOptions.NumTrustedProxies"/>).</summary>
    public int TrustedProxies { get; set; }

    /// <summary>
    /// Gets the client's address (<c>remote.ip</c>, <c>remoteIpBlocks</c>): the one trusted proxies say in
    /// <c>X-Forwarded-For</c>, else the one a load balancer's PROXY header named, else the peer's. Worked out when first
    /// asked: only policies with those fields ask.
    /// </summary>
    public IPAddress? RemoteIp
    {
        get
        {
            if (!_remoteIpKnown)
            {
                var connection = ClientIp ?? SourceIp;
                _remoteIp = TrustedProxies > 0 && Headers.TryGetValue(ForwardedFor.Header, out var forwarded)
                    ? ForwardedFor.Client(forwarded, TrustedProxies) ?? connection
                    : connection;
                _remoteIpKnown = true;
            }

            return _remoteIp;
        }
    }

    private IPAddress? _remoteIp;
    private bool _remoteIpKnown;

    public IPAddress? DestinationIp { get; set; }

    public int DestinationPort { get; set; }

    /// <summary>
    /// Gets or sets the server name the client's TLS handshake asked for (<c>connection.sni</c>); null over plain text.
    /// Unless set, read from the features given to <see cref="ReadSniFrom"/> when first asked: only policies with an SNI condition ask.
    /// </summary>
    public string? Sni
    {
        get
        {
            if (!_sniKnown)
            {
                _sni = _connection?.Get<Microsoft.AspNetCore.Connections.Features.ITlsHandshakeFeature>()?.HostName;
                _sniKnown = true;
            }

            return _sni;
        }

        set
        {
            _sni = value;
            _sniKnown = true;
        }
    }

    /// <summary>Has <see cref="Sni"/> read from <paramref name="features"/> (the request's) when first asked.</summary>
    public void ReadSniFrom(Microsoft.AspNetCore.Http.Features.IFeatureCollection features)
    {
        _connection = features;
        _sniKnown = false;
    }

    private Microsoft.AspNetCore.Http.Features.IFeatureCollection? _connection;
    private string? _sni;
    private bool _sniKnown;

    public RequestPrincipal? Jwt { get; set; }

    public string Host { get; set; } = string.Empty;

    /// <summary>Gets the Host header without its port ("reviews" of "reviews:9080"); null when it has none.</summary>
    public string? HostWithoutPort => _hostWithoutPort ??= Host.LastIndexOf(':') is var colon && colon > 0 && Host[0] != '[' ? Host[..colon] : string.Empty;

    /// <summary>Gets the destination port as text, computed once per request.</summary>
    public string DestinationPortText => _portText ??= DestinationPort.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private string? _hostWithoutPort;
    private string? _portText;

    public string Method { get; set; } = string.Empty;

    /// <summary>Gets the normalized path, without query: the one the application routes on.</summary>
    public string Path { get; set; } = string.Empty;

    public IHeaderDictionary Headers { get; set; } = EmptyHeaders;

    private static readonly IHeaderDictionary EmptyHeaders = new HeaderDictionary();
}

/// <summary>The outcome of authorization.</summary>
/// <param name="Allowed">Whether the request may proceed.</param>
/// <param name="Policy">The policy that decided, or null when no policy did (allowed: none applies).</param>
internal readonly record struct AuthorizationDecision(bool Allowed, string? Policy);

/// <summary>
/// The AuthorizationPolicies of one workload, compiled once per config version, in Istio's order: CUSTOM first (a
/// matching request is checked with the external authorization service, see <see cref="ExtAuthzClient"/>), then
/// DENY (any matching DENY denies), then ALLOW (if there is any ALLOW policy, one must match). AUDIT policies and
/// dry-run policies never change the outcome; their matches are reported.
/// </summary>
internal sealed class AuthorizationEngine
{
    private readonly CompiledPolicy[] _custom;
    private readonly CompiledPolicy[] _deny;
    private readonly CompiledPolicy[] _allow;
    private readonly CompiledPolicy[] _report;

    private AuthorizationEngine(CompiledPolicy[] custom, CompiledPolicy[] deny, CompiledPolicy[] allow, CompiledPolicy[] report)
    {
        _custom = custom;
        _deny = deny;
        _allow = allow;
        _report = report;
    }

    public static AuthorizationEngine None { get; } = new([], [], [], []);

    /// <summary>Gets whether no policy applies (every request is allowed without evaluation).</summary>
    public bool IsEmpty => _custom.Length == 0 && _deny.Length == 0 && _allow.Length == 0 && _report.Length == 0;

    /// <summary>Gets whether any CUSTOM policy applies.</summary>
    public bool HasCustom => _custom.Length > 0;

    /// <summary>Gets every policy, in the order they are evaluated (CUSTOM, DENY, ALLOW, then AUDIT and dry-run ones), for diagnostics.</summary>
    public IEnumerable<CompiledPolicy> Policies => _custom.Concat(_deny).Concat(_allow).Concat(_report);

    /// <summary>Returns the first CUSTOM policy that matches the request, whose provider then decides; null when none does.</summary>
    public CompiledPolicy? MatchCustom(AuthorizationRequest request)
    {
        foreach (var policy in _custom)
        {
            if (policy.Matches(request))
            {
                return policy;
            }
        }

        return null;
    }

    /// <summary>Gets whether any AUDIT or dry-run policy is reported (the caller then passes a callback).</summary>
    public bool HasReports => _report.Length > 0;

    public static AuthorizationEngine Compile(IEnumerable<AuthorizationPolicyRules> policies)
    {
        var custom = new List<CompiledPolicy>();
        var deny = new List<CompiledPolicy>();
        var allow = new List<CompiledPolicy>();
        var report = new List<CompiledPolicy>();
        foreach (var policy in policies)
        {
            var compiled = new CompiledPolicy(policy);
            if (policy.Action == "CUSTOM")
            {
                custom.Add(compiled);
            }
            else if (policy.DryRun || policy.Action == "AUDIT")
            {
                report.Add(compiled);
            }
            else if (policy.Action == "DENY")
            {
                deny.Add(compiled);
            }
            else if (policy.Action == "ALLOW")
            {
                allow.Add(compiled);
            }
            else
            {
                throw new MeshConfigException($"AuthorizationPolicy {policy.Name}: action '{policy.Action}' is not supported");
            }
        }

        // As in Istio, one workload asks one provider; with two, which one decided would depend on policy order, so
        // none does: the requests CUSTOM policies match are denied (fail closed) until the conflict is resolved.
        var providers = custom.Select(p => p.ProviderName).Distinct(StringComparer.Ordinal).ToList();
        if (providers.Count > 1)
        {
            var reason = $"the workload's CUSTOM policies name {providers.Count} providers ({string.Join(", ", providers)}); one workload asks one";
            custom = [.. custom.Select(p => p.WithoutProvider(reason))];
        }

        return new AuthorizationEngine([.. custom], [.. deny], [.. allow], [.. report]);
    }

    /// <summary>Decides; <paramref name="reported"/> is called for each AUDIT or dry-run policy that matches.</summary>
    public AuthorizationDecision Evaluate(AuthorizationRequest request, Action<CompiledPolicy>? reported = null)
    {
        if (reported is not null)
        {
            foreach (var policy in _report)
            {
                if (policy.Matches(request))
                {
                    reported(policy);
                }
            }
        }

        foreach (var policy in _deny)
        {
            if (policy.Matches(request))
            {
                return new(false, policy.Name);
            }
        }

        if (_allow.Length == 0)
        {
            return new(true, null);
        }

        foreach (var policy in _allow)
        {
            if (policy.Matches(request))
            {
                return new(true, policy.Name);
            }
        }

        return new(false, null);
    }

    /// <summary>One policy: matches when any of its rules matches (none when it has no rules).</summary>
    internal sealed class CompiledPolicy
    {
        private readonly CompiledRule[] _rules;

        public CompiledPolicy(AuthorizationPolicyRules policy)
        {
            Name = policy.Name;
            Action = policy.Action;
            DryRun = policy.DryRun;
            ProviderName = policy.Provider;
            ExtAuthz = policy.ExtAuthz is { } provider ? new ExtAuthzSettings(provider) : null;
            Unenforceable = policy.Action == "CUSTOM" && ExtAuthz is null ? $"MeshConfig defines no extension provider '{policy.Provider}'" : null;
            _rules = policy.HasRules ? [.. policy.Rules.Select(r => new CompiledRule(r))] : [];
        }

        private CompiledPolicy(CompiledPolicy policy, string reason)
        {
            Name = policy.Name;
            Action = policy.Action;
            DryRun = policy.DryRun;
            ProviderName = policy.ProviderName;
            Unenforceable = reason;
            _rules = policy._rules;
        }

        public string Name { get; }

        /// <summary>Gets the provider a CUSTOM policy names (empty for other actions).</summary>
        public string ProviderName { get; }

        /// <summary>Gets the external authorization service of a CUSTOM policy; null when it cannot be asked (see <see cref="Unenforceable"/>).</summary>
        public ExtAuthzSettings? ExtAuthz { get; }

        /// <summary>Gets why a CUSTOM policy cannot be enforced, when it cannot: the requests it matches are then denied.</summary>
        public string? Unenforceable { get; }

        /// <summary>Returns this CUSTOM policy without its provider, for the reason given.</summary>
        public CompiledPolicy WithoutProvider(string reason) => new(this, reason);

        public string Action { get; }

        public bool DryRun { get; }

        public bool Matches(AuthorizationRequest request)
        {
            foreach (var rule in _rules)
            {
                if (rule.Matches(request))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class CompiledRule(AuthorizationRuleSpec rule)
    {
        private readonly Source[] _from = [.. rule.From.Select(s => new Source(s))];
        private readonly Operation[] _to = [.. rule.To.Select(o => new Operation(o))];
        private readonly Condition[] _when = [.. rule.When.Select(c => new Condition(c))];

        public bool Matches(AuthorizationRequest request)
        {
            if (_from.Length > 0 && !Any(_from, request))
            {
                return false;
            }

            if (_to.Length > 0 && !Any(_to, request))
            {
                return false;
            }

            foreach (var condition in _when)
            {
                if (!condition.Matches(request))
                {
                    return false;
                }
            }

            return true;
        }

        private static bool Any<T>(T[] parts, AuthorizationRequest request)
            where T : IRequestMatcher
        {
            foreach (var part in parts)
            {
                if (part.Matches(request))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private interface IRequestMatcher
    {
        bool Matches(AuthorizationRequest request);
    }

    private sealed class Source(AuthorizationSourceSpec s) : IRequestMatcher
    {
        private readonly Field<string?> _principals = new(Patterns(s.Principals), Patterns(s.NotPrincipals));
        private readonly Field<string?> _requestPrincipals = new(Patterns(s.RequestPrincipals), Patterns(s.NotRequestPrincipals));
        private readonly Field<string?> _namespaces = new(Patterns(s.Namespaces), Patterns(s.NotNamespaces));
        private readonly Field<string?> _serviceAccounts = new(Patterns(s.ServiceAccounts), Patterns(s.NotServiceAccounts));
        private readonly Field<IPAddress?> _ip = new(Networks(s.IpBlocks), Networks(s.NotIpBlocks));
        private readonly Field<IPAddress?> _remoteIp = new(Networks(s.RemoteIpBlocks), Networks(s.NotRemoteIpBlocks));

        public bool Matches(AuthorizationRequest request) =>
            _principals.Matches(request.SourcePrincipal)
            && _requestPrincipals.Matches(request.Jwt?.Principal)
            && _namespaces.Matches(request.SourceNamespace)
            && _serviceAccounts.Matches(request.SourceServiceAccount)
            && _ip.Matches(request.SourceIp)
            && (_remoteIp.IsEmpty || _remoteIp.Matches(request.RemoteIp));
    }

    private sealed class Operation(AuthorizationOperationSpec o) : IRequestMatcher
    {
        private readonly Field<string?> _hosts = new(Patterns(o.Hosts, ignoreCase: true), Patterns(o.NotHosts, ignoreCase: true));
        private readonly Field<string?> _ports = new(Patterns(o.Ports), Patterns(o.NotPorts));
        private readonly Field<string?> _methods = new(Patterns(o.Methods), Patterns(o.NotMethods));
        private readonly Field<string?> _paths = new([.. o.Paths.Select(PathPattern.Parse)], [.. o.NotPaths.Select(PathPattern.Parse)]);

        // A field without patterns is not asked: the port's text and the bare host are made only for a rule that reads them.
        public bool Matches(AuthorizationRequest request) =>
            HostMatches(request)
            && (_ports.IsEmpty || _ports.Matches(request.DestinationPortText))
            && _methods.Matches(request.Method)
            && _paths.Matches(request.Path);

        // The Host header as sent, or without its port: "reviews" and "reviews:9080" both name the service.
        private bool HostMatches(AuthorizationRequest request) =>
            _hosts.IsEmpty
            || (request.HostWithoutPort is { Length: > 0 } bare
                ? _hosts.MatchesEither(request.Host, bare)
                : _hosts.Matches(request.Host));
    }

    private sealed class Condition : IRequestMatcher
    {
        private static readonly string?[] NoValue = [null];

        private readonly string _key;
        private readonly Func<AuthorizationRequest, string?>? _single;
        private readonly Func<AuthorizationRequest, IEnumerable<string?>>? _read;
        private readonly Field<string?>? _strings;
        private readonly Field<IPAddress?>? _addresses;

        public Condition(AuthorizationConditionSpec c)
        {
            _key = c.Key;
            if (c.Key is "source.ip" or "remote.ip" or "destination.ip")
            {
                _addresses = new Field<IPAddress?>(Networks(c.Values), Networks(c.NotValues));
                return;
            }

            _strings = new Field<string?>(Patterns(c.Values), Patterns(c.NotValues));
            _single = SingleReader(c.Key);
            _read = _single is null ? Reader(c.Key) : null;
        }

        public bool Matches(AuthorizationRequest request)
        {
            if (_addresses is not null)
            {
                return _addresses.Matches(_key switch
                {
                    "destination.ip" => request.DestinationIp,
                    "remote.ip" => request.RemoteIp,
                    _ => request.SourceIp,
                });
            }

            if (_single is not null)
            {
                return _strings!.Matches(_single(request));
            }

            // A multi-valued attribute (audiences, a list claim) matches when any value does, and is excluded when
            // any value is.
            return _strings!.MatchesAny(_read!(request));
        }

        private static Func<AuthorizationRequest, string?>? SingleReader(string key)
        {
            switch (key)
            {
                case "source.namespace":
                    return r => r.SourceNamespace;
                case "source.principal":
                    return r => r.SourcePrincipal;
                case "source.serviceAccount":
                    return r => r.SourceServiceAccount;
                case "request.auth.principal":
                    return r => r.Jwt?.Principal;
                case "request.auth.presenter":
                    return r => r.Jwt?.Presenter;
                case "destination.port":
                    return r => r.DestinationPortText;
                case "connection.sni":
                    return r => r.Sni;
            }

            if (key.StartsWith("request.headers[", StringComparison.Ordinal))
            {
                var name = key["request.headers[".Length..^1];
                return r => r.Headers.TryGetValue(name, out var v) ? v.ToString() : null;
            }

            return null;
        }

        private static Func<AuthorizationRequest, IEnumerable<string?>> Reader(string key)
        {
            switch (key)
            {
                case "source.namespace":
                    return r => [r.SourceNamespace];
                case "source.principal":
                    return r => [r.SourcePrincipal];
                case "request.auth.principal":
                    return r => [r.Jwt?.Principal];
                case "request.auth.audiences":
                    return r => r.Jwt is { } jwt ? (IEnumerable<string?>)jwt.Audiences : NoValue;
                case "request.auth.presenter":
                    return r => [r.Jwt?.Presenter];
                case "destination.port":
                    return r => [r.DestinationPort.ToString(System.Globalization.CultureInfo.InvariantCulture)];
                case "connection.sni":
                    return r => [r.Sni];
            }

            if (key.StartsWith("request.headers[", StringComparison.Ordinal))
            {
                var name = key["request.headers[".Length..^1];
                return r => [r.Headers.TryGetValue(name, out var v) ? v.ToString() : null];
            }

            if (key.StartsWith("request.auth.claims[", StringComparison.Ordinal))
            {
                var path = key["request.auth.claims[".Length..^1].Split("][");
                return r => r.Jwt?.Claim(path) ?? [null];
            }

            throw new MeshConfigException($"unknown condition key '{key}'");
        }
    }

    /// <summary>values (any matches, or none given) and notValues (none matches).</summary>
    private sealed class Field<T>(IMatcher<T>[] values, IMatcher<T>[] notValues)
    {
        /// <summary>Gets whether the field constrains nothing (then its value need not be computed).</summary>
        public bool IsEmpty { get; } = values.Length == 0 && notValues.Length == 0;

        public bool Matches(T actual)
        {
            if (values.Length > 0 && !AnyMatch(values, actual))
            {
                return false;
            }

            return notValues.Length == 0 || !AnyMatch(notValues, actual);
        }

        /// <summary>Two forms of one value: matches when either does, excluded when either is.</summary>
        public bool MatchesEither(T first, T second)
        {
            if (notValues.Length > 0 && (AnyMatch(notValues, first) || AnyMatch(notValues, second)))
            {
                return false;
            }

            return values.Length == 0 || AnyMatch(values, first) || AnyMatch(values, second);
        }

        public bool MatchesAny(IEnumerable<T> actuals)
        {
            var any = values.Length == 0;
            foreach (var actual in actuals)
            {
                if (notValues.Length > 0 && AnyMatch(notValues, actual))
                {
                    return false;
                }

                any |= values.Length > 0 && AnyMatch(values, actual);
            }

            return any;
        }

        private static bool AnyMatch(IMatcher<T>[] matchers, T actual)
        {
            foreach (var matcher in matchers)
            {
                if (matcher.Matches(actual))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private interface IMatcher<in T>
    {
        bool Matches(T value);
    }

    /// <summary>An external authorization provider with its header patterns compiled (names match without regard to case).</summary>
    internal sealed class ExtAuthzSettings(ExtAuthzProvider provider)
    {
        private readonly IMatcher<string?>[] _sent = Patterns(provider.IncludeRequestHeadersInCheck, ignoreCase: true);
        private readonly IMatcher<string?>[] _upstream = Patterns(provider.HeadersToUpstreamOnAllow, ignoreCase: true);
        private readonly IMatcher<string?>[] _deny = Patterns(provider.HeadersToDownstreamOnDeny, ignoreCase: true);
        private readonly IMatcher<string?>[] _allow = Patterns(provider.HeadersToDownstreamOnAllow, ignoreCase: true);

        public ExtAuthzProvider Provider { get; } = provider;

        /// <summary>Gets the service's check URL up to the request's path: scheme, authority and path prefix.</summary>
        public string BaseUrl { get; } = $"http://{provider.Service}:{provider.Port}{provider.PathPrefix}";

        /// <summary>Gets how long a check may take (Istio's default: 600 s).</summary>
        public TimeSpan Timeout { get; } = provider.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(provider.TimeoutMs) : TimeSpan.FromSeconds(600);

        /// <summary>Gets the status of a request refused because the check failed.</summary>
        public int StatusOnError { get; } = provider.StatusOnError > 0 ? (int)provider.StatusOnError : 403;

        /// <summary>Gets whether every header of a denial goes to the caller (no <c>headersToDownstreamOnDeny</c>).</summary>
        public bool AllHeadersOnDeny => _deny.Length == 0;

        public bool Sends(string header) => Any(_sent, header);

        public bool ToUpstreamOnAllow(string header) => Any(_upstream, header);

        public bool ToDownstreamOnDeny(string header) => Any(_deny, header);

        public bool ToDownstreamOnAllow(string header) => Any(_allow, header);

        private static bool Any(IMatcher<string?>[] patterns, string header)
        {
            foreach (var pattern in patterns)
            {
                if (pattern.Matches(header))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private static IMatcher<string?>[] Patterns(IEnumerable<string> patterns, bool ignoreCase = false) =>
        [.. patterns.Select(p => new StringPattern(p, ignoreCase))];

    private static IMatcher<IPAddress?>[] Networks(IEnumerable<string> blocks) =>
        [.. blocks.Select(b => new NetworkPattern(b))];

    /// <summary>Istio's string match: exact, <c>prefix*</c>, <c>*suffix</c>, or <c>*</c> (present and not empty).</summary>
    private sealed class StringPattern : IMatcher<string?>
    {
        private readonly string _text;
        private readonly int _kind; // 0 exact, 1 prefix, 2 suffix, 3 presence
        private readonly StringComparison _comparison;

        public StringPattern(string pattern, bool ignoreCase)
        {
            _comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            (_kind, _text) = pattern switch
            {
                "*" => (3, string.Empty),
                _ when pattern.EndsWith('*') => (1, pattern[..^1]),
                _ when pattern.StartsWith('*') => (2, pattern[1..]),
                _ => (0, pattern),
            };
        }

        public bool Matches(string? value) => value is not null && _kind switch
        {
            0 => string.Equals(value, _text, _comparison),
            1 => value.StartsWith(_text, _comparison),
            2 => value.EndsWith(_text, _comparison),
            _ => value.Length > 0,
        };
    }

    private sealed class NetworkPattern(string block) : IMatcher<IPAddress?>
    {
        // Validated when the config was read.
        private readonly IPNetwork _network = Addresses.TryParseNetwork(block, out var network) ? network : throw new FormatException($"'{block}' is not an IP address or a CIDR range");

        public bool Matches(IPAddress? value) => value is not null && _network.Contains(Addresses.Plain(value));
    }

    /// <summary>Path patterns: Istio's string forms, or templates whose segments are <c>{*}</c> (one segment) and <c>{**}</c> (the rest).</summary>
    private sealed class PathPattern : IMatcher<string?>
    {
        private readonly string[]? _segments;
        private readonly StringPattern? _plain;

        private PathPattern(string pattern)
        {
            if (pattern.Contains('{', StringComparison.Ordinal))
            {
                _segments = pattern.Split('/');
            }
            else
            {
                _plain = new StringPattern(pattern, ignoreCase: false);
            }
        }

        public static IMatcher<string?> Parse(string pattern) => new PathPattern(pattern);

        public bool Matches(string? value)
        {
            if (value is null)
            {
                return false;
            }

            if (_plain is not null)
            {
                return _plain.Matches(value);
            }

            var rest = value.AsSpan();
            for (var i = 0; i < _segments!.Length; i++)
            {
                var segment = _segments[i];
                if (segment == "{**}")
                {
                    // One or more remaining segments (the rest of the path, after the separator).
                    return i == 0 || rest.Length > 0;
                }

                if (i > 0)
                {
                    if (rest.Length == 0 || rest[0] != '/')
                    {
                        return false;
                    }

                    rest = rest[1..];
                }

                var end = rest.IndexOf('/');
                var actual = end < 0 ? rest : rest[..end];
                if (segment == "{*}" ? actual.Length == 0 : !actual.SequenceEqual(segment))
                {
                    return false;
                }

                rest = rest[actual.Length..];
            }

            return rest.Length == 0;
        }
    }
}
