using System.Globalization;
using System.Text.RegularExpressions;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

/// <summary>The outcome of parsing one file: the documents that parsed cleanly and every diagnostic.</summary>
/// <param name="File">Gets the file or source name.</param>
/// <param name="Resources">Gets the resources whose documents had no error.</param>
/// <param name="Diagnostics">Gets every error and warning, in file order.</param>
public sealed record ParseResult(string File, IReadOnlyList<ConfigResource> Resources, IReadOnlyList<ConfigDiagnostic> Diagnostics)
{
    /// <summary>Gets whether any diagnostic is an error (the file as a whole is then rejected).</summary>
    public bool HasErrors => Diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error);
}

/// <summary>
/// Parses Istio-compatible multi-document YAML into typed resources, validating as it reads so that every finding
/// carries its file, line and field path. Unknown fields are errors; fields MeshKit knows but does not act on are
/// warnings (errors where ignoring them would widen access or routing).
/// </summary>
public static class ConfigParser
{
    private const string NotYet = "not implemented in this MeshKit version";

    private static readonly string[] NetworkingVersions = ["v1", "v1beta1", "v1alpha3"];
    private static readonly string[] SecurityVersions = ["v1", "v1beta1"];
    private static readonly string[] TelemetryVersions = ["v1", "v1alpha1"];
    private static readonly string[] IgnoredKinds =
        ["Gateway", "WorkloadGroup", "EnvoyFilter", "ProxyConfig", "WasmPlugin"];

    private static readonly string[] LoadBalancers = ["UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM", "PASSTHROUGH"];

    private static readonly string[] MtlsModes = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

    /// <summary>Parses a file from disk.</summary>
    /// <param name="path">The file path; it is also the name diagnostics carry.</param>
    /// <returns>The parse result.</returns>
    public static ParseResult ParseFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(File.ReadAllText(path), path);
    }

    // The line and column (1-based) of the first tab in a line's indentation, or null when no line is indented with one.
    private static (int Line, int Column)? FirstTabIndentation(string yaml)
    {
        var line = 1;
        foreach (var text in yaml.AsSpan().EnumerateLines())
        {
            var indentation = text.Length - text.TrimStart(" \t").Length;
            if (text[..indentation].IndexOf('\t') is var at and >= 0)
            {
                return (line, at + 1);
            }

            line++;
        }

        return null;
    }

    /// <summary>Parses YAML text.</summary>
    /// <param name="yaml">The YAML text, one or more documents.</param>
    /// <param name="fileName">The name diagnostics carry.</param>
    /// <returns>The parse result.</returns>
    public static ParseResult Parse(string yaml, string fileName)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        ArgumentNullException.ThrowIfNull(fileName);
        var context = new ParseContext(fileName);
        var resources = new List<ConfigResource>();
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException ex)
        {
            // YamlDotNet places a tab used as indentation at the start of the mapping it interrupts (often line 1):
            // the line with the tab is the one to fix.
            var (line, column) = ex.Message.Contains("tab", StringComparison.Ordinal) && FirstTabIndentation(yaml) is { } tab
                ? tab
                : ((int)ex.Start.Line, (int)ex.Start.Column);
            context.Diagnostics.Add(new ConfigDiagnostic(
                DiagnosticSeverity.Error, fileName, line, column, string.Empty,
                "invalid YAML: " + (ex.InnerException?.Message ?? ex.Message)));
            return new ParseResult(fileName, [], context.Diagnostics);
        }

        var firstLines = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var document in stream.Documents)
        {
            if (document.RootNode is YamlScalarNode { Value: null or "" or "~" or "null" })
            {
                continue;
            }

            if (document.RootNode is not YamlMappingNode root)
            {
                context.Error(document.RootNode, string.Empty, "a document must be an object with apiVersion, kind, metadata and spec");
                continue;
            }

            if (ListItems(root) is { } items)
            {
                // What `kubectl get ... -o yaml` writes: a List whose items are the resources (its own metadata is
                // the list's, not configuration). Each item is read as a document of its own.
                foreach (var item in items.Children)
                {
                    if (item is YamlMappingNode resourceNode)
                    {
                        ReadResource(resourceNode);
                    }
                    else
                    {
                        context.Error(item, "items", "an item of a List must be an object with apiVersion, kind, metadata and spec");
                    }
                }

                continue;
            }

            ReadResource(root);
        }

        return new ParseResult(fileName, resources, context.Diagnostics);

        void ReadResource(YamlMappingNode root)
        {
            context.Resource = null;
            var errorsBefore = context.ErrorCount;
            var resource = ReadDocument(new MapReader(root, string.Empty, context));
            var anchors = context.TakeAnchors();
            if (resource is not null && context.ErrorCount == errorsBefore)
            {
                resource = anchors.Count == 0 ? resource : resource with { FieldLocations = anchors };
                if (!firstLines.TryAdd(resource.Key, resource.Source.Line))
                {
                    // Which one would apply is a guess either way (the control plane keeps the first, a dictionary the last).
                    context.Diagnostics.Add(resource.Finding(DiagnosticSeverity.Error, "metadata.name",
                        $"{resource.DisplayName} is defined twice in this file (first at line {firstLines[resource.Key]})"));
                    return;
                }

                resources.Add(resource);
            }
        }
    }

    /// <summary>The items of a Kubernetes list (<c>kind: List</c>, or <c>VirtualServiceList</c> and the like); null for a resource.</summary>
    private static YamlSequenceNode? ListItems(YamlMappingNode root)
    {
        string? Scalar(string key) => root.Children.TryGetValue(new YamlScalarNode(key), out var node) ? (node as YamlScalarNode)?.Value : null;
        return Scalar("kind") is { } kind && kind.EndsWith("List", StringComparison.Ordinal) && !string.IsNullOrEmpty(Scalar("apiVersion"))
            && root.Children.TryGetValue(new YamlScalarNode("items"), out var items) && items is YamlSequenceNode sequence
            ? sequence
            : null;
    }

    private static ConfigResource? ReadDocument(MapReader doc)
    {
        var apiVersion = doc.String("apiVersion", required: true);
        var kind = doc.String("kind", required: true);
        if (apiVersion is null || kind is null)
        {
            doc.Ignore("metadata", "spec", "status");
            return null;
        }

        var slash = apiVersion.IndexOf('/', StringComparison.Ordinal);
        var group = slash < 0 ? string.Empty : apiVersion[..slash];
        var version = slash < 0 ? apiVersion : apiVersion[(slash + 1)..];

        if (group == "networking.istio.io" && IgnoredKinds.Contains(kind))
        {
            doc.Context.Warning(doc.Get("kind"), "kind", $"{kind} is not supported by MeshKit; the document is ignored");
            doc.Ignore("metadata", "spec", "status");
            return null;
        }

        var (supported, versions) = (group, kind) switch
        {
            ("networking.istio.io", "VirtualService" or "DestinationRule" or "ServiceEntry" or "Sidecar" or "WorkloadEntry") => (true, NetworkingVersions),
            ("security.istio.io", "PeerAuthentication" or "RequestAuthentication" or "AuthorizationPolicy") => (true, SecurityVersions),
            ("meshkit.dev", "MeshConfig") => (true, ["v1alpha1"]),
            ("telemetry.istio.io", "Telemetry") => (true, TelemetryVersions),
            _ => (false, Array.Empty<string>()),
        };

        if (!supported)
        {
            doc.Context.Error(doc.Node, "kind", $"unsupported kind '{kind}' of apiVersion '{apiVersion}'");
            doc.Ignore("metadata", "spec", "status");
            return null;
        }

        if (!versions.Contains(version))
        {
            doc.Context.Error(doc.Get("apiVersion"), "apiVersion", $"version '{version}' of {group} is not supported; use one of {string.Join(", ", versions)}");
        }

        var metadata = doc.Map("metadata", ReadMetadata);
        if (metadata is null)
        {
            doc.Context.Error(doc.Node, "metadata", "is required");
            doc.Ignore("spec", "status");
            return null;
        }

        doc.Context.Resource = $"{kind} {metadata.Namespace}/{metadata.Name}";
        doc.Ignore("status");
        var header = new Header(kind, apiVersion, metadata, doc.Location);
        ConfigResource? result = kind switch
        {
            "VirtualService" => doc.Map("spec", s => ReadVirtualService(s, header)),
            "DestinationRule" => doc.Map("spec", s => ReadDestinationRule(s, header)),
            "ServiceEntry" => doc.Map("spec", s => ReadServiceEntry(s, header)),
            "PeerAuthentication" => doc.Map("spec", s => ReadPeerAuthentication(s, header)),
            "RequestAuthentication" => doc.Map("spec", s => ReadRequestAuthentication(s, header)),
            "AuthorizationPolicy" => doc.Map("spec", s => ReadAuthorizationPolicy(s, header)),
            "MeshConfig" => doc.Map("spec", s => ReadMeshConfig(s, header)),
            "Telemetry" => doc.Map("spec", s => ReadTelemetry(s, header)),
            "Sidecar" => doc.Map("spec", s => ReadSidecar(s, header)),
            "WorkloadEntry" => doc.Map("spec", s => Fill(new WorkloadEntryResource
            {
                Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace,
                Spec = ReadWorkloadEntry(s, requireIp: false),
            }, header)),
            _ => null,
        };

        if (result is null && !doc.Has("spec"))
        {
            // An absent spec is meaningful for AuthorizationPolicy (deny all) and empty otherwise.
            result = kind switch
            {
                "AuthorizationPolicy" => Fill(new AuthorizationPolicy { Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace }, header),
                "PeerAuthentication" => Fill(new PeerAuthentication { Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace }, header),
                "MeshConfig" => Fill(new MeshConfigResource { Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace }, header),
                "Telemetry" => Fill(new TelemetryResource { Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace }, header),
                _ => null,
            };
            if (result is null)
            {
                doc.Context.Error(doc.Node, "spec", "is required");
            }
        }

        doc.Finish();
        return result;
    }

    private sealed record Metadata(string Name, string Namespace, IReadOnlyDictionary<string, string> Labels, IReadOnlyDictionary<string, string> Annotations);

    private sealed record Header(string Kind, string ApiVersion, Metadata Metadata, SourceLocation Location);

    private static T Fill<T>(T resource, Header header)
        where T : ConfigResource => resource with
        {
            Labels = header.Metadata.Labels,
            Annotations = header.Metadata.Annotations,
            Source = header.Location,
        };

    private static Metadata ReadMetadata(MapReader m)
    {
        var name = m.String("name", required: true) ?? string.Empty;
        m.Anchor("name");
        if (name.Length > 0 && !Names.IsDnsSubdomain(name))
        {
            m.Context.Error(m.Get("name"), m.ChildPath("name"), $"'{name}' is not a valid name (lower-case DNS-1123 subdomain)");
        }

        var ns = m.String("namespace") ?? "default";
        if (!Names.IsDnsLabel(ns))
        {
            m.Context.Error(m.Get("namespace"), m.ChildPath("namespace"), $"'{ns}' is not a valid namespace (lower-case DNS-1123 label)");
        }

        var labels = m.StringMap("labels");
        var annotations = m.StringMap("annotations");
        m.Ignore("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "finalizers", "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds");
        m.NotSupported("generateName", DiagnosticSeverity.Error, "config resources need a fixed name");
        return new Metadata(name, ns, labels, annotations);
    }

    // ---------------- networking.istio.io ----------------
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

            a.NotSupported("http2Error", DiagnosticSeverity.Error, NotYet);
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
    private static HeaderOperationsSpec ReadHeaderOperations(MapReader o, bool request)
    {
        var set = o.StringMap("set");
        var add = o.StringMap("add");
        var remove = o.Strings("remove");
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
            m.NotSupported("statPrefix", DiagnosticSeverity.Warning, NotYet);
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

        m.NotSupported("statPrefix", DiagnosticSeverity.Warning, NotYet);
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

    private static DestinationRule ReadDestinationRule(MapReader s, Header h)
    {
        var host = s.String("host", required: true) ?? string.Empty;
        if (host.Length > 0)
        {
            ValidateRouteHost(s, s.ChildPath("host"), host);
        }

        var policy = s.Map("trafficPolicy", ReadTrafficPolicy);
        var subsets = s.List("subsets", ReadSubset);
        if (s.Get("subsets") is YamlSequenceNode items)
        {
            // Reported where the second one is named (the parsed list skips entries that failed, so it is not indexed).
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < items.Children.Count; i++)
            {
                if (items.Children[i] is YamlMappingNode item && item.Children.TryGetValue(new YamlScalarNode("name"), out var named)
                    && named is YamlScalarNode { Value: { } name } && !seen.Add(name))
                {
                    s.Context.Error(named, $"{s.ChildPath("subsets")}[{i}].name", $"duplicate subset name '{name}'");
                }
            }
        }

        var exportTo = ReadExportTo(s);
        var selector = s.Map("workloadSelector", ReadMatchLabels);
        return Fill(new DestinationRule
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Host = host, TrafficPolicy = policy, Subsets = subsets, ExportTo = exportTo, WorkloadSelector = selector,
        }, h);
    }

    private static TrafficPolicy ReadTrafficPolicy(MapReader t) => ReadTrafficPolicyCore(t, allowPortLevel: true);

    private static TrafficPolicy ReadTrafficPolicyCore(MapReader t, bool allowPortLevel)
    {
        // As Istio validates: a policy (and a connection pool) names at least one setting; a port-level entry
        // at least one besides its port.
        if (t.Node is YamlMappingNode map && map.Children.All(c => c.Key is YamlScalarNode { Value: "port" }))
        {
            t.Context.Error(t.Node, t.Path, allowPortLevel ? "a traffic policy needs at least one setting (as in Istio)" : "a port-level setting needs at least one setting besides its port (as in Istio)");
        }

        ConsistentHashSpec? hash = null;
        WarmupSpec? warmup = null;
        LocalityLbSpec? locality = null;
        var lb = t.Map("loadBalancer", l =>
        {
            var simple = l.String("simple");
            if (simple is not null && !LoadBalancers.Contains(simple))
            {
                l.Context.Error(l.Get("simple"), l.ChildPath("simple"), $"unknown load balancer '{simple}'; expected one of {string.Join(", ", LoadBalancers)}");
            }

            hash = l.Map("consistentHash", ReadConsistentHash);
            if (simple is not null && hash is not null)
            {
                l.Context.Error(l.Node, l.Path, "simple and consistentHash exclude each other");
            }

            locality = l.Map("localityLbSetting", ReadLocality);
            var legacyWarmup = l.Duration("warmupDurationSecs");
            warmup = l.Map("warmup", w =>
            {
                var duration = w.TimerDuration("duration");
                if (duration is null && !w.Has("duration"))
                {
                    w.Context.Error(w.Node, w.ChildPath("duration"), "is required");
                }

                var minimum = w.Map("minimumPercent", m => new PercentBox(m.Double("value", 0, 100)))?.Value ?? 10;
                var aggression = w.Map("aggression", a => new PercentBox(a.Double("value", 1, 100)))?.Value ?? 1;
                return new WarmupSpec(duration ?? TimeSpan.Zero, minimum, aggression);
            });
            if (legacyWarmup is { } legacy)
            {
                warmup ??= new WarmupSpec(legacy, 10, 1);
            }

            if (warmup is not null && (hash is not null || simple is "RANDOM" or "PASSTHROUGH"))
            {
                l.Context.Error(l.Node, l.Path, "warmup applies to ROUND_ROBIN and LEAST_REQUEST only");
            }

            return new BoxedString(simple);
        });
        var pool = t.Map("connectionPool", ReadConnectionPool);
        if (t.Get("connectionPool") is YamlMappingNode { Children.Count: 0 } emptyPool)
        {
            t.Context.Error(emptyPool, t.ChildPath("connectionPool"), "needs tcp or http settings (as in Istio)");
        }

        var outlier = t.Map("outlierDetection", ReadOutlierDetection);
        var tls = t.Map("tls", ReadClientTls);
        // Istio's PortTrafficPolicy has loadBalancer, connectionPool, outlierDetection and tls only: the rest is an
        // unknown field there.
        var budget = allowPortLevel ? t.Map("retryBudget", b => new RetryBudgetSpec(b.Double("percent", 0, 100), b.Int("minRetryConcurrency", 0, int.MaxValue))) : null;
        var seenPorts = new HashSet<uint>();
        var ports = allowPortLevel ? t.List("portLevelSettings", p =>
        {
            var port = p.Map("port", n => new PortBox(n.UInt("number", 1, 65535)))?.Number;
            if (port is null)
            {
                p.Context.Error(p.Node, p.ChildPath("port.number"), "is required");
            }
            else if (!seenPorts.Add(port.Value))
            {
                p.Context.Error(p.Get("port"), p.ChildPath("port.number"), $"port {port} has an earlier entry in portLevelSettings");
            }

            var policy = ReadTrafficPolicyCore(p, allowPortLevel: false);
            return port is null ? null : new PortTrafficPolicy(port.Value, policy);
        }) : [];
        if (tls is not null)
        {
            var tlsNode = t.Get("tls");
            var tlsPath = t.ChildPath("tls");
            if (tls.Mode is "SIMPLE" or "MUTUAL")
            {
                if (tls.CredentialName is not null)
                {
                    t.Context.Error(tlsNode, tlsPath + ".credentialName", "credentialName (a Kubernetes secret) is not supported; give clientCertificate, privateKey and caCertificates as files on the calling workload");
                }
            }
            else if (tls.Sni is not null || tls.SubjectAltNames.Count > 0 || tls.ClientCertificate is not null || tls.PrivateKey is not null || tls.CaCertificates is not null || tls.CaCrl is not null || tls.CredentialName is not null || tls.InsecureSkipVerify is not null)
            {
                t.Context.Warning(tlsNode, tlsPath, $"with {tls.Mode}, sni, subjectAltNames, certificate and revocation files, credentialName and insecureSkipVerify are not used and are ignored: a mesh peer must prove the identity it registered with");
            }
        }

        if (allowPortLevel)
        {
            foreach (var field in new[] { "tunnel", "proxyProtocol" })
            {
                t.NotSupported(field, DiagnosticSeverity.Warning, NotYet);
            }
        }

        var simpleLb = lb?.Value;
        return new TrafficPolicy(simpleLb == "LEAST_CONN" ? "LEAST_REQUEST" : simpleLb == "UNSPECIFIED" ? null : simpleLb, hash, locality)
        {
            Warmup = warmup,
            ConnectionPool = pool, OutlierDetection = outlier, Tls = tls, RetryBudget = budget, PortLevelSettings = ports,
        };
    }

    private static ConnectionPoolSpec ReadConnectionPool(MapReader c) => new(
        c.Map("tcp", t =>
        {
            var keepalive = t.Map("tcpKeepalive", k => new KeepaliveBox(k.TimerDuration("time"), k.TimerDuration("interval"), k.Int("probes", 0, int.MaxValue)));
            return new TcpPoolSpec
            {
                MaxConnections = t.Limit("maxConnections"),
                ConnectTimeout = t.TimerDuration("connectTimeout"),
                KeepaliveTime = keepalive?.Time,
                KeepaliveInterval = keepalive?.Interval,
                KeepaliveProbes = keepalive?.Probes,
                MaxConnectionDuration = t.TimerDuration("maxConnectionDuration"),
                IdleTimeout = t.TimerDuration("idleTimeout", zeroAllowed: true), // 0s: never closed (Istio)
            };
        }),
        c.Map("http", h =>
        {
            var upgrade = h.String("h2UpgradePolicy");
            if (upgrade is not null && upgrade is not ("DEFAULT" or "DO_NOT_UPGRADE" or "UPGRADE"))
            {
                h.Context.Error(h.Get("h2UpgradePolicy"), h.ChildPath("h2UpgradePolicy"), $"unknown policy '{upgrade}'; expected DEFAULT, DO_NOT_UPGRADE or UPGRADE");
            }

            if (upgrade == "UPGRADE" && h.Bool("useClientProtocol") == true)
            {
                h.Context.Error(h.Get("useClientProtocol"), h.ChildPath("useClientProtocol"), "cannot be true with h2UpgradePolicy UPGRADE (as in Istio): the two decide the protocol differently");
            }

            return new HttpPoolSpec
            {
                Http1MaxPendingRequests = h.Limit("http1MaxPendingRequests"),
                Http2MaxRequests = h.Limit("http2MaxRequests"),
                MaxRequestsPerConnection = h.Int("maxRequestsPerConnection", 0, int.MaxValue),
                MaxRetries = h.Int("maxRetries", 0, int.MaxValue),
                IdleTimeout = h.TimerDuration("idleTimeout"),
                H2UpgradePolicy = upgrade,
                UseClientProtocol = h.Bool("useClientProtocol"),
                MaxConcurrentStreams = h.Limit("maxConcurrentStreams"),
            };
        }));

    private sealed record KeepaliveBox(TimeSpan? Time, TimeSpan? Interval, int? Probes);

    private static OutlierDetectionSpec ReadOutlierDetection(MapReader o)
    {
        var legacy = o.Int("consecutiveErrors", 0, int.MaxValue);
        var split = o.Bool("splitExternalLocalOriginErrors") ?? false;
        var local = o.Int("consecutiveLocalOriginFailures", 0, int.MaxValue);
        if (local is not null && !split)
        {
            o.Context.Error(o.Get("consecutiveLocalOriginFailures"), o.ChildPath("consecutiveLocalOriginFailures"), "needs splitExternalLocalOriginErrors: true");
        }

        return new OutlierDetectionSpec
        {
            Consecutive5xxErrors = o.Int("consecutive5xxErrors", 0, int.MaxValue) ?? legacy,
            ConsecutiveGatewayErrors = o.Int("consecutiveGatewayErrors", 0, int.MaxValue),
            ConsecutiveLocalOriginFailures = local,
            SplitExternalLocalOriginErrors = split,
            Interval = o.TimerDuration("interval"),
            BaseEjectionTime = o.TimerDuration("baseEjectionTime"),
            MaxEjectionPercent = o.Int("maxEjectionPercent", 0, 100),
            MinHealthPercent = o.Int("minHealthPercent", 0, 100),
        };
    }

    private static ClientTlsSpec ReadClientTls(MapReader t)
    {
        var mode = t.String("mode") ?? "DISABLE";
        if (mode is not ("DISABLE" or "SIMPLE" or "MUTUAL" or "ISTIO_MUTUAL"))
        {
            t.Context.Error(t.Get("mode"), t.ChildPath("mode"), $"unknown mode '{mode}'; expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL");
        }

        var spec = new ClientTlsSpec
        {
            Mode = mode,
            ClientCertificate = t.String("clientCertificate"),
            PrivateKey = t.String("privateKey"),
            CaCertificates = t.String("caCertificates"),
            CredentialName = t.String("credentialName"),
            SubjectAltNames = t.Strings("subjectAltNames"),
            CaCrl = t.String("caCrl"),
            Sni = t.String("sni"),
            InsecureSkipVerify = t.Bool("insecureSkipVerify"),
        };
        if (mode == "MUTUAL" && (spec.ClientCertificate is null || spec.PrivateKey is null))
        {
            t.Context.Error(t.Node, t.Path, "MUTUAL needs clientCertificate and privateKey");
        }

        return spec;
    }

    private static ConsistentHashSpec ReadConsistentHash(MapReader c)
    {
        var header = c.String("httpHeaderName");
        var query = c.String("httpQueryParameterName");
        var sourceIp = c.Bool("useSourceIp") ?? false;
        string? cookieName = null, cookiePath = null;
        TimeSpan? ttl = null;
        IReadOnlyList<KeyValuePair<string, string>> attributes = [];
        var hasCookie = c.Map("httpCookie", k =>
        {
            cookieName = k.String("name", required: true);
            cookiePath = k.String("path");
            var ttlText = k.String("ttl");
            if (ttlText is not null)
            {
                if (Durations.TryParse(ttlText, out var parsed))
                {
                    ttl = parsed;
                }
                else
                {
                    k.Context.Error(k.Get("ttl"), k.ChildPath("ttl"), $"'{ttlText}' is not a duration (e.g. 0s, 10s, 1h)");
                }
            }

            attributes = k.List("attributes", a =>
            {
                var name = a.String("name", required: true);
                var value = a.String("value") ?? string.Empty;

                // A cookie attribute is a token, its value may not end the attribute or the header.
                if (name is not null && (name.Length == 0 || name.Any(c => c is ';' or '=' or ',' || char.IsWhiteSpace(c) || char.IsControl(c))))
                {
                    a.Context.Error(a.Get("name"), a.ChildPath("name"), $"'{name}' is not a cookie attribute name");
                }

                if (value.Any(c => c == ';' || char.IsControl(c)))
                {
                    a.Context.Error(a.Get("value"), a.ChildPath("value"), "may not hold ';' or control characters");
                }

                return name is null ? null : new AttributeBox(name, value);
            }).Select(p => new KeyValuePair<string, string>(p.Name, p.Value)).ToList();
            return new BoxedString(cookieName);
        }) is not null;
        var keys = (header is null ? 0 : 1) + (query is null ? 0 : 1) + (sourceIp ? 1 : 0) + (hasCookie ? 1 : 0);
        if (keys != 1)
        {
            c.Context.Error(c.Node, c.Path, "exactly one of httpHeaderName, httpCookie, httpQueryParameterName or useSourceIp is required");
        }

        if (header is not null && header != header.ToLowerInvariant())
        {
            c.Context.Error(c.Get("httpHeaderName"), c.ChildPath("httpHeaderName"), "header names must be lower case");
        }

        var ring = c.Map("ringHash", r => new SizeBox(ReadSize(r, "minimumRingSize", 1, 8_388_608)));
        var legacyRing = ReadSize(c, "minimumRingSize", 1, 8_388_608);
        var maglev = c.Map("maglev", m => new SizeBox(ReadSize(m, "tableSize", 3, 5_000_011)));
        if ((ring is not null || legacyRing is not null) && maglev is not null)
        {
            c.Context.Error(c.Node, c.Path, "ringHash and maglev exclude each other");
        }

        if (maglev?.Size is { } table && !IsPrime(table))
        {
            c.Context.Error(c.Node, c.ChildPath("maglev.tableSize"), $"{table} must be a prime number (Maglev needs it)");
        }

        return new ConsistentHashSpec
        {
            HttpHeaderName = header, QueryParameterName = query, UseSourceIp = sourceIp,
            CookieName = cookieName, CookiePath = cookiePath, CookieTtl = ttl, CookieAttributes = attributes,
            MinimumRingSize = ring?.Size ?? legacyRing, MaglevTableSize = maglev?.Size,
        };
    }

    private sealed record SizeBox(ulong? Size);

    private sealed record AttributeBox(string Name, string Value);

    // The identities mesh certificates carry: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
    private static readonly Regex SpiffeIdForm = new("^spiffe://[a-z0-9.-]+/ns/[a-z0-9-]+/sa/[A-Za-z0-9._-]+$", RegexOptions.CultureInvariant);

    private static ulong? ReadSize(MapReader r, string key, uint min, uint max) => r.UInt(key, min, max);

    private static bool IsPrime(ulong n)
    {
        if (n < 2)
        {
            return false;
        }

        for (ulong d = 2; d * d <= n; d++)
        {
            if (n % d == 0)
            {
                return false;
            }
        }

        return true;
    }

    private static LocalityLbSpec ReadLocality(MapReader l)
    {
        var enabled = l.Bool("enabled") ?? true;
        var distribute = l.List("distribute", d =>
        {
            var from = d.String("from", required: true) ?? string.Empty;
            var to = new Dictionary<string, uint>(StringComparer.Ordinal);
            if (d.Get("to") is YamlMappingNode map)
            {
                foreach (var (k, v) in map.Children)
                {
                    var name = (k as YamlScalarNode)?.Value ?? string.Empty;
                    var weight = d.ToUInt(v, $"{d.ChildPath("to")}.{name}", 1, 100);
                    if (weight is not null)
                    {
                        to[name] = weight.Value;
                    }
                }
            }
            else
            {
                d.Context.Error(d.Node, d.ChildPath("to"), "is required: a map of locality to weight");
            }

            if (to.Count > 0 && to.Values.Sum(w => (long)w) != 100)
            {
                d.Context.Error(d.Node, d.ChildPath("to"), $"weights must sum to 100, not {to.Values.Sum(w => (long)w)}");
            }

            ValidateLocalities(d, to.Keys.ToList(), i => $"{d.ChildPath("to")}.{to.Keys.ElementAt(i)}");
            return new LocalityDistribute(from, to);
        });
        ValidateLocalities(l, distribute.Select(d => d.From).ToList(), i => $"{l.ChildPath("distribute")}[{i}].from");
        var failover = l.List("failover", f =>
        {
            var entry = new LocalityFailover(f.String("from", required: true) ?? string.Empty, f.String("to", required: true) ?? string.Empty);
            if (entry.To.Contains('*', StringComparison.Ordinal))
            {
                f.Context.Error(f.Get("to"), f.ChildPath("to"), $"'{entry.To}': a failover region names one region, without '*' (as Istio requires)");
            }

            if (entry.From.Length > 0 && entry.From == entry.To)
            {
                f.Context.Error(f.Get("to"), f.ChildPath("to"), $"fails over to its own region '{entry.From}'; name another one (as Istio requires)");
            }

            return entry;
        });
        var priority = l.Strings("failoverPriority");
        if (distribute.Count > 0 && (failover.Count > 0 || priority.Count > 0))
        {
            l.Context.Error(l.Node, l.Path, "distribute excludes failover and failoverPriority");
        }

        return new LocalityLbSpec { Enabled = enabled, Distribute = distribute, Failover = failover, FailoverPriority = priority };
    }

    // A text as a reference type: MapReader.Map reads objects into classes.
    private sealed record BoxedString(string? Value);

    private static SubsetSpec? ReadSubset(MapReader r)
    {
        var name = r.String("name", required: true);
        if (name is not null && name.Length > 0 && !Names.IsDnsLabel(name))
        {
            r.Context.Error(r.Get("name"), r.ChildPath("name"), $"'{name}' is not a valid subset name (lower-case DNS-1123 label)");
        }

        var labels = r.StringMap("labels");
        var policy = r.Map("trafficPolicy", ReadTrafficPolicy);
        return name is null ? null : new SubsetSpec(name, labels, policy);
    }

    private static ServiceEntry ReadServiceEntry(MapReader s, Header h)
    {
        var hosts = s.Strings("hosts");
        if (hosts.Count == 0)
        {
            s.Context.Error(s.Node, s.ChildPath("hosts"), "at least one host is required");
        }

        for (var i = 0; i < hosts.Count; i++)
        {
            if (hosts[i] == "*")
            {
                s.Context.Error(s.Get("hosts"), $"{s.ChildPath("hosts")}[{i}]", "'*' would capture every host; name a domain such as '*.example.com'");
                continue;
            }

            ValidateHostName(s, $"{s.ChildPath("hosts")}[{i}]", hosts[i], allowWildcard: true);
        }

        var ports = s.List("ports", p =>
        {
            var number = p.UInt("number", 1, 65535);
            if (number is null && !p.Has("number"))
            {
                p.Context.Error(p.Node, p.ChildPath("number"), "is required");
            }

            // Istio's protocols; MeshKit's handler sees HTTP calls, the others are accepted as Istio takes them.
            var protocol = (p.String("protocol") ?? "HTTP").ToUpperInvariant();
            if (protocol is not ("HTTP" or "HTTP2" or "GRPC" or "GRPC-WEB" or "HTTP_PROXY" or "HTTPS" or "TCP" or "TLS" or "UDP" or "MONGO" or "MYSQL" or "REDIS" or "THRIFT"))
            {
                p.Context.Error(p.Get("protocol"), p.ChildPath("protocol"), $"unknown protocol '{protocol}'");
            }

            var name = p.String("name", required: true) ?? string.Empty;
            if (name.Length > 0 && !Names.IsDnsLabel(name))
            {
                p.Context.Error(p.Get("name"), p.ChildPath("name"), $"'{name}' is not a valid port name (a DNS-1123 label)");
            }

            var target = p.UInt("targetPort", 1, 65535);
            return number is null ? null : new ServiceEntryPort(number.Value, protocol, name, target);
        });

        var portItems = s.Get("ports") as YamlSequenceNode;
        for (var i = 0; i < ports.Count; i++)
        {
            var earlier = ports.Take(i);
            var node = portItems?.Children.ElementAtOrDefault(i) ?? s.Node;
            if (earlier.Any(o => o.Number == ports[i].Number))
            {
                s.Context.Error(node, $"{s.ChildPath("ports")}[{i}].number", $"port {ports[i].Number} is already defined");
            }

            if (ports[i].Name.Length > 0 && earlier.Any(o => o.Name == ports[i].Name))
            {
                s.Context.Error(node, $"{s.ChildPath("ports")}[{i}].name", $"port name '{ports[i].Name}' is already defined");
            }
        }

        var location = s.String("location") ?? "MESH_EXTERNAL";
        if (location is not ("MESH_EXTERNAL" or "MESH_INTERNAL"))
        {
            s.Context.Error(s.Get("location"), s.ChildPath("location"), $"unknown location '{location}'; expected MESH_EXTERNAL or MESH_INTERNAL");
        }

        var resolution = s.String("resolution") ?? "NONE";
        if (resolution is not ("NONE" or "STATIC" or "DNS" or "DNS_ROUND_ROBIN" or "DYNAMIC_DNS"))
        {
            s.Context.Error(s.Get("resolution"), s.ChildPath("resolution"), $"unknown resolution '{resolution}'; expected NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS");
        }

        var endpoints = s.List("endpoints", e => ReadWorkloadEntry(e, requireIp: resolution == "STATIC"));

        // DYNAMIC_DNS resolves the name each call carries (Envoy's dynamic forward proxy): in process that is what the
        // client's socket does with the request's own host, so it compiles to a pass-through as NONE does. Istio's API
        // allows it for wildcard hosts of MESH_EXTERNAL entries only, and ignores endpoints.
        if (resolution == "DYNAMIC_DNS")
        {
            foreach (var host in hosts.Where(h => !h.StartsWith("*.", StringComparison.Ordinal)))
            {
                s.Context.Error(s.Get("hosts"), s.ChildPath("hosts"), $"'{host}': DYNAMIC_DNS must be used with wildcard hosts (*.example.com), as in Istio; use DNS for a named host");
            }

            if (location != "MESH_EXTERNAL")
            {
                s.Context.Error(s.Get("location"), s.ChildPath("location"), "DYNAMIC_DNS is supported for MESH_EXTERNAL entries only, as in Istio");
            }

            if (endpoints.Count > 0)
            {
                s.Context.Warning(s.Get("endpoints"), s.ChildPath("endpoints"), "DYNAMIC_DNS ignores endpoints (as in Istio): calls go to the host they name");
                endpoints = [];
            }
        }

        if (resolution is "DNS" or "DNS_ROUND_ROBIN" && hosts.Any(h => h.StartsWith('*')))
        {
            s.Context.Error(s.Get("resolution"), s.ChildPath("resolution"), $"{resolution} cannot resolve wildcard hosts; use NONE or DYNAMIC_DNS");
        }

        if (resolution == "STATIC" && endpoints.Count == 0 && !s.Has("workloadSelector"))
        {
            s.Context.Error(s.Node, s.ChildPath("endpoints"), "resolution STATIC needs endpoints");
        }

        if (resolution == "DNS_ROUND_ROBIN" && endpoints.Count > 1)
        {
            s.Context.Error(s.Get("endpoints"), s.ChildPath("endpoints"), "DNS_ROUND_ROBIN takes at most one endpoint (as in Istio)");
        }

        if (resolution == "NONE" && endpoints.Count > 0)
        {
            s.Context.Error(s.Get("endpoints"), s.ChildPath("endpoints"), "resolution NONE takes no endpoints (calls go to the host they name), as in Istio");
        }

        var endpointItems = s.Get("endpoints") as YamlSequenceNode;
        for (var i = 0; i < endpoints.Count; i++)
        {
            foreach (var portName in endpoints[i].Ports.Keys.Where(n => !ports.Any(p => p.Name == n)))
            {
                s.Context.Error(endpointItems?.Children.ElementAtOrDefault(i) ?? s.Node, $"{s.ChildPath("endpoints")}[{i}].ports.{portName}", $"'{portName}' is not the name of a port of this ServiceEntry");
            }
        }

        var exportTo = ReadExportTo(s);
        s.NotSupported("addresses", DiagnosticSeverity.Warning, "MeshKit routes by host name, not by virtual IP");
        var subjectAltNames = s.Strings("subjectAltNames");
        for (var i = 0; i < subjectAltNames.Count; i++)
        {
            if (!SpiffeIdForm.IsMatch(subjectAltNames[i]))
            {
                s.Context.Error(s.Get("subjectAltNames"), $"{s.ChildPath("subjectAltNames")}[{i}]", $"'{subjectAltNames[i]}' is not a SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<account>): mutual TLS in MeshKit verifies mesh identities only");
            }
        }
        var selector = s.Map("workloadSelector", w => new WorkloadSelector(SelectorLabels(w, "labels")));
        if (selector is not null && endpoints.Count > 0)
        {
            s.Context.Error(s.Get("workloadSelector"), s.ChildPath("workloadSelector"), "excludes endpoints");
        }
        else if (selector is not null && resolution is "NONE" or "DYNAMIC_DNS")
        {
            s.Context.Warning(s.Get("workloadSelector"), s.ChildPath("workloadSelector"), $"with resolution {resolution} calls go to the host they name: the selected workloads are not used (Istio warns alike)");
        }

        if (selector is not null && selector.MatchLabels.Count == 0)
        {
            s.Context.Error(s.Get("workloadSelector"), s.ChildPath("workloadSelector.labels"), "needs at least one label");
        }

        return Fill(new ServiceEntry
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Hosts = hosts, Ports = ports, Location = location, Resolution = resolution, Endpoints = endpoints, ExportTo = exportTo,
            WorkloadSelector = selector, SubjectAltNames = subjectAltNames,
        }, h);
    }

    // A ServiceEntry's endpoint or a WorkloadEntry's spec: the same fields.
    private static WorkloadEntrySpec ReadWorkloadEntry(MapReader e, bool requireIp)
    {
        var address = e.String("address", required: true) ?? string.Empty;
        if (requireIp && address.Length > 0 && !System.Net.IPAddress.TryParse(address, out _))
        {
            e.Context.Error(e.Get("address"), e.ChildPath("address"), $"'{address}' must be an IP address with resolution STATIC");
        }
        else if (address.Length > 0 && !System.Net.IPAddress.TryParse(address, out _) && !Names.IsDnsSubdomain(address.ToLowerInvariant()))
        {
            e.Context.Error(e.Get("address"), e.ChildPath("address"), $"'{address}' is neither an IP address nor a host name");
        }

        var epPorts = new Dictionary<string, uint>(StringComparer.Ordinal);
        if (e.Get("ports") is YamlMappingNode portMap)
        {
            foreach (var (k, v) in portMap.Children)
            {
                var portName = ((YamlScalarNode)k).Value ?? string.Empty;
                if (!Names.IsDnsLabel(portName))
                {
                    e.Context.Error(k, $"{e.ChildPath("ports")}.{portName}", $"'{portName}' is not a valid port name (a DNS-1123 label)");
                }

                var value = e.ToUInt(v, $"{e.ChildPath("ports")}.{portName}", 1, 65535);
                if (value is not null)
                {
                    epPorts[portName] = value.Value;
                }
            }
        }
        else if (e.Has("ports"))
        {
            e.Context.Error(e.Get("ports"), e.ChildPath("ports"), "must be a map of port name to number");
        }

        var result = new WorkloadEntrySpec
        {
            Address = address,
            Ports = epPorts,
            Labels = e.StringMap("labels"),
            Locality = e.String("locality"),
            Weight = e.UInt("weight", 0, uint.MaxValue),
            ServiceAccount = e.String("serviceAccount"),
        };
        e.NotSupported("network", DiagnosticSeverity.Warning, "multi-network meshes are not supported");
        return result;
    }

    private static IReadOnlyList<string> ReadExportTo(MapReader s)
    {
        var exportTo = s.Strings("exportTo");
        for (var i = 0; i < exportTo.Count; i++)
        {
            var value = exportTo[i];
            if (value is not ("." or "*" or "~") && !Names.IsDnsLabel(value))
            {
                s.Context.Error(s.Get("exportTo"), $"{s.ChildPath("exportTo")}[{i}]", $"'{value}' must be '.', '*', '~' or a namespace");
            }
        }

        return exportTo;
    }

    /// <summary>
    /// Reads a workload selector's labels. As Istio validates: an empty label name, and a '*' in a name or value, are
    /// errors (labels match exactly, so a wildcard would select nothing and the resource would silently not apply).
    /// </summary>
    private static IReadOnlyDictionary<string, string> SelectorLabels(MapReader r, string key)
    {
        var labels = r.StringMap(key);
        foreach (var (name, value) in labels)
        {
            if (name.Length == 0)
            {
                r.Context.Error(r.Get(key), r.ChildPath(key), "a label name must not be empty");
            }
            else if (name.Contains('*', StringComparison.Ordinal) || value.Contains('*', StringComparison.Ordinal))
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}.{name}", $"'{name}: {value}': a selector matches labels exactly; wildcards are not supported (as in Istio)");
            }
        }

        return labels;
    }

    private static WorkloadSelector ReadMatchLabels(MapReader r)
    {
        var labels = SelectorLabels(r, "matchLabels");
        if (labels.Count == 0)
        {
            r.Context.Error(r.Node, r.ChildPath("matchLabels"), "needs at least one label (an empty selector would select every workload)");
        }

        return new WorkloadSelector(labels);
    }

    // ---------------- telemetry.istio.io ----------------
    // Telemetry changes what is reported, never who may call: fields MeshKit does not act on are warnings.
    private static readonly string[] IstioMetricNames = ["ALL_METRICS", .. IstioStandardMetrics.Metrics];
    private static readonly string[] IstioTcpAndGrpcMetrics =
        ["TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES"];

    private static readonly string[] WorkloadModes = ["CLIENT_AND_SERVER", "CLIENT", "SERVER"];

    private static TelemetryResource? ReadTelemetry(MapReader s, Header h)
    {
        if (s.Has("targetRef") || s.Has("targetRefs"))
        {
            var key = s.Has("targetRef") ? "targetRef" : "targetRefs";
            s.Context.Warning(s.Get(key), s.ChildPath(key), "applies to gateways and waypoints, which MeshKit has not: this Telemetry applies to no MeshKit workload and is ignored");
            s.Ignore("targetRef", "targetRefs", "selector", "metrics", "accessLogging", "tracing");
            return null;
        }

        var selector = s.Map("selector", ReadMatchLabels);
        s.Anchor("selector");
        var metrics = s.List("metrics", ReadMetrics);
        var overrides = metrics.SelectMany(m => m.Overrides).ToArray();
        var accessLogging = s.List("accessLogging", ReadAccessLogging);
        var tracing = s.List("tracing", ReadTracing);
        return Fill(new TelemetryResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, MetricOverrides = overrides, AccessLogging = accessLogging, Tracing = tracing,
            MetricsReportingInterval = metrics.LastOrDefault(m => m.ReportingInterval is not null)?.ReportingInterval,
        }, h);
    }

    // One spec.tracing[] entry. MeshKit's spans (one per outbound call, one per attempt) go to the application's
    // OpenTelemetry tracer provider: MeshKit turns them off and tags them; the sampling percentage is applied by
    // MeshKit's sampler when the application sets it on its tracer provider.
    private static TracingOverride? ReadTracing(MapReader t)
    {
        if (t.Has("providers"))
        {
            t.List("providers", p => p.String("name", required: true)); // an empty name is an error, as in Istio
            t.Context.Warning(t.Get("providers"), t.ChildPath("providers"), "MeshKit's spans go to the application's OpenTelemetry tracer provider (its exporters decide where); the provider is not selected, the rest of the entry applies");
        }

        var mode = t.Map("match", m => ReadMode(m))?.Value ?? "CLIENT_AND_SERVER";
        // Applied by MeshKit's sampler, which the application opts into (SetMeshSampler on its tracer provider).
        var sampling = t.Double("randomSamplingPercentage", 0, 100);
        t.NotSupported("useRequestIdForTraceSampling", DiagnosticSeverity.Warning, "traces are sampled by the application's OpenTelemetry sampler");
        t.NotSupported("enableIstioTags", DiagnosticSeverity.Warning, "MeshKit's spans carry MeshKit's tags (observability.md)");
        var disable = t.Bool("disableSpanReporting");
        if (mode == "SERVER" && disable is not null)
        {
            t.Context.Warning(t.Get("disableSpanReporting"), t.ChildPath("disableSpanReporting"), "MeshKit makes no server spans (the request span is ASP.NET Core's, the application's to configure); the entry changes nothing");
        }

        var tags = new Dictionary<string, SpanTagSource>(StringComparer.Ordinal);
        t.Entries("customTags", "an object with one of literal, environment or header", (name, _, reader) =>
        {
            var given = new[]
            {
                reader.Map("literal", l => new SpanTagSource("literal", l.String("value", required: true) ?? string.Empty, null)),
                reader.Map("environment", e => new SpanTagSource("environment", e.String("name", required: true) ?? string.Empty, e.String("defaultValue"))),
                reader.Map("header", hd => new SpanTagSource("header", hd.String("name", required: true) ?? string.Empty, hd.String("defaultValue"))),
            }.OfType<SpanTagSource>().ToList();
            if (given.Count != 1)
            {
                reader.Context.Error(reader.Node, reader.Path, "needs exactly one of literal, environment or header");
            }
            else if (mode != "SERVER")
            {
                tags[name] = given[0];
            }
        });

        if (mode == "SERVER" && tags.Count == 0 && t.Has("customTags"))
        {
            t.Context.Warning(t.Get("customTags"), t.ChildPath("customTags"), "MeshKit makes no server spans; the tags are not added");
        }

        return new TracingOverride(mode, mode == "SERVER" ? null : disable, tags, sampling);
    }

    // One spec.accessLogging[] entry: MeshKit's access log is Istio's 'envoy' provider (the default one).
    private static AccessLogOverride? ReadAccessLogging(MapReader a)
    {
        var providers = a.List("providers", p => p.String("name", required: true));
        var mode = a.Map("match", m => ReadMode(m))?.Value ?? "CLIENT_AND_SERVER";
        var disabled = a.Bool("disabled") ?? false;
        // Compiled here as the workload will compile it, so that a typo is an error with its place, not a silent
        // filter that never (or always) logs.
        var filter = a.Map("filter", f =>
        {
            var expression = f.String("expression", required: true);
            if (string.IsNullOrEmpty(expression))
            {
                return new BoxedString(null);
            }

            try
            {
                Expressions.RequestAttributes.CompileFilter(expression);
                return new BoxedString(expression);
            }
            catch (Expressions.CelException ex)
            {
                f.Context.Error(f.Get("expression"), f.ChildPath("expression"), ex.Detail);
                return new BoxedString(null);
            }
        })?.Value;
        if (providers.Count > 0 && !providers.Contains("envoy"))
        {
            a.Context.Warning(a.Get("providers"), a.ChildPath("providers"), $"MeshKit's access log is Istio's 'envoy' provider (written through ILogger, category MeshKit.AccessLog); this entry names {string.Join(", ", providers)} only and is ignored");
            return null;
        }

        return new AccessLogOverride(mode, disabled, filter);
    }

    private static BoxedString ReadMode(MapReader m)
    {
        var mode = m.String("mode");
        if (mode is not null && !WorkloadModes.Contains(mode))
        {
            m.Context.Error(m.Get("mode"), m.ChildPath("mode"), $"unknown mode '{mode}'; expected one of {string.Join(", ", WorkloadModes)}");
            return new BoxedString(null);
        }

        return new BoxedString(mode);
    }

    // One spec.metrics[] entry: its overrides and reporting interval when it applies to MeshKit's metrics, else none
    // (with a warning).
    private static MetricsEntry ReadMetrics(MapReader m)
    {
        var providers = m.List("providers", p => p.String("name", required: true));

        // Istio's proxies use it for TCP metrics, reported while a connection lasts; MeshKit's long-lived calls are
        // gRPC streams, whose message counts are added at this interval while they run.
        var interval = m.TimerDuration("reportingInterval");
        var overrides = m.List("overrides", ReadMetricOverride);
        if (providers.Count > 0 && !providers.Contains("prometheus"))
        {
            m.Context.Warning(m.Get("providers"), m.ChildPath("providers"), $"MeshKit's metrics are Istio's 'prometheus' provider (exported through OpenTelemetry); this entry names {string.Join(", ", providers)} only and is ignored");
            return new([], null);
        }

        return new(overrides, interval);
    }

    private sealed record MetricsEntry(IReadOnlyList<MetricOverride> Overrides, TimeSpan? ReportingInterval);

    private static readonly Regex PrometheusLabelName = new("^[a-zA-Z_][a-zA-Z0-9_]*$", RegexOptions.CultureInvariant);

    private static MetricOverride? ReadMetricOverride(MapReader o)
    {
        var metric = "ALL_METRICS";
        var mode = "CLIENT_AND_SERVER";
        var applies = true;
        o.Map("match", match =>
        {
            if (match.String("metric") is { } name)
            {
                if (IstioTcpAndGrpcMetrics.Contains(name))
                {
                    match.Context.Warning(match.Get("metric"), match.ChildPath("metric"), $"MeshKit reports no {name} metric (HTTP and gRPC requests only, no TCP connections); the override is ignored");
                    applies = false;
                }
                else if (!IstioMetricNames.Contains(name))
                {
                    match.Context.Error(match.Get("metric"), match.ChildPath("metric"), $"unknown metric '{name}'; expected one of {string.Join(", ", IstioMetricNames.Concat(IstioTcpAndGrpcMetrics))}");
                    applies = false;
                }
                else
                {
                    metric = name;
                }
            }

            if (match.String("customMetric") is { Length: 0 })
            {
                match.Context.Error(match.Get("customMetric"), match.ChildPath("customMetric"), "must not be empty (as in Istio)");
            }
            else if (match.String("customMetric") is not null)
            {
                match.Context.Warning(match.Get("customMetric"), match.ChildPath("customMetric"), "MeshKit reports no custom metrics; the override is ignored");
                applies = false;
            }

            if (match.Has("mode"))
            {
                if (ReadMode(match).Value is { } m)
                {
                    mode = m;
                }
                else
                {
                    applies = false;
                }
            }

            return match;
        });

        var disabled = o.Bool("disabled");
        var removed = new List<string>();
        var upserted = new Dictionary<string, string>(StringComparer.Ordinal);
        o.Entries("tagOverrides", "an object with operation and value", (tag, key, reader) =>
        {
            var operation = reader.String("operation") ?? "UPSERT";
            var value = reader.Has("value") ? reader.String("value") : null;
            switch (operation)
            {
                case "REMOVE" when !string.IsNullOrEmpty(value):
                    reader.Context.Error(reader.Get("value"), reader.ChildPath("value"), "is set only with operation UPSERT (as in Istio)");
                    break;
                case "UPSERT" when string.IsNullOrEmpty(value):
                    reader.Context.Error(reader.Node, reader.ChildPath("value"), "is required with operation UPSERT (as in Istio)");
                    break;
                case "REMOVE":
                    if (!IstioStandardMetrics.Labels.Contains(tag))
                    {
                        reader.Context.Warning(key, reader.Path, $"'{tag}' is not one of Istio's standard labels; there is nothing to remove");
                    }

                    removed.Add(tag);
                    break;
                case "UPSERT":
                    if (!PrometheusLabelName.IsMatch(tag) || tag.StartsWith("__", StringComparison.Ordinal) || tag == "le")
                    {
                        reader.Context.Error(key, reader.Path, $"'{tag}' is not a label name Prometheus takes ([a-zA-Z_][a-zA-Z0-9_]*, not __-prefixed, not le)");
                        break;
                    }

                    // Compiled as the workload will compile it: a mistake is an error with its place.
                    try
                    {
                        Expressions.RequestAttributes.CompileValue(value!);
                        upserted[tag] = value!;
                    }
                    catch (Expressions.CelException ex)
                    {
                        reader.Context.Error(reader.Get("value"), reader.ChildPath("value"), ex.Detail);
                    }

                    break;
                default:
                    reader.Context.Error(reader.Get("operation") ?? reader.Node, reader.ChildPath("operation"), $"unknown operation '{operation}'; expected UPSERT or REMOVE");
                    break;
            }
        });

        return applies ? new MetricOverride(metric, mode, disabled, removed, upserted.Count > 0 ? upserted : null) : null;
    }

    // ---------------- security.istio.io ----------------
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
        || System.Text.RegularExpressions.Regex.IsMatch(key, @"^request\.headers\[[^\[\]]+\]$", System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1))
        || System.Text.RegularExpressions.Regex.IsMatch(key, @"^request\.auth\.claims(\[[^\[\]]+\])+$", System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1));

    /// <summary>Reads the object <paramref name="key"/> of a list item that exists only to hold it; its absence is an error.</summary>
    private static T? Required<T>(MapReader r, string key, Func<MapReader, T> read)
        where T : class
    {
        var errorsBefore = r.Context.ErrorCount;
        var value = r.Map(key, read);
        if (value is null && r.Context.ErrorCount == errorsBefore)
        {
            // Absent, or null (`source: ~`): dropped, the item would leave the rule open to anything.
            r.Context.Error(r.Get(key) ?? r.Node, r.ChildPath(key), "is required");
        }

        return value;
    }

    /// <summary>Refuses a source or operation that sets no field (<c>{}</c>), as Istio does.</summary>
    private static T Named<T>(MapReader r, string what, T value)
    {
        if (r.Node is YamlMappingNode { Children.Count: 0 })
        {
            r.Context.Error(r.Node, r.Path, $"an empty {what} is refused (as in Istio); leave the item out to match any");
        }

        return value;
    }

    /// <summary>Whether <paramref name="name"/> is an HTTP token, the form of a header name (RFC 9110).</summary>
    private static bool IsHeaderToken(string name) =>
        name.Length > 0 && name.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal));

    private static bool IsAuthorityHeader(string name) =>
        name.Equals("host", StringComparison.OrdinalIgnoreCase) || name.Equals(":authority", StringComparison.OrdinalIgnoreCase);

    /// <summary>Reads a required header name; one that is not an HTTP token (letters, digits, <c>!#$%&amp;'*+-.^_`|~</c>) is an error.</summary>
    private static string? HeaderName(MapReader r, string key)
    {
        var name = r.String(key, required: true);
        if (name is { Length: > 0 } && !IsHeaderToken(name))
        {
            r.Context.Error(r.Get(key), r.ChildPath(key), $"'{name}' is not a valid header name");
        }

        return name;
    }

    /// <summary>
    /// Checks localities of one list as Istio does: <c>region[/zone[/subzone]]</c> without empty parts, at most one
    /// <c>*</c> and only at the end, and none covering another (<c>us-west</c> covers <c>us-west/zone1</c>).
    /// </summary>
    private static void ValidateLocalities(MapReader r, IReadOnlyList<string> localities, Func<int, string> pathOf)
    {
        static string[] Parts(string locality) => locality.TrimEnd('*').TrimEnd('/') is { Length: > 0 } fixedPart ? fixedPart.Split('/') : [];

        for (var i = 0; i < localities.Count; i++)
        {
            var locality = localities[i];
            var path = pathOf(i);
            if (locality.Count(c => c == '*') is var stars && stars > 0 && (stars > 1 || !locality.EndsWith('*')))
            {
                r.Context.Error(r.Node, path, $"locality '{locality}': at most one '*', and only at the end");
            }
            else if (locality.Length == 0 || locality.Split('/').Any(part => part.Length == 0))
            {
                r.Context.Error(r.Node, path, $"locality '{locality}' has an empty region, zone or subzone");
            }
            else if (localities.Take(i).FirstOrDefault(earlier => Parts(earlier) is var a && Parts(locality) is var b
                && a.Zip(b).All(pair => pair.First == pair.Second)) is { } overlapping)
            {
                r.Context.Error(r.Node, path, $"locality '{locality}' overlaps '{overlapping}' of the same list");
            }
        }
    }

    /// <summary>
    /// Reads Istio's <c>serviceAccounts</c> (1.25): <c>namespace/name</c>, matched exactly, and not together with
    /// principals or namespaces in one source (as Istio validates).
    /// </summary>
    private static IReadOnlyList<string> ServiceAccounts(MapReader r, string key)
    {
        var values = r.Strings(key);
        for (var i = 0; i < values.Count; i++)
        {
            var parts = values[i].Split('/');
            if (parts.Length != 2 || !Names.IsDnsLabel(parts[0]) || !Names.IsDnsSubdomain(parts[1]))
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}[{i}]", $"'{values[i]}' is not namespace/name of a service account (no wildcards)");
            }
        }

        if (values.Count > 0 && new[] { "principals", "notPrincipals", "namespaces", "notNamespaces" }.FirstOrDefault(r.Has) is { } other)
        {
            r.Context.Error(r.Get(key), r.ChildPath(key), $"cannot be used with {other} in one source (as in Istio)");
        }

        return values;
    }

    /// <summary>Reads a list of strings in which an empty one is an error (Istio's "empty value not allowed").</summary>
    private static IReadOnlyList<string> NonEmpty(MapReader r, string key)
    {
        var values = r.Strings(key);
        for (var i = 0; i < values.Count; i++)
        {
            if (values[i].Length == 0)
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}[{i}]", "an empty value is not allowed");
            }
        }

        return values;
    }

    private static IReadOnlyList<string> ValidatePorts(MapReader r, string key)
    {
        var values = r.Strings(key);
        for (var i = 0; i < values.Count; i++)
        {
            if (!ushort.TryParse(values[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port == 0)
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}[{i}]", $"'{values[i]}' is not a port number");
            }
        }

        return values;
    }

    // Paths: exact, "prefix*", "*suffix", "*", or templates whose whole segments are {*} (one segment) or {**} (the
    // rest, last only).
    private static IReadOnlyList<string> ValidatePaths(MapReader r, string key)
    {
        var values = r.Strings(key);
        for (var i = 0; i < values.Count; i++)
        {
            var path = values[i];
            string? problem = path.Length == 0 ? "an empty value is not allowed" : null;
            if (path.Contains('{', StringComparison.Ordinal) || path.Contains('}', StringComparison.Ordinal))
            {
                var segments = path.Split('/');
                for (var j = 0; j < segments.Length; j++)
                {
                    var segment = segments[j];
                    if ((segment.Contains('{', StringComparison.Ordinal) || segment.Contains('}', StringComparison.Ordinal)) && segment is not ("{*}" or "{**}"))
                    {
                        problem = $"'{segment}': a template segment is exactly {{*}} or {{**}}";
                    }
                    else if (segment == "{**}" && j != segments.Length - 1)
                    {
                        problem = "{**} must be the last segment";
                    }
                }

                if (path.Contains("*", StringComparison.Ordinal) && path.Replace("{**}", string.Empty, StringComparison.Ordinal).Replace("{*}", string.Empty, StringComparison.Ordinal).Contains('*', StringComparison.Ordinal))
                {
                    problem ??= "a path template cannot also use a '*' wildcard";
                }
            }
            else if (path.Length > 1 && path.IndexOf('*', 1) is var star && star >= 0 && star != path.Length - 1)
            {
                problem = "'*' is allowed only at the start or the end";
            }

            if (problem is not null)
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}[{i}]", problem);
            }
        }

        return values;
    }

    private static IReadOnlyList<string> ValidateCidrs(MapReader r, string key)
    {
        var values = r.Strings(key);
        for (var i = 0; i < values.Count; i++)
        {
            if (!System.Net.IPNetwork.TryParse(values[i], out _) && !System.Net.IPAddress.TryParse(values[i], out _))
            {
                r.Context.Error(r.Get(key), $"{r.ChildPath(key)}[{i}]", $"'{values[i]}' is not an IP address or CIDR block");
            }
        }

        return values;
    }

    // ---------------- meshkit.dev ----------------
    private static SidecarResource ReadSidecar(MapReader s, Header h)
    {
        s.Anchor("workloadSelector");
        var selector = s.Map("workloadSelector", w => new WorkloadSelector(SelectorLabels(w, "labels")));
        if (selector is { MatchLabels.Count: 0 })
        {
            s.Context.Error(s.Get("workloadSelector"), s.ChildPath("workloadSelector.labels"), "needs at least one label");
        }

        var hosts = new List<SidecarHost>();
        var egress = s.List("egress", e =>
        {
            var entries = e.Strings("hosts");
            if (entries.Count == 0)
            {
                e.Context.Error(e.Node, e.ChildPath("hosts"), "at least one host is required");
            }

            for (var i = 0; i < entries.Count; i++)
            {
                var slash = entries[i].IndexOf('/', StringComparison.Ordinal);
                var ns = slash < 0 ? string.Empty : entries[i][..slash];
                var host = slash < 0 ? entries[i] : entries[i][(slash + 1)..];
                var path = $"{e.ChildPath("hosts")}[{i}]";
                if (slash < 0 || !(ns is "*" or "." or "~" || Names.IsDnsLabel(ns)))
                {
                    e.Context.Error(e.Get("hosts"), path, $"'{entries[i]}' is not namespace/host (namespace: a name, '*', '.' or '~')");
                    continue;
                }

                ValidateHostName(e, path, host, allowWildcard: true);
                hosts.Add(new SidecarHost(ns, host));
            }

            // MeshKit has no listeners: an egress entry's hosts apply on every port and no traffic is captured.
            e.NotSupported("port", DiagnosticSeverity.Warning, "MeshKit has no outbound listeners; the hosts apply on every port");
            e.NotSupported("bind", DiagnosticSeverity.Warning, "MeshKit has no outbound listeners");
            e.NotSupported("captureMode", DiagnosticSeverity.Warning, "MeshKit captures no traffic; the application's HttpClients go through it");
            return new BoxedString(null);
        });
        if (egress.Count == 0 && s.Has("egress"))
        {
            s.Context.Error(s.Get("egress"), s.ChildPath("egress"), "needs at least one entry");
        }

        if (s.Get("egress") is YamlSequenceNode egressItems)
        {
            // Istio's listener rules, though MeshKit merges the entries: one entry without a port, and it comes last.
            var portless = 0;
            for (var i = 0; i < egressItems.Children.Count; i++)
            {
                if (egressItems.Children[i] is YamlMappingNode item && !item.Children.Any(c => c.Key is YamlScalarNode { Value: "port" }))
                {
                    var path = $"{s.ChildPath("egress")}[{i}]";
                    if (++portless > 1)
                    {
                        s.Context.Error(item, path, "only one egress entry may go without a port (as in Istio)");
                    }
                    else if (i != egressItems.Children.Count - 1)
                    {
                        s.Context.Error(item, path, "the egress entry without a port must be the last one (as in Istio)");
                    }
                }
            }
        }

        var outbound = s.Map("outboundTrafficPolicy", o =>
        {
            o.NotSupported("egressProxy", DiagnosticSeverity.Error, "MeshKit sends unknown hosts directly (ALLOW_ANY) or refuses them (REGISTRY_ONLY)");
            return new BoxedString(o.String("mode"));
        })?.Value;
        if (outbound is not null && outbound is not ("ALLOW_ANY" or "REGISTRY_ONLY"))
        {
            s.Context.Error(s.Get("outboundTrafficPolicy"), s.ChildPath("outboundTrafficPolicy.mode"), $"unknown mode '{outbound}'; expected ALLOW_ANY or REGISTRY_ONLY");
        }

        s.NotSupported("ingress", DiagnosticSeverity.Warning, "the application's own Kestrel listens; MeshMiddleware guards what reaches it");
        s.NotSupported("inboundConnectionPool", DiagnosticSeverity.Warning, "Kestrel's limits apply to inbound connections");
        return Fill(new SidecarResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector, EgressHosts = hosts, OutboundTrafficPolicy = outbound,
        }, h);
    }

    private static MeshConfigResource ReadMeshConfig(MapReader s, Header h)
    {
        var trustDomain = s.String("trustDomain");
        if (trustDomain is not null && !Names.IsDnsSubdomain(trustDomain))
        {
            s.Context.Error(s.Get("trustDomain"), s.ChildPath("trustDomain"), $"'{trustDomain}' is not a valid trust domain");
        }

        var root = s.String("rootNamespace");
        if (root is not null && !Names.IsDnsLabel(root))
        {
            s.Context.Error(s.Get("rootNamespace"), s.ChildPath("rootNamespace"), $"'{root}' is not a valid namespace");
        }

        var outbound = s.Map("outboundTrafficPolicy", o => new BoxedString(o.String("mode")))?.Value;
        if (outbound is not null && outbound is not ("ALLOW_ANY" or "REGISTRY_ONLY"))
        {
            s.Context.Error(s.Node, s.ChildPath("outboundTrafficPolicy.mode"), $"unknown mode '{outbound}'; expected ALLOW_ANY or REGISTRY_ONLY");
        }

        var normalization = s.Map("pathNormalization", n => new BoxedString(n.String("normalization")))?.Value;
        if (normalization is not null && normalization is not ("BASE" or "MERGE_SLASHES" or "DECODE_AND_MERGE_SLASHES" or "NONE" or "DEFAULT"))
        {
            s.Context.Error(s.Node, s.ChildPath("pathNormalization.normalization"), $"unknown normalization '{normalization}'; expected BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or NONE");
        }

        var clusterDomain = s.String("clusterDomain");
        if (clusterDomain is not null && !Names.IsDnsSubdomain(clusterDomain))
        {
            s.Context.Error(s.Get("clusterDomain"), s.ChildPath("clusterDomain"), $"'{clusterDomain}' is not a valid DNS suffix");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var providers = s.List("extensionProviders", p =>
        {
            var name = p.String("name", required: true);
            if (name is not null && !names.Add(name))
            {
                p.Context.Error(p.Get("name"), p.ChildPath("name"), $"another extension provider is named '{name}'");
            }

            var http = p.Map("envoyExtAuthzHttp", a => ReadExtAuthz(a, grpc: false));
            var grpc = p.Map("envoyExtAuthzGrpc", a => ReadExtAuthz(a, grpc: true));
            if (http is not null && grpc is not null)
            {
                p.Context.Error(p.Node, p.Path, "envoyExtAuthzHttp and envoyExtAuthzGrpc exclude each other");
            }

            http ??= grpc;
            foreach (var kind in TelemetryProviderKinds)
            {
                p.NotSupported(kind, DiagnosticSeverity.Warning, "MeshKit's spans, metrics and access logs go through the application's OpenTelemetry and ILogger setup (observability.md)");
            }

            return name is null || http is null ? null : http with { Name = name };
        });

        return Fill(new MeshConfigResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            TrustDomain = trustDomain, RootNamespace = root, OutboundTrafficPolicy = outbound, ClusterDomain = clusterDomain,
            PathNormalization = normalization == "DEFAULT" ? "BASE" : normalization, ExtensionProviders = providers,
        }, h);
    }

    private static readonly string[] TelemetryProviderKinds =
    [
        "zipkin", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking", "opentelemetry", "prometheus",
        "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls", "envoyOtelAls",
    ];

    // envoyExtAuthzHttp and envoyExtAuthzGrpc: the gRPC one has the common fields only (the service decides which
    // headers go where), and its reader reports the HTTP-only ones as unknown fields.
    private static ExtAuthzProviderSpec ReadExtAuthz(MapReader a, bool grpc)
    {
        // "[namespace/]host": the namespace only disambiguates; MeshKit resolves hosts by name.
        var service = a.String("service", required: true) ?? string.Empty;
        var host = service.Contains('/', StringComparison.Ordinal) ? service[(service.IndexOf('/', StringComparison.Ordinal) + 1)..] : service;
        if (host.Length > 0)
        {
            ValidateHostName(a, a.ChildPath("service"), host, allowWildcard: false);
        }

        var port = a.UInt("port", 1, 65535);
        if (port is null && !a.Has("port"))
        {
            a.Context.Error(a.Node, a.ChildPath("port"), "is required");
        }

        var prefix = grpc ? null : a.String("pathPrefix");
        if (prefix is not null && !prefix.StartsWith('/'))
        {
            a.Context.Error(a.Get("pathPrefix"), a.ChildPath("pathPrefix"), $"'{prefix}' must start with '/'");
        }

        int? status = null;
        if (a.String("statusOnError") is { } statusText)
        {
            if (int.TryParse(statusText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) && code is >= 200 and <= 599)
            {
                status = code;
            }
            else
            {
                a.Context.Error(a.Get("statusOnError"), a.ChildPath("statusOnError"), $"'{statusText}' is not an HTTP status between 200 and 599");
            }
        }

        var packAsBytes = false;
        var body = a.Map("includeRequestBodyInCheck", b =>
        {
            if (grpc)
            {
                packAsBytes = b.Bool("packAsBytes") ?? false;
            }
            else
            {
                b.NotSupported("packAsBytes", DiagnosticSeverity.Warning, "it applies to the gRPC protocol only");
            }

            return new CheckBodyBox(b.UInt("maxRequestBytes", 1, int.MaxValue) ?? 0, b.Bool("allowPartialMessage") ?? false);
        });
        if (body is { Max: 0 })
        {
            a.Context.Error(a.Get("includeRequestBodyInCheck"), a.ChildPath("includeRequestBodyInCheck.maxRequestBytes"), "is required");
        }

        if (grpc)
        {
            return new ExtAuthzProviderSpec
            {
                Name = string.Empty, Grpc = true, Service = host, Port = port ?? 0, Timeout = a.TimerDuration("timeout"),
                FailOpen = a.Bool("failOpen") ?? false, StatusOnError = status,
                MaxRequestBytes = body is { Max: > 0 } ? body.Max : null, AllowPartialMessage = body?.AllowPartial ?? false, PackAsBytes = packAsBytes,
            };
        }

        return new ExtAuthzProviderSpec
        {
            Name = string.Empty,
            Service = host,
            Port = port ?? 0,
            Timeout = a.TimerDuration("timeout"),
            PathPrefix = prefix,
            FailOpen = a.Bool("failOpen") ?? false,
            StatusOnError = status,
            IncludeRequestHeadersInCheck = [.. a.Strings("includeRequestHeadersInCheck"), .. a.Strings("includeHeadersInCheck")],
            IncludeAdditionalHeadersInCheck = a.StringMap("includeAdditionalHeadersInCheck"),
            MaxRequestBytes = body is { Max: > 0 } ? body.Max : null,
            AllowPartialMessage = body?.AllowPartial ?? false,
            HeadersToUpstreamOnAllow = a.Strings("headersToUpstreamOnAllow"),
            HeadersToDownstreamOnDeny = a.Strings("headersToDownstreamOnDeny"),
            HeadersToDownstreamOnAllow = a.Strings("headersToDownstreamOnAllow"),
        };
    }

    private sealed record CheckBodyBox(uint Max, bool AllowPartial);

    // ---------------- shared checks ----------------
    // VirtualService and DestinationRule hosts: a name, an FQDN, "*.suffix" or "*" (every service).
    private static void ValidateRouteHost(MapReader r, string path, string host) =>
        ValidateHostName(r, path, host, allowWildcard: true);

    private static void ValidateHostName(MapReader r, string path, string host, bool allowWildcard)
    {
        if (allowWildcard && host == "*")
        {
            return;
        }

        var name = allowWildcard && host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        if (!Names.IsDnsSubdomain(name.ToLowerInvariant()))
        {
            r.Context.Error(r.Node, path, $"'{host}' is not a valid host name");
        }
    }
}
