using System.Globalization;
using MeshKit.Config.Model;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// Gateway API's HTTPRoute and GRPCRoute attached to a Service (GEP-1426, "GAMMA"): each rule's matches become routes of
// the VirtualService model, with the precedence Gateway API gives them (ConfigSet orders them per Service).
public static partial class ConfigParser
{
    private static readonly string[] GatewayApiVersions = ["v1", "v1beta1"];
    private static readonly string[] GrpcRouteVersions = ["v1", "v1alpha2"];
    private static readonly string[] HttpMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    private static readonly string[] HeaderFilters = ["RequestHeaderModifier", "ResponseHeaderModifier"];
    private static readonly string[] FilterFields = ["requestHeaderModifier", "responseHeaderModifier", "requestMirror", "requestRedirect", "urlRewrite", "cors", "extensionRef"];

    // Istio's retry conditions for Gateway API's retry: connection failures and the gRPC ones, plus the codes given.
    private static readonly string[] GatewayRetryOn = ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"];

    private enum FilterScope
    {
        HttpRule,
        GrpcRule,
        Backend,
    }

    private static GatewayRouteResource? ReadGatewayRoute(MapReader s, Header h, DateTimeOffset? created)
    {
        var ns = h.Metadata.Namespace;
        // A route gets here with a Service, ServiceEntry or ServiceImport parent (one attached only to gateways was
        // skipped): a parent that is not read is an error of its own.
        var parents = s.List("parentRefs", p => ReadParentRef(p, ns));

        if (s.Has("hostnames"))
        {
            s.Context.Warning(s.Get("hostnames"), s.ChildPath("hostnames"), "has no effect on a route attached to a Service (Gateway API for the mesh infers nothing from it); match the Host header in a rule instead");
        }

        s.Ignore("hostnames");
        var rules = new List<GatewayRouteRule>();
        var index = 0;
        s.List("rules", r =>
        {
            rules.AddRange(h.Kind == "GRPCRoute" ? ReadGrpcRule(r, index++, ns) : ReadGatewayRule(r, index++, ns));
            return r; // read for its side effect: a rule is one route per match
        });
        if (!s.Has("rules"))
        {
            // Gateway API's default: one rule without matches (every path) and without backends (500).
            rules.AddRange(GatewayRoutes(null, [DefaultGatewayMatch()], [], new GatewayActions(), s.Location, 0));
        }

        return Fill(new GatewayRouteResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = ns,
            Parents = parents.OfType<ServiceParentRef>().ToArray(), Rules = rules, CreationTimestamp = created,
        }, h);
    }

    // A Service parent, or null for a Gateway's (a warning: MeshKit has no gateways) and for errors.
    private static ServiceParentRef? ReadParentRef(MapReader p, string routeNamespace)
    {
        var group = p.String("group");
        var kind = p.String("kind") ?? "Gateway";
        var ns = p.String("namespace") ?? routeNamespace;
        var name = p.String("name", required: true);
        var port = p.UInt("port", 1, 65535);
        p.Context.Anchor(p.Path, p.Node);
        if (kind == "Gateway" && group is null or "gateway.networking.k8s.io")
        {
            p.Context.Warning(p.Node, p.Path, "a Gateway parent is ignored: MeshKit routes the mesh's own calls (the route's Service parents)");
            p.Ignore("sectionName");
            return null;
        }

        if (kind == "ServiceEntry" && group == "networking.istio.io")
        {
            // Istio's extension: the route takes the calls to the ServiceEntry's hosts (ConfigSet looks it up).
            var entrySection = ReadSectionName(p);
            return name is null ? null : new ServiceParentRef(name, ns, port, p.Path) { IsServiceEntry = true, SectionName = entrySection };
        }

        if (kind != "Service")
        {
            p.Context.Error(p.Get("kind") ?? p.Node, p.ChildPath("kind"), $"a {kind} parent is not supported by MeshKit: attach the route to a Service (or an Istio ServiceEntry)");
            p.Ignore("sectionName");
            return null;
        }

        if (group is not ("" or "core"))
        {
            // Gateway API's default group is its own: a Service parent must name the core group, or it names no Service.
            p.Context.Error(p.Get("group") ?? p.Node, p.ChildPath("group"), "a Service parent needs group \"\" (the core API group); without it Gateway API reads gateway.networking.k8s.io");
        }

        var section = ReadSectionName(p);
        if (name is not null && !Names.IsDnsLabel(name))
        {
            p.Context.Error(p.Get("name"), p.ChildPath("name"), $"'{name}' is not a valid Service name (lower-case DNS-1123 label)");
        }

        if (!Names.IsDnsLabel(ns))
        {
            p.Context.Error(p.Get("namespace"), p.ChildPath("namespace"), $"'{ns}' is not a valid namespace (lower-case DNS-1123 label)");
        }

        return name is null ? null : new ServiceParentRef(name, ns, port, p.Path) { SectionName = section };
    }

    // A Service's sectionName is one of its ports' names (Gateway API), a DNS label (Kubernetes validates port names so).
    private static string? ReadSectionName(MapReader p)
    {
        var section = p.String("sectionName");
        if (section is not null && !Names.IsDnsLabel(section))
        {
            p.Context.Error(p.Get("sectionName"), p.ChildPath("sectionName"), $"'{section}' is not a port name (lower-case DNS-1123 label)");
            return null;
        }

        return section;
    }

    private sealed record GatewayMatch(HttpMatchRequest Match, MatchPrecedence Precedence);

    private static GatewayMatch DefaultGatewayMatch() =>
        new(new HttpMatchRequest { Uri = new StringMatchSpec(StringMatchKind.PathPrefix, "/") }, new MatchPrecedence(2, 1, 0, false, 0, 0));

    // What a rule's filters and timeouts do, collected before the rule's routes are made.
    private sealed class GatewayActions
    {
        public HeaderOperationsSpec? RequestHeaders;
        public HeaderOperationsSpec? ResponseHeaders;
        public RewriteSpec? Rewrite;
        public RedirectSpec? Redirect;
        public List<MirrorSpec> Mirrors = [];
        public TimeSpan? Timeout;
        public TimeSpan? PerTry;
        public RetrySpec? Retries;
        public string? ReplacePrefixPath; // the filter's path, when it replaces the matched prefix
        public CorsPolicySpec? Cors;
        public SessionPersistenceSpec? Session;
    }

    private static List<GatewayRouteRule> ReadGatewayRule(MapReader r, int index, string ns)
    {
        var name = r.String("name");
        // Without matches (absent or an empty list), Gateway API's default: every path.
        var matches = r.List("matches", ReadGatewayMatch);
        if (r.Get("matches") is null or YamlSequenceNode { Children.Count: 0 })
        {
            matches = [DefaultGatewayMatch()];
        }

        var actions = new GatewayActions();
        var types = new HashSet<string>(StringComparer.Ordinal);
        r.List("filters", f => ReadGatewayFilter(f, actions, types, ns, FilterScope.HttpRule));
        var backends = r.List("backendRefs", b => ReadBackendRef(b, ns));
        r.Map("timeouts", t => ReadGatewayTimeouts(t, actions));
        r.Map("retry", t => ReadGatewayRetry(t, actions));
        actions.Session = r.Map("sessionPersistence", ReadGatewaySession);

        if (actions.Redirect is not null && backends.Count > 0)
        {
            r.Context.Error(r.Get("backendRefs"), r.ChildPath("backendRefs"), "a rule with a RequestRedirect filter has no backendRefs (the redirect answers the request)");
        }

        if (actions.Redirect is not null && actions.Rewrite is not null)
        {
            r.Context.Error(r.Get("filters"), r.ChildPath("filters"), "RequestRedirect and URLRewrite exclude each other");
        }

        if (actions.ReplacePrefixPath is { } filterPath && (matches.Count != 1 || matches[0].Match.Uri?.Kind != StringMatchKind.PathPrefix))
        {
            // As Gateway API validates it: the prefix to replace is the one PathPrefix match of the rule.
            r.Context.Error(r.Get("filters"), filterPath, "replacePrefixMatch needs exactly one match, of type PathPrefix");
        }

        // Each attempt within backendRequest: the retry's, or Istio's default policy's when the rule sets none.
        if (actions.PerTry is { } perTry)
        {
            actions.Retries = actions.Retries is { } retry ? retry with { PerTryTimeout = perTry } : new RetrySpec(2, perTry, [], null);
        }

        return GatewayRoutes(name, matches, backends.Where(b => b.Weight > 0).ToArray(), actions, r.Location, index);
    }

    private static List<GatewayRouteRule> GatewayRoutes(string? name, IReadOnlyList<GatewayMatch> matches, IReadOnlyList<HttpRouteDestination> backends, GatewayActions actions, SourceLocation location, int index)
    {
        var headers = actions.RequestHeaders is null && actions.ResponseHeaders is null ? null : new HeadersSpec(actions.RequestHeaders, actions.ResponseHeaders);

        // No backend that takes traffic (none given, all of weight 0) and no redirect: Gateway API answers 500.
        var direct = actions.Redirect is null && backends.Count == 0 ? new DirectResponseSpec(500, ReadOnlyMemory<byte>.Empty) : null;
        return matches.Select(m => new GatewayRouteRule(new HttpRouteSpec
        {
            Name = name,
            Match = [m.Match],
            Route = direct is null ? backends : [],
            Headers = headers,
            Rewrite = actions.Rewrite,
            Redirect = actions.Redirect,
            DirectResponse = direct,
            Timeout = actions.Timeout,
            Retries = actions.Retries,
            Mirrors = actions.Mirrors,
            CorsPolicy = actions.Cors,
            SessionPersistence = actions.Session,
            Location = location,
        }, m.Precedence, index)).ToList();
    }

    private static GatewayMatch? ReadGatewayMatch(MapReader m)
    {
        var path = m.Map("path", ReadGatewayPath) ?? new GatewayPath(new StringMatchSpec(StringMatchKind.PathPrefix, "/"), 2);
        var headers = ReadGatewayNameValues(m, "headers", lowerCaseNames: true);
        var query = ReadGatewayNameValues(m, "queryParams", lowerCaseNames: false);
        var method = m.String("method");
        if (method is not null && !HttpMethods.Contains(method))
        {
            m.Context.Error(m.Get("method"), m.ChildPath("method"), $"'{method}' is not one of {string.Join(", ", HttpMethods)}");
        }

        var match = new HttpMatchRequest
        {
            Uri = path.Match,
            Method = method is null ? null : new StringMatchSpec(StringMatchKind.Exact, method),
            Headers = headers,
            QueryParams = query,
        };
        return new GatewayMatch(match, new MatchPrecedence(path.Kind, path.Match.Value.Length, 0, method is not null, headers.Count, query.Count));
    }

    private sealed record GatewayPath(StringMatchSpec Match, int Kind);

    private static GatewayPath? ReadGatewayPath(MapReader p)
    {
        var type = p.String("type") ?? "PathPrefix";
        var value = p.String("value") ?? "/";
        switch (type)
        {
            case "Exact" or "PathPrefix":
                if (!ValidGatewayPath(p, "value", value))
                {
                    return null;
                }

                return type == "Exact" ? new GatewayPath(new StringMatchSpec(StringMatchKind.Exact, value), 0) : new GatewayPath(new StringMatchSpec(StringMatchKind.PathPrefix, value), 2);
            case "RegularExpression":
                if (Patterns.TryCompileFullMatch(value, false, out var error) is null)
                {
                    p.Context.Error(p.Get("value"), p.ChildPath("value"), $"invalid regular expression: {error}");
                    return null;
                }

                return new GatewayPath(new StringMatchSpec(StringMatchKind.Regex, value), 1);
            default:
                p.Context.Error(p.Get("type"), p.ChildPath("type"), $"'{type}' is not one of Exact, PathPrefix, RegularExpression");
                return null;
        }
    }

    // As Gateway API validates an Exact or PathPrefix value: an absolute path, already normal.
    private static bool ValidGatewayPath(MapReader p, string key, string value)
    {
        string? why = value.Length == 0 || value[0] != '/' ? "must start with '/'"
            : value.Contains("//", StringComparison.Ordinal) || value.Contains("/./", StringComparison.Ordinal) || value.Contains("/../", StringComparison.Ordinal)
                || value.EndsWith("/..", StringComparison.Ordinal) || value.EndsWith("/.", StringComparison.Ordinal) ? "must not contain '//', '/./' or '/../', nor end in '/.' or '/..'"
            : value.Contains("%2f", StringComparison.OrdinalIgnoreCase) || value.Contains('#', StringComparison.Ordinal) || value.Contains('?', StringComparison.Ordinal) || value.Contains('\\', StringComparison.Ordinal) ? "must not contain '%2F', '#', '?' or '\\'"
            : null;
        if (why is not null)
        {
            p.Context.Error(p.Get(key) ?? p.Node, p.ChildPath(key), $"'{value}' {why}");
        }

        return why is null;
    }

    // Header or query parameter matches: Exact (the default) or RegularExpression; of two with one name, the first counts.
    private static Dictionary<string, StringMatchSpec> ReadGatewayNameValues(MapReader m, string key, bool lowerCaseNames)
    {
        var result = new Dictionary<string, StringMatchSpec>(StringComparer.Ordinal);
        m.List(key, e =>
        {
            var type = e.String("type") ?? "Exact";
            var name = e.String("name", required: true);
            var value = e.String("value", required: true);
            if (name is null || value is null)
            {
                return null;
            }

            var normalized = lowerCaseNames ? name.ToLowerInvariant() : name;
            if (result.ContainsKey(normalized))
            {
                e.Context.Warning(e.Get("name"), e.ChildPath("name"), $"'{name}' is matched by an entry before this one: Gateway API considers the first only, and this one is ignored");
                return null;
            }

            if (type == "RegularExpression" && Patterns.TryCompileFullMatch(value, false, out var error) is null)
            {
                e.Context.Error(e.Get("value"), e.ChildPath("value"), $"invalid regular expression: {error}");
                return null;
            }

            if (type is not ("Exact" or "RegularExpression"))
            {
                e.Context.Error(e.Get("type"), e.ChildPath("type"), $"'{type}' is not one of Exact, RegularExpression");
                return null;
            }

            result[normalized] = new StringMatchSpec(type == "Exact" ? StringMatchKind.Exact : StringMatchKind.Regex, value);
            return e;
        });
        return result;
    }

    private static MapReader? ReadGatewayFilter(MapReader f, GatewayActions actions, HashSet<string> types, string ns, FilterScope scope)
    {
        var type = f.String("type", required: true);
        if (type is null)
        {
            f.Ignore(FilterFields);
            return null;
        }

        var field = type switch
        {
            "URLRewrite" => "urlRewrite",
            "CORS" => "cors",
            _ => char.ToLowerInvariant(type[0]) + type[1..],
        };
        var misplaced = FilterFields.Where(o => o != field && f.Has(o)).ToArray();
        foreach (var other in misplaced)
        {
            f.Context.Error(f.Get(other), f.ChildPath(other), $"is set on a filter of type {type}");
        }

        f.Ignore(FilterFields);
        if (scope == FilterScope.GrpcRule && type is "URLRewrite" or "RequestRedirect" or "CORS")
        {
            f.Context.Error(f.Get("type"), f.ChildPath("type"), $"{type} is not a filter of GRPCRoute (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror)");
            return null;
        }

        if (scope == FilterScope.Backend && !HeaderFilters.Contains(type))
        {
            f.Context.Error(f.Get("type"), f.ChildPath("type"), $"a backend's filter of type {type} is not supported by MeshKit (a backend's filters edit headers: RequestHeaderModifier, ResponseHeaderModifier)");
            return null;
        }

        if (type != "RequestMirror" && !types.Add(type))
        {
            f.Context.Error(f.Get("type"), f.ChildPath("type"), $"a second {type} filter (Gateway API allows one per rule)");
            return null;
        }

        if (!FilterFields.Contains(field))
        {
            f.Context.Error(f.Get("type"), f.ChildPath("type"), $"'{type}' is not a filter type of HTTPRoute");
            return null;
        }

        if (!f.Has(field))
        {
            if (misplaced.Length == 0)
            {
                f.Context.Error(f.Node, f.ChildPath(field), $"is required for a filter of type {type}");
            }

            return null;
        }

        switch (type)
        {
            case "RequestHeaderModifier":
                actions.RequestHeaders = f.Map(field, o => ReadHeaderModifier(o, request: true));
                break;
            case "ResponseHeaderModifier":
                actions.ResponseHeaders = f.Map(field, o => ReadHeaderModifier(o, request: false));
                break;
            case "RequestRedirect":
                actions.Redirect = f.Map(field, d => ReadGatewayRedirect(d, actions));
                break;
            case "URLRewrite":
                actions.Rewrite = f.Map(field, w => ReadUrlRewrite(w, actions));
                break;
            case "RequestMirror":
                if (f.Map(field, m => ReadGatewayMirror(m, ns)) is { } mirror)
                {
                    actions.Mirrors.Add(mirror);
                }

                break;
            case "CORS":
                actions.Cors = f.Map(field, ReadGatewayCors);
                break;
            default:
                f.Context.Error(f.Get(field), f.ChildPath(field), "is not supported by MeshKit: an extension filter names a resource of another implementation");
                break;
        }

        return f;
    }

    private sealed record HeaderPair(string Name, string Value);

    private static HeaderOperationsSpec ReadHeaderModifier(MapReader o, bool request)
    {
        Dictionary<string, string> Pairs(string key)
        {
            var pairs = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var pair in o.List(key, e => e.String("name", required: true) is { } n ? new HeaderPair(n, e.String("value", required: true) ?? string.Empty) : null))
            {
                if (!pairs.TryAdd(pair.Name, pair.Value))
                {
                    o.Context.Error(o.Get(key), o.ChildPath(key), $"'{pair.Name}' is named twice (header names are case-insensitive)");
                }
            }

            return new Dictionary<string, string>(pairs, StringComparer.Ordinal);
        }

        return CheckHeaderOperations(o, Pairs("set"), Pairs("add"), o.Strings("remove"), request);
    }

    private static RedirectSpec? ReadGatewayRedirect(MapReader d, GatewayActions actions)
    {
        var scheme = d.String("scheme");
        var hostname = d.String("hostname");
        var port = d.UInt("port", 1, 65535);
        var code = d.UInt("statusCode", 0, 999) ?? 302;
        if (code is not (301 or 302 or 303 or 307 or 308))
        {
            d.Context.Error(d.Get("statusCode"), d.ChildPath("statusCode"), $"{code} is not one of 301, 302, 303, 307, 308");
        }

        if (scheme is not null && scheme is not ("http" or "https"))
        {
            d.Context.Error(d.Get("scheme"), d.ChildPath("scheme"), $"'{scheme}' must be http or https");
        }

        if (hostname is not null)
        {
            ValidateHostName(d, d.ChildPath("hostname"), hostname, allowWildcard: false);
        }

        var path = d.Map("path", p => ReadPathModifier(p, actions));

        // The port: as given; else the scheme's well-known one when the scheme changes; else the request's (the
        // port the call was made to, a listener's in Gateway API's words).
        var wellKnown = scheme switch { "http" => 80u, "https" => 443u, _ => (uint?)null };
        return new RedirectSpec(path?.Value, hostname, port ?? wellKnown, scheme, code, PortFromRequest: port is null && wellKnown is null)
        {
            ReplacesPrefix = path?.ReplacesPrefix == true,
        };
    }

    private static RewriteSpec? ReadUrlRewrite(MapReader w, GatewayActions actions)
    {
        var hostname = w.String("hostname");
        if (hostname is not null)
        {
            ValidateHostName(w, w.ChildPath("hostname"), hostname, allowWildcard: false);
        }

        var path = w.Map("path", p => ReadPathModifier(p, actions));
        if (hostname is null && path is null)
        {
            w.Context.Error(w.Node, w.Path, "needs hostname or path");
            return null;
        }

        // The whole path replaced whatever the match: a regex over all of it (a prefix match would replace its prefix).
        return path is { ReplacesPrefix: false } full
            ? new RewriteSpec(null, hostname, "^.*$", full.Value)
            : new RewriteSpec(path?.Value, hostname, null, null); // the one PathPrefix match's segments replaced (RouteActions)
    }

    private sealed record PathModifier(string Value, bool ReplacesPrefix);

    private static PathModifier? ReadPathModifier(MapReader p, GatewayActions actions)
    {
        var type = p.String("type", required: true);
        var full = p.String("replaceFullPath");
        var prefix = p.String("replacePrefixMatch");
        switch (type)
        {
            case "ReplaceFullPath" when full is not null && prefix is null:
                return ValidGatewayPath(p, "replaceFullPath", full) ? new PathModifier(full, false) : null;
            case "ReplacePrefixMatch" when prefix is not null && full is null:
                actions.ReplacePrefixPath = p.ChildPath("replacePrefixMatch");
                return ValidGatewayPath(p, "replacePrefixMatch", prefix) ? new PathModifier(prefix, true) : null;
            case "ReplaceFullPath" or "ReplacePrefixMatch":
                p.Context.Error(p.Node, p.Path, $"type {type} sets {(type == "ReplaceFullPath" ? "replaceFullPath" : "replacePrefixMatch")} and only it");
                return null;
            case null:
                return null;
            default:
                p.Context.Error(p.Get("type"), p.ChildPath("type"), $"'{type}' is not one of ReplaceFullPath, ReplacePrefixMatch");
                return null;
        }
    }

    private static MirrorSpec? ReadGatewayMirror(MapReader m, string ns)
    {
        var destination = m.Map("backendRef", b => ReadBackendTarget(b, ns));
        if (!m.Has("backendRef"))
        {
            m.Context.Error(m.Node, m.ChildPath("backendRef"), "is required");
        }

        var percent = m.Int("percent", 0, 100);
        var fraction = m.Map("fraction", f =>
        {
            var numerator = f.Int("numerator", 0, int.MaxValue);
            var denominator = f.Int("denominator", 1, int.MaxValue) ?? 100;
            if (numerator is null && !f.Has("numerator"))
            {
                f.Context.Error(f.Node, f.ChildPath("numerator"), "is required");
            }

            if (numerator > denominator)
            {
                f.Context.Error(f.Node, f.Path, "numerator must not exceed denominator");
            }

            return new Fraction(100.0 * (numerator ?? 0) / denominator);
        });
        if (percent is not null && fraction is not null)
        {
            m.Context.Error(m.Node, m.Path, "percent and fraction exclude each other");
        }

        return destination is null ? null : new MirrorSpec(destination, fraction?.Percent ?? percent ?? 100);
    }

    private sealed record Fraction(double Percent);

    private static HttpRouteDestination? ReadBackendRef(MapReader b, string ns)
    {
        var destination = ReadBackendTarget(b, ns);
        var weight = b.Int("weight", 0, 1_000_000) ?? 1;
        var actions = new GatewayActions();
        var types = new HashSet<string>(StringComparer.Ordinal);
        b.List("filters", f => ReadGatewayFilter(f, actions, types, ns, FilterScope.Backend));
        var headers = actions.RequestHeaders is null && actions.ResponseHeaders is null ? null : new HeadersSpec(actions.RequestHeaders, actions.ResponseHeaders);
        return destination is null ? null : new HttpRouteDestination(destination, weight, headers);
    }

    /// <summary>
    /// A Service backend: its host is written <c>name.namespace.svc</c>, to which ConfigSet appends the cluster domain
    /// (the parser does not know it); backends in any namespace, as Gateway API allows a mesh route's. Or, as Istio
    /// extends it, a host name (<c>group: networking.istio.io</c>, <c>kind: Hostname</c>: a ServiceEntry's host),
    /// written as it is (a name ending in <c>.svc</c> is completed with the cluster domain too, as Kubernetes does).
    /// </summary>
    private static Destination? ReadBackendTarget(MapReader b, string routeNamespace)
    {
        var group = b.String("group") ?? string.Empty;
        var kind = b.String("kind") ?? "Service";
        var name = b.String("name", required: true);
        var ns = b.String("namespace");
        var port = b.UInt("port", 1, 65535);
        if (kind == "Hostname" && group == "networking.istio.io")
        {
            if (ns is not null)
            {
                b.Context.Error(b.Get("namespace"), b.ChildPath("namespace"), "a Hostname backend has no namespace");
            }

            if (name is not null)
            {
                ValidateHostName(b, b.ChildPath("name"), name, allowWildcard: false);
            }

            if (port is null && !b.Has("port"))
            {
                b.Context.Error(b.Node, b.ChildPath("port"), "is required for a Hostname backend");
            }

            return name is null ? null : new Destination(name.ToLowerInvariant(), null, port);
        }

        ns ??= routeNamespace;
        if (kind != "Service" || group is not ("" or "core"))
        {
            b.Context.Error(b.Get("kind") ?? b.Get("group") ?? b.Node, b.ChildPath("kind"), $"a backend of kind {kind} (group '{group}') is not supported by MeshKit: name a Service (or, as Istio allows, a ServiceEntry's host as kind Hostname of group networking.istio.io)");
            return null;
        }

        if (port is null && !b.Has("port"))
        {
            b.Context.Error(b.Node, b.ChildPath("port"), "is required for a Service backend");
        }

        if (name is not null && !Names.IsDnsLabel(name))
        {
            b.Context.Error(b.Get("name"), b.ChildPath("name"), $"'{name}' is not a valid Service name (lower-case DNS-1123 label)");
            return null;
        }

        if (!Names.IsDnsLabel(ns))
        {
            b.Context.Error(b.Get("namespace"), b.ChildPath("namespace"), $"'{ns}' is not a valid namespace (lower-case DNS-1123 label)");
            return null;
        }

        return name is null ? null : new Destination($"{name}.{ns}.svc", null, port);
    }

    private static MapReader ReadGatewayTimeouts(MapReader t, GatewayActions actions)
    {
        var request = t.Duration("request");
        var backendRequest = t.Duration("backendRequest");
        if (request is { } r && backendRequest is { } b && r > TimeSpan.Zero && b > r)
        {
            t.Context.Error(t.Get("backendRequest"), t.ChildPath("backendRequest"), "must not be longer than request");
        }

        // 0s disables either (the model's zero timeout; no per-try timeout).
        actions.Timeout = request;
        actions.PerTry = backendRequest > TimeSpan.Zero ? backendRequest : null;
        return t;
    }

    private static MapReader ReadGatewayRetry(MapReader t, GatewayActions actions)
    {
        var attempts = t.Int("attempts", 0, 1000) ?? 2;
        var backoff = t.Duration("backoff");
        var codes = new List<string>();
        if (t.Get("codes") is YamlSequenceNode list)
        {
            for (var i = 0; i < list.Children.Count; i++)
            {
                var path = $"{t.ChildPath("codes")}[{i}]";
                if (list.Children[i] is YamlScalarNode { Value: { } text } && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var code) && code is >= 400 and <= 599)
                {
                    codes.Add(code.ToString(CultureInfo.InvariantCulture));
                }
                else
                {
                    t.Context.Error(list.Children[i], path, "must be an HTTP status code from 400 to 599");
                }
            }
        }
        else if (t.Get("codes") is { } other)
        {
            t.Context.Error(other, t.ChildPath("codes"), "must be a list");
        }

        t.Ignore("codes");
        actions.Retries = new RetrySpec(attempts, null, [.. GatewayRetryOn, .. codes], null) { Backoff = backoff };
        return t;
    }

    // GRPCRoute: its rules match a call's service and method (the path /service/method) and headers; its filters edit
    // headers and mirror; it has no timeouts or retries of its own (Istio's default policy applies, as to a VirtualService).
    private static List<GatewayRouteRule> ReadGrpcRule(MapReader r, int index, string ns)
    {
        var name = r.String("name");
        var matches = r.List("matches", ReadGrpcMatch);
        if (r.Get("matches") is null or YamlSequenceNode { Children.Count: 0 })
        {
            matches = [new GatewayMatch(new HttpMatchRequest { Uri = new StringMatchSpec(StringMatchKind.PathPrefix, "/") }, default(MatchPrecedence))];
        }

        var actions = new GatewayActions();
        var types = new HashSet<string>(StringComparer.Ordinal);
        r.List("filters", f => ReadGatewayFilter(f, actions, types, ns, FilterScope.GrpcRule));
        var backends = r.List("backendRefs", b => ReadBackendRef(b, ns));
        actions.Session = r.Map("sessionPersistence", ReadGatewaySession);
        return GatewayRoutes(name, matches, backends.Where(b => b.Weight > 0).ToArray(), actions, r.Location, index);
    }

    private static GatewayMatch? ReadGrpcMatch(MapReader m)
    {
        var headers = ReadGatewayNameValues(m, "headers", lowerCaseNames: true);
        var method = m.Map("method", ReadGrpcMethod) ?? new GrpcMethod(new StringMatchSpec(StringMatchKind.PathPrefix, "/"), 0, 0);
        return new GatewayMatch(new HttpMatchRequest { Uri = method.Path, Headers = headers }, new MatchPrecedence(0, method.ServiceLength, method.MethodLength, false, headers.Count, 0));
    }

    private sealed record GrpcMethod(StringMatchSpec Path, int ServiceLength, int MethodLength);

    // A gRPC call's path is /package.Service/Method: an exact service and method are an exact path, a service alone a
    // prefix, a method alone (or a regular expression) a regular expression over the path.
    private static GrpcMethod? ReadGrpcMethod(MapReader m)
    {
        var type = m.String("type") ?? "Exact";
        var service = m.String("service");
        var method = m.String("method");
        if (type == "Exact")
        {
            if (service is null && method is null)
            {
                m.Context.Error(m.Node, m.Path, "an Exact method match names a service, a method or both");
                return null;
            }

            if (service is not null && !IsGrpcServiceName(service))
            {
                m.Context.Error(m.Get("service"), m.ChildPath("service"), $"'{service}' is not a gRPC service name (package.Service)");
                return null;
            }

            if (method is not null && !IsGrpcMethodName(method))
            {
                m.Context.Error(m.Get("method"), m.ChildPath("method"), $"'{method}' is not a gRPC method name");
                return null;
            }

            var path = (service, method) switch
            {
                ({ } s, { } me) => new StringMatchSpec(StringMatchKind.Exact, $"/{s}/{me}"),
                ({ } s, null) => new StringMatchSpec(StringMatchKind.Prefix, $"/{s}/"),
                _ => new StringMatchSpec(StringMatchKind.Regex, $"/[^/]+/{method}"),
            };
            return new GrpcMethod(path, service?.Length ?? 0, method?.Length ?? 0);
        }

        if (type != "RegularExpression")
        {
            m.Context.Error(m.Get("type"), m.ChildPath("type"), $"'{type}' is not one of Exact, RegularExpression");
            return null;
        }

        foreach (var (key, value) in new[] { ("service", service), ("method", method) })
        {
            if (value is not null && Patterns.TryCompileFullMatch(value, false, out var error) is null)
            {
                m.Context.Error(m.Get(key), m.ChildPath(key), $"invalid regular expression: {error}");
                return null;
            }
        }

        return new GrpcMethod(new StringMatchSpec(StringMatchKind.Regex, $"/(?:{service ?? "[^/]+"})/(?:{method ?? "[^/]+"})"), service?.Length ?? 0, method?.Length ?? 0);
    }

    // As Gateway API validates them: a service is dotted identifiers (an optional leading dot), a method one identifier.
    private static bool IsGrpcServiceName(string service) =>
        System.Text.RegularExpressions.Regex.IsMatch(service, @"^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$", System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1));

    private static bool IsGrpcMethodName(string method) =>
        System.Text.RegularExpressions.Regex.IsMatch(method, "^[A-Za-z_][A-Za-z_0-9]*$", System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1));
}
