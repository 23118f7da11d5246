using System.Globalization;
using System.Text.RegularExpressions;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// VirtualService (networking.istio.io): hosts, HTTP routes and their matches, destinations, retries, faults, mirrors, rewrites.
public static partial class ConfigParser
{
    private static VirtualService? ReadVirtualService(MapReader s, Header h)
    {
        if (s.Strings("gateways") is { Count: > 0 } onlyGateways && !onlyGateways.Contains("mesh"))
        {
            // Bound to gateways only: in Istio it configures no sidecar, so it configures no MeshKit workload either.
            // Skipped with a warning, so that an export of a cluster's config (ingress routes included) applies as is.
            s.Context.Warning(s.Get("gateways"), s.ChildPath("gateways"), "binds this VirtualService to gateways only: like a sidecar in Istio, no MeshKit workload uses it, and it is ignored");
            s.Ignore("hosts", "gateways", "http", "tls", "tcp", "exportTo");
            return null;
        }

        var hosts = s.Strings("hosts");
        s.AnchorItems("hosts");
        if (hosts.Count == 0)
        {
            s.Context.Error(s.Node, s.ChildPath("hosts"), "at least one host is required");
        }

        var hostItems = s.Get("hosts") as YamlSequenceNode;
        for (var i = 0; i < hosts.Count; i++)
        {
            var path = $"{s.ChildPath("hosts")}[{i}]";
            var node = hostItems?.Children.ElementAtOrDefault(i) ?? s.Node;
            if (hosts[i] == "*")
            {
                // As Istio refuses it for the mesh gateway: it would take every call the workload makes.
                s.Context.Error(node, path, "the wildcard host '*' cannot apply to the mesh; name the hosts (or '*.domain')");
                continue;
            }

            ValidateRouteHost(s, path, hosts[i]);
            if (hosts.Take(i).FirstOrDefault(earlier => HostsOverlap(earlier, hosts[i])) is { } covered)
            {
                s.Context.Error(node, path, $"'{hosts[i]}' repeats '{covered}' of the same VirtualService");
            }
        }

        var gateways = s.Strings("gateways");
        if (gateways.Any(g => g != "mesh"))
        {
            s.Context.Warning(s.Get("gateways"), s.ChildPath("gateways"), "gateways other than 'mesh' are not supported by MeshKit and are ignored");
        }

        var exportTo = ReadExportTo(s);
        s.Context.AlsoForGateways = gateways.Any(g => g != "mesh");
        var http = s.List("http", ReadHttpRoute);
        s.Context.AlsoForGateways = false;
        WarnUnreachable(s, http);
        s.NotSupported("tls", DiagnosticSeverity.Warning, "only HTTP routes are supported");
        s.NotSupported("tcp", DiagnosticSeverity.Warning, "only HTTP routes are supported");
        return Fill(new VirtualService
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Hosts = hosts, Gateways = gateways, ExportTo = exportTo, Http = http,
        }, h);
    }

    /// <summary>Whether two hosts of one VirtualService name the same calls (equal, or one wildcard covers the other), as Istio checks.</summary>
    private static bool HostsOverlap(string a, string b)
    {
        static bool Covers(string wildcard, string host) =>
            wildcard.StartsWith("*.", StringComparison.Ordinal) && host.EndsWith(wildcard[1..], StringComparison.OrdinalIgnoreCase);

        return a.Equals(b, StringComparison.OrdinalIgnoreCase) || Covers(a, b) || Covers(b, a);
    }

    /// <summary>Rules after one without a match never apply: a warning, as Istio's analysis gives (the config still applies).</summary>
    private static void WarnUnreachable(MapReader s, IReadOnlyList<HttpRouteSpec> http)
    {
        var catchAll = -1;
        var items = (s.Get("http") as YamlSequenceNode)?.Children ?? [];
        for (var i = 0; i < items.Count; i++)
        {
            // By the rule's place in the file: a rule skipped for naming gateways only is not in the list.
            var location = s.Context.Locate(items[i]);
            if (http.FirstOrDefault(r => r.Location == location) is not { } route)
            {
                continue;
            }

            if (catchAll >= 0)
            {
                var name = route.Name is { Length: > 0 } n ? $" '{n}'" : string.Empty;
                s.Context.Warning(items[i], $"{s.ChildPath("http")}[{i}]", $"rule{name} is never used: http[{catchAll}] before it has no match and takes every request");
            }
            else if (route.Match.Count == 0)
            {
                catchAll = i;
            }
        }
    }

    private static HttpRouteSpec? ReadHttpRoute(MapReader r)
    {
        var name = r.String("name");
        var errorsBefore = r.Context.ErrorCount;
        var match = r.List("match", ReadHttpMatch);

        // Every match block names gateways only (each skipped, below): the rule never applies to a sidecar in Istio.
        var gatewaysOnly = r.Get("match") is YamlSequenceNode { Children.Count: > 0 } && match.Count == 0 && r.Context.ErrorCount == errorsBefore;
        var route = r.List("route", ReadRouteDestination);
        var headers = r.Map("headers", ReadHeaders);
        var rewrite = r.Map("rewrite", ReadRewrite);
        var redirect = r.Map("redirect", ReadRedirect);
        var direct = r.Map("directResponse", ReadDirectResponse);
        var timeout = r.TimerDuration("timeout"); // as Istio validates it: 0s is not "no timeout", it is refused
        var retries = r.Map("retries", ReadRetries);
        var fault = r.Map("fault", ReadFault);
        var mirrors = ReadMirrors(r);
        var cors = r.Map("corsPolicy", ReadCors);
        r.NotSupported("delegate", DiagnosticSeverity.Error, "delegate VirtualServices apply to gateways, which MeshKit has not");

        var actions = (route.Count > 0 ? 1 : 0) + (redirect is null ? 0 : 1) + (direct is null ? 0 : 1);
        if (actions == 0 && !r.Has("delegate"))
        {
            r.Context.Error(r.Node, r.ChildPath("route"), "a route needs destinations, a redirect or a direct response");
        }
        else if (actions > 1)
        {
            r.Context.Error(r.Node, r.Path, "route, redirect and directResponse exclude each other");
        }

        if (rewrite is not null && (redirect is not null || direct is not null))
        {
            r.Context.Error(r.Get("rewrite"), r.ChildPath("rewrite"), "cannot be combined with redirect or directResponse");
        }

        if (fault is not null && (redirect is not null || direct is not null))
        {
            r.Context.Error(r.Get("fault"), r.ChildPath("fault"), "cannot be combined with redirect or directResponse");
        }

        if (rewrite?.Authority is not null && headers?.Request?.Set.ContainsKey("Host") == true)
        {
            r.Context.Error(r.Get("headers"), r.ChildPath("headers.request"), "the authority is set twice: by rewrite.authority and by a host or :authority header edit");
        }

        if (route.Count > 1)
        {
            var total = route.Sum(d => d.Weight ?? 0);
            if (total == 0)
            {
                r.Context.Error(r.Get("route"), r.ChildPath("route"), "with several destinations, weights are required and must not all be 0");
            }
        }

        if (gatewaysOnly)
        {
            r.Context.Warning(r.Node, r.Path, "every match block names gateways only: no MeshKit workload uses this rule (nor does a sidecar in Istio); it is ignored");
            return null;
        }

        return new HttpRouteSpec
        {
            Name = name, Match = match, Route = route, Headers = headers, Rewrite = rewrite, Redirect = redirect, DirectResponse = direct,
            Timeout = timeout, Retries = retries, Fault = fault, Mirrors = mirrors, CorsPolicy = cors,
            Location = r.Location,
        };
    }

    private static readonly string[] RetryConditions =
    [
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited", "retriable-4xx",
        "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
        "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
    ];

    private static readonly string[] GrpcStatuses =
    [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    ];

    private static RetrySpec ReadRetries(MapReader r)
    {
        var attempts = r.Int("attempts", 0, 1000) ?? 0;
        var perTry = r.TimerDuration("perTryTimeout");
        var retryOn = (r.String("retryOn") ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var condition in retryOn)
        {
            if (!RetryConditions.Contains(condition) && !(int.TryParse(condition, NumberStyles.None, CultureInfo.InvariantCulture, out var code) && code is >= 100 and <= 599))
            {
                r.Context.Error(r.Get("retryOn"), r.ChildPath("retryOn"), $"unknown retry condition '{condition}'; expected one of {string.Join(", ", RetryConditions)} or an HTTP status code");
            }
        }

        var remote = r.Bool("retryRemoteLocalities");
        if (attempts == 0 && (perTry is not null || retryOn.Length > 0 || remote is not null))
        {
            // As Istio validates: the rest of the policy would silently do nothing.
            r.Context.Error(r.Get("attempts") ?? r.Node, r.ChildPath("attempts"), "http retry policy configured when attempts are set to 0 (disabled)");
        }

        return new RetrySpec(attempts, perTry, retryOn, remote)
        {
            Backoff = r.TimerDuration("backoff"),
            RetryIgnorePreviousHosts = r.Bool("retryIgnorePreviousHosts"),
        };
    }

    private static double ReadPercentage(MapReader r, string key = "percentage")
    {
        var box = r.Map(key, p => new PercentBox(p.Double("value", 0, 100)));
        return box?.Value ?? 100;
    }

    private sealed record PercentBox(double? Value);

    // Istio validates maxAge as a duration of at least 1 ms that is, besides, whole seconds (Access-Control-Max-Age).
    private static TimeSpan? ReadMaxAge(MapReader c)
    {
        var maxAge = c.TimerDuration("maxAge");
        if (maxAge is { } age && age.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            c.Context.Error(c.Get("maxAge"), c.ChildPath("maxAge"), $"must be whole seconds (got {c.String("maxAge")})");
            return null;
        }

        return maxAge;
    }

    private static FaultSpec ReadFault(MapReader f)
    {
        var delay = f.Map("delay", d =>
        {
            var fixedDelay = d.TimerDuration("fixedDelay");
            if (fixedDelay is null && !d.Has("fixedDelay"))
            {
                d.Context.Error(d.Node, d.ChildPath("fixedDelay"), "is required");
            }

            d.NotSupported("exponentialDelay", DiagnosticSeverity.Error, "Istio does not support it either");
            var percent = d.Int("percent", 0, 100);
            var percentage = d.Has("percentage") ? ReadPercentage(d) : percent ?? 100;
            return new FaultDelaySpec(fixedDelay ?? TimeSpan.Zero, percentage);
        });
        var abort = f.Map("abort", a =>
        {
            var http = a.Int("httpStatus", 200, 599);
            var grpc = a.String("grpcStatus");
            if (grpc is not null && !GrpcStatuses.Contains(grpc))
            {
                a.Context.Error(a.Get("grpcStatus"), a.ChildPath("grpcStatus"), $"unknown gRPC status '{grpc}'");
            }

            a.NotSupported("http2Error", DiagnosticSeverity.Error, "Istio refuses it too (HTTP/2 abort fault injection is not supported yet); use httpStatus or grpcStatus");
            if ((http is null) == (grpc is null) && !a.Has("http2Error"))
            {
                a.Context.Error(a.Node, a.Path, "exactly one of httpStatus or grpcStatus is required");
            }

            return new FaultAbortSpec(http, grpc, ReadPercentage(a));
        });
        if (delay is null && abort is null)
        {
            f.Context.Error(f.Node, f.Path, "needs delay or abort");
        }

        return new FaultSpec(delay, abort);
    }

    private static IReadOnlyList<MirrorSpec> ReadMirrors(MapReader r)
    {
        var result = new List<MirrorSpec>();
        var single = r.Map("mirror", ReadDestination);
        var legacyPercent = r.Int("mirrorPercent", 0, 100) ?? r.Int("mirror_percent", 0, 100);
        var percentage = r.Has("mirrorPercentage") ? ReadPercentage(r, "mirrorPercentage") : legacyPercent ?? 100;
        if (single is not null)
        {
            result.Add(new MirrorSpec(single, percentage));
        }
        else if (r.Has("mirrorPercentage") || legacyPercent is not null)
        {
            r.Context.Error(r.Node, r.ChildPath("mirrorPercentage"), "needs mirror");
        }

        var many = r.List("mirrors", m =>
        {
            var destination = m.Map("destination", ReadDestination);
            if (destination is null)
            {
                m.Context.Error(m.Node, m.ChildPath("destination"), "is required");
                return null;
            }

            return new MirrorSpec(destination, ReadPercentage(m));
        });
        if (single is not null && many.Count > 0)
        {
            r.Context.Error(r.Node, r.Path, "mirror and mirrors exclude each other");
        }

        result.AddRange(many);
        return result;
    }

    private static CorsPolicySpec ReadCors(MapReader c)
    {
        var origins = new List<StringMatchSpec>();
        foreach (var exact in c.Strings("allowOrigin"))
        {
            origins.Add(new StringMatchSpec(StringMatchKind.Exact, exact));
        }

        origins.AddRange(c.List("allowOrigins", o => ReadStringMatch(o, ignoreCase: false, allowPresence: false)));
        var unmatched = c.String("unmatchedPreflights");
        if (unmatched is not null && unmatched is not ("FORWARD" or "IGNORE" or "UNSPECIFIED"))
        {
            c.Context.Error(c.Get("unmatchedPreflights"), c.ChildPath("unmatchedPreflights"), $"unknown value '{unmatched}'; expected FORWARD or IGNORE");
        }

        return new CorsPolicySpec
        {
            AllowOrigins = origins,
            AllowMethods = c.Strings("allowMethods"),
            AllowHeaders = c.Strings("allowHeaders"),
            ExposeHeaders = c.Strings("exposeHeaders"),
            MaxAge = ReadMaxAge(c),
            AllowCredentials = c.Bool("allowCredentials"),
            UnmatchedPreflights = unmatched,
        };
    }

    private static HeadersSpec ReadHeaders(MapReader h) =>
        new(h.Map("request", o => ReadHeaderOperations(o, request: true)), h.Map("response", o => ReadHeaderOperations(o, request: false)));

    /// <summary>
    /// Header edits. As in Istio, <c>host</c> or <c>:authority</c> set or added on a request rewrites the authority
    /// (read as a <c>set</c> of <c>Host</c>); any other pseudo-header, removing <c>host</c>, and either on a
    /// response are errors.
    /// </summary>
    private static HeaderOperationsSpec ReadHeaderOperations(MapReader o, bool request) =>
        CheckHeaderOperations(o, o.StringMap("set"), o.StringMap("add"), o.Strings("remove"), request);

    /// <summary>Checks header edits read from <paramref name="o"/>'s <c>set</c>, <c>add</c> and <c>remove</c> (a VirtualService's maps, an HTTPRoute's lists).</summary>
    private static HeaderOperationsSpec CheckHeaderOperations(MapReader o, IReadOnlyDictionary<string, string> set, IReadOnlyDictionary<string, string> add, IReadOnlyList<string> remove, bool request)
    {
        string? authority = null;
        foreach (var (field, names) in new[] { ("set", set.Keys), ("add", add.Keys), ("remove", (IEnumerable<string>)remove) })
        {
            foreach (var name in names)
            {
                var isAuthority = IsAuthorityHeader(name);
                if (isAuthority && request && field != "remove")
                {
                    if (authority is not null)
                    {
                        o.Context.Error(o.Get(field), o.ChildPath(field), $"the authority is set twice ('{authority}' and '{name}')");
                    }

                    authority = name;
                }
                else if (isAuthority || name.StartsWith(':'))
                {
                    o.Context.Error(o.Get(field), o.ChildPath(field), $"'{name}': a header edit cannot touch a pseudo-header or host here (a request's set or add of host or :authority rewrites the authority)");
                }
                else if (!IsHeaderToken(name))
                {
                    o.Context.Error(o.Get(field), o.ChildPath(field), $"'{name}' is not a valid header name");
                }
            }
        }

        if (authority is not null)
        {
            // One place carries it: a set of Host (an add would give the request two authorities).
            var value = set.TryGetValue(authority, out var v) ? v : add[authority];
            set = set.Where(e => !IsAuthorityHeader(e.Key)).Append(new("Host", value)).ToDictionary(StringComparer.Ordinal);
            add = add.Where(e => !IsAuthorityHeader(e.Key)).ToDictionary(StringComparer.Ordinal);
        }

        return new HeaderOperationsSpec(set, add, remove);
    }

    private static RewriteSpec ReadRewrite(MapReader w)
    {
        var uri = w.String("uri");
        var authority = w.String("authority");
        var regex = w.Map("uriRegexRewrite", x =>
        {
            var match = x.String("match", required: true);
            var rewrite = x.String("rewrite", required: true);
            if (match is not null && Patterns.TryCompileFullMatch(match, false, out var error) is null)
            {
                x.Context.Error(x.Get("match"), x.ChildPath("match"), $"invalid regular expression: {error}");
            }

            return new RegexBox(match ?? string.Empty, rewrite ?? string.Empty);
        });
        if (uri is not null && regex is not null)
        {
            w.Context.Error(w.Node, w.Path, "uri and uriRegexRewrite exclude each other");
        }

        if (uri is not null && uri.Length > 0 && uri[0] != '/')
        {
            w.Context.Error(w.Get("uri"), w.ChildPath("uri"), "must start with '/'");
        }

        if (uri is null && authority is null && regex is null)
        {
            w.Context.Error(w.Node, w.Path, "needs uri, authority or uriRegexRewrite");
        }

        return new RewriteSpec(uri, authority, regex?.Match, regex?.Rewrite);
    }

    private sealed record RegexBox(string Match, string Rewrite);

    private static RedirectSpec ReadRedirect(MapReader d)
    {
        var uri = d.String("uri");
        var authority = d.String("authority");
        var port = d.UInt("port", 1, 65535);
        var scheme = d.String("scheme");
        var code = d.UInt("redirectCode", 300, 399) ?? 301;
        var derive = d.String("derivePort");
        if (derive is not null && derive is not ("FROM_PROTOCOL_DEFAULT" or "FROM_REQUEST_PORT"))
        {
            d.Context.Error(d.Get("derivePort"), d.ChildPath("derivePort"), $"unknown value '{derive}'; expected FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT");
        }

        if (port is not null && derive is not null)
        {
            d.Context.Error(d.Node, d.Path, "port and derivePort exclude each other");
        }

        if (scheme is not null && scheme is not ("http" or "https"))
        {
            d.Context.Error(d.Get("scheme"), d.ChildPath("scheme"), $"'{scheme}' must be http or https");
        }

        if (uri is not null && uri.Length > 0 && uri[0] != '/')
        {
            d.Context.Error(d.Get("uri"), d.ChildPath("uri"), "must start with '/'");
        }

        return new RedirectSpec(uri, authority, port, scheme, code, derive == "FROM_REQUEST_PORT");
    }

    private static DirectResponseSpec ReadDirectResponse(MapReader d)
    {
        var status = d.UInt("status", 200, 599);
        if (status is null && !d.Has("status"))
        {
            d.Context.Error(d.Node, d.ChildPath("status"), "is required");
        }

        var body = d.Map("body", b =>
        {
            var text = b.String("string");
            var bytes = b.String("bytes");
            if (text is not null && bytes is not null)
            {
                b.Context.Error(b.Node, b.Path, "string and bytes exclude each other");
            }

            if (bytes is not null)
            {
                try
                {
                    return new BodyBox(Convert.FromBase64String(bytes));
                }
                catch (FormatException)
                {
                    b.Context.Error(b.Get("bytes"), b.ChildPath("bytes"), "must be base64");
                    return null;
                }
            }

            return new BodyBox(System.Text.Encoding.UTF8.GetBytes(text ?? string.Empty));
        });
        return new DirectResponseSpec(status ?? 0, body?.Bytes ?? ReadOnlyMemory<byte>.Empty);
    }

    private sealed record BodyBox(byte[] Bytes);

    private static HttpMatchRequest? ReadHttpMatch(MapReader m)
    {
        var ignoreCase = m.Bool("ignoreUriCase") ?? false;
        var result = new HttpMatchRequest
        {
            Name = m.String("name"),
            StatPrefix = m.String("statPrefix") is { Length: > 0 } statPrefix ? statPrefix : null,
            Uri = m.Map("uri", r => ReadStringMatch(r, ignoreCase, allowPresence: false)),
            Scheme = m.Map("scheme", r => ReadStringMatch(r, false, allowPresence: false)),
            Method = m.Map("method", r => ReadStringMatch(r, false, allowPresence: false)),
            Authority = m.Map("authority", r => ReadStringMatch(r, false, allowPresence: false)),
            Headers = ReadStringMatchMap(m, "headers", lowerCaseKeys: true, allowPrefix: true),
            WithoutHeaders = ReadStringMatchMap(m, "withoutHeaders", lowerCaseKeys: true, allowPrefix: true),
            QueryParams = ReadStringMatchMap(m, "queryParams", lowerCaseKeys: false, allowPrefix: false),
            Port = m.UInt("port", 1, 65535),
            SourceLabels = m.StringMap("sourceLabels"),
            SourceNamespace = m.String("sourceNamespace"),
        };

        if (m.Strings("gateways") is { Count: > 0 } gateways && !gateways.Contains("mesh"))
        {
            // A block for gateways never matches on a sidecar in Istio; MeshKit has sidecars' place only.
            m.Context.Warning(m.Get("gateways"), m.ChildPath("gateways"), "names gateways only: this match block never applies to a MeshKit workload (nor to a sidecar in Istio) and is skipped");
            return null;
        }

        // Istio refuses JWT-claim routing in a VirtualService for the mesh only; bound to gateways too, the block
        // is valid, and on a sidecar (as here) the claim never matches: no token is validated on the way out.
        foreach (var (field, names) in m.Context.AlsoForGateways ? [] : new[] { ("headers", result.Headers.Keys), ("withoutHeaders", result.WithoutHeaders.Keys) })
        {
            foreach (var name in names.Where(n => n.StartsWith("@request.auth.claims", StringComparison.Ordinal)))
            {
                m.Context.Error(m.Get(field), $"{m.ChildPath(field)}.{name}", "routing on JWT claims applies to gateways only (as in Istio), and MeshKit has none");
            }
        }

        if (result.SourceNamespace is { } sourceNamespace && !Names.IsDnsLabel(sourceNamespace))
        {
            m.Context.Error(m.Get("sourceNamespace"), m.ChildPath("sourceNamespace"), $"'{sourceNamespace}' is not a namespace name (a DNS-1123 label)");
        }

        return result;
    }

    private static IReadOnlyDictionary<string, StringMatchSpec> ReadStringMatchMap(MapReader m, string key, bool lowerCaseKeys, bool allowPrefix)
    {
        var result = new Dictionary<string, StringMatchSpec>(StringComparer.Ordinal);
        var node = m.Get(key);
        if (node is null)
        {
            return result;
        }

        if (node is not YamlMappingNode map)
        {
            m.Context.Error(node, m.ChildPath(key), "must be a map of name to string match");
            return result;
        }

        foreach (var (k, v) in map.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? string.Empty;
            var path = $"{m.ChildPath(key)}.{name}";
            if (name.Length == 0 || (lowerCaseKeys && name != name.ToLowerInvariant()))
            {
                m.Context.Error(k, path, lowerCaseKeys ? "header names must be lower case" : "must not be empty");
            }

            if (v is YamlMappingNode value)
            {
                var reader = new MapReader(value, path, m.Context);
                var spec = ReadStringMatch(reader, ignoreCase: false, allowPresence: true);
                reader.Finish();
                if (spec is { Kind: StringMatchKind.Prefix } && !allowPrefix)
                {
                    m.Context.Error(value, path + ".prefix", "is not supported here (Istio matches query parameters by exact or regex only)");
                }
                else if (spec is not null)
                {
                    result[name] = spec;
                }
            }
            else if (v is YamlScalarNode { Value: null or "" })
            {
                result[name] = new StringMatchSpec(StringMatchKind.Present, string.Empty);
            }
            else
            {
                m.Context.Error(v, path, "must be a string match (exact, prefix or regex) or {} for presence");
            }
        }

        return result;
    }

    private static StringMatchSpec? ReadStringMatch(MapReader r, bool ignoreCase, bool allowPresence)
    {
        var exact = r.String("exact");
        var prefix = r.String("prefix");
        var regex = r.String("regex");
        var count = (exact is null ? 0 : 1) + (prefix is null ? 0 : 1) + (regex is null ? 0 : 1);
        if (count == 0 && allowPresence)
        {
            return new StringMatchSpec(StringMatchKind.Present, string.Empty);
        }

        if (count != 1)
        {
            r.Context.Error(r.Node, r.Path, "exactly one of exact, prefix or regex is required");
            return null;
        }

        if (regex is not null)
        {
            if (Patterns.TryCompileFullMatch(regex, false, out var error) is null)
            {
                r.Context.Error(r.Get("regex"), r.ChildPath("regex"), $"invalid regular expression: {error}");
                return null;
            }

            return new StringMatchSpec(StringMatchKind.Regex, ignoreCase ? "(?i)" + regex : regex);
        }

        // ignoreUriCase: Istio lower-cases exact and prefix values and compares case-insensitively; the regex form
        // carries the flag inline so that the match is one string either way.
        if (ignoreCase)
        {
            var value = exact ?? prefix!;
            var escaped = Regex.Escape(value);
            return new StringMatchSpec(StringMatchKind.Regex, exact is not null ? $"(?i){escaped}" : $"(?i){escaped}.*");
        }

        return exact is not null ? new StringMatchSpec(StringMatchKind.Exact, exact) : new StringMatchSpec(StringMatchKind.Prefix, prefix!);
    }

    private static HttpRouteDestination? ReadRouteDestination(MapReader r)
    {
        var destination = r.Map("destination", ReadDestination);
        if (destination is null)
        {
            r.Context.Error(r.Node, r.ChildPath("destination"), "is required");
        }

        var weight = r.Int("weight", 0, 100);
        var headers = r.Map("headers", ReadHeaders);
        return destination is null ? null : new HttpRouteDestination(destination, weight, headers);
    }

    private static Destination? ReadDestination(MapReader r)
    {
        var host = r.String("host", required: true);
        if (host == "*")
        {
            // As Istio validates: a destination names a service; "*.suffix" names a wildcard ServiceEntry.
            r.Context.Error(r.Node, r.ChildPath("host"), "'*' is not a destination host: name a service (or a wildcard ServiceEntry's host)");
        }
        else if (host is not null)
        {
            ValidateHostName(r, r.ChildPath("host"), host, allowWildcard: true);
        }

        var subset = r.String("subset");
        r.Anchor("subset");
        var port = r.Map("port", p => new PortBox(p.UInt("number", 1, 65535)));
        return host is null ? null : new Destination(host, string.IsNullOrEmpty(subset) ? null : subset, port?.Number);
    }

    private sealed record PortBox(uint? Number);
}
