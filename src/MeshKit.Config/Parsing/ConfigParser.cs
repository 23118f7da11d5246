using System.Globalization;
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
public static partial class ConfigParser
{
    private static readonly string[] NetworkingVersions = ["v1", "v1beta1", "v1alpha3"];
    private static readonly string[] SecurityVersions = ["v1", "v1beta1"];
    private static readonly string[] TelemetryVersions = ["v1", "v1alpha1"];
    private static readonly string[] IgnoredIstioKinds = ["Gateway", "WorkloadGroup", "EnvoyFilter", "ProxyConfig"];
    private static readonly string[] KubernetesGroups = ["", "apps", "batch", "autoscaling", "policy", "extensions"];
    private static readonly string[] GatewayApiRoutes = ["HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute"];

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

        if (SkipsKind(doc, group, kind, apiVersion))
        {
            doc.Ignore("metadata", "spec", "status");
            return null;
        }

        var (supported, versions) = (group, kind) switch
        {
            ("networking.istio.io", "VirtualService" or "DestinationRule" or "ServiceEntry" or "Sidecar" or "WorkloadEntry") => (true, NetworkingVersions),
            ("security.istio.io", "PeerAuthentication" or "RequestAuthentication" or "AuthorizationPolicy") => (true, SecurityVersions),
            ("meshkit.dev", "MeshConfig") => (true, ["v1alpha1"]),
            ("telemetry.istio.io", "Telemetry") => (true, TelemetryVersions),
            ("gateway.networking.k8s.io", "HTTPRoute") => (true, GatewayApiVersions),
            ("gateway.networking.k8s.io", "GRPCRoute") => (true, GrpcRouteVersions),
            ("", "Service" or "Endpoints") => (true, ["v1"]),
            ("discovery.k8s.io", "EndpointSlice") => (true, ["v1"]),
            _ => (false, Array.Empty<string>()),
        };

        if (!supported)
        {
            doc.Context.Error(doc.Node, "kind", $"unsupported kind '{kind}' of apiVersion '{apiVersion}' (MeshKit reads the kinds of networking.istio.io, security.istio.io, telemetry.istio.io and meshkit.dev)");
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
            "HTTPRoute" or "GRPCRoute" => doc.Map("spec", s => ReadGatewayRoute(s, header, CreationTimestamp(doc))),
            "Service" => doc.Map("spec", s => ReadKubernetesService(s, header, doc)),
            "EndpointSlice" => ReadEndpointSlice(doc, header),
            "Endpoints" => ReadEndpoints(doc, header),
            "WorkloadEntry" => doc.Map("spec", s => Fill(new WorkloadEntryResource
            {
                Kind = kind, ApiVersion = apiVersion, Name = metadata.Name, Namespace = metadata.Namespace,
                Spec = ReadWorkloadEntry(s, requireIp: false),
            }, header)),
            _ => null,
        };

        if (result is null && !doc.Has("spec") && kind is not ("EndpointSlice" or "Endpoints"))
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

    /// <summary>
    /// Reports a document of a kind MeshKit knows it does not read, and says whether it is skipped: Istio kinds for
    /// gateways and proxies (a warning), Kubernetes' own resources that share a folder or a kustomize output with the
    /// mesh's configuration (a warning: they are not mesh configuration; a Service is, and is read, with its EndpointSlices and Endpoints), and Gateway API resources (a warning for those
    /// of gateways, an error for a route attached to a Service, which would route the mesh's own calls). Any other
    /// unknown kind stays an error, so that a misspelt Istio kind or group is never skipped.
    /// </summary>
    private static bool SkipsKind(MapReader doc, string group, string kind, string apiVersion)
    {
        if ((group == "networking.istio.io" && IgnoredIstioKinds.Contains(kind)) || (group == "extensions.istio.io" && kind == "WasmPlugin"))
        {
            doc.Context.Warning(doc.Get("kind"), "kind", $"{kind} is not supported by MeshKit; the document is ignored");
            return true;
        }

        if (group is "gateway.networking.k8s.io" or "gateway.networking.x-k8s.io")
        {
            if (kind is "HTTPRoute" or "GRPCRoute" && group == "gateway.networking.k8s.io" && MeshParentRef(doc) is not null)
            {
                return false; // a route for the mesh: read as such (ReadGatewayRoute)
            }

            if (GatewayApiRoutes.Contains(kind) && MeshParentRef(doc) is { } parent)
            {
                doc.Context.Error(parent.Node, parent.Path, $"a {kind} attached to a {parent.Kind} routes the mesh's own calls (Gateway API for the mesh), which MeshKit does not read; route them with a VirtualService");
            }
            else
            {
                doc.Context.Warning(doc.Get("kind"), "kind", $"{kind} configures gateways, which MeshKit has not; the document is ignored");
            }

            return true;
        }

        if ((group.Length == 0 && kind is "Service" or "Endpoints") || (group == "discovery.k8s.io" && kind == "EndpointSlice"))
        {
            return false; // a host of the mesh and its endpoints: read as Istio reads them (ReadKubernetesService, ReadEndpointSlice)
        }

        if (KubernetesGroups.Contains(group) || group.EndsWith(".k8s.io", StringComparison.Ordinal))
        {
            doc.Context.Warning(doc.Get("kind"), "kind", $"{kind} ({apiVersion}) is a Kubernetes resource, not mesh configuration; the document is ignored");
            return true;
        }

        return false;
    }

    /// <summary>Reads <c>metadata.creationTimestamp</c> (RFC 3339), which orders equally specific HTTPRoute matches; null when absent or not a time.</summary>
    private static DateTimeOffset? CreationTimestamp(MapReader doc) =>
        doc.Get("metadata") is YamlMappingNode metadata && metadata.Children.TryGetValue(new YamlScalarNode("creationTimestamp"), out var node)
        && node is YamlScalarNode { Value: { } text } && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var value) ? value : null;

    /// <summary>The first parent reference of a Gateway API route that is a Service or a ServiceEntry (a mesh route); null when it has none.</summary>
    private static (YamlNode Node, string Path, string Kind)? MeshParentRef(MapReader doc)
    {
        if (doc.Get("spec") is not YamlMappingNode spec
            || !spec.Children.TryGetValue(new YamlScalarNode("parentRefs"), out var refs) || refs is not YamlSequenceNode parents)
        {
            return null;
        }

        for (var i = 0; i < parents.Children.Count; i++)
        {
            if (parents.Children[i] is YamlMappingNode parent
                && parent.Children.TryGetValue(new YamlScalarNode("kind"), out var kindNode)
                && kindNode is YamlScalarNode { Value: "Service" or "ServiceEntry" or "ServiceImport" } parentKind)
            {
                return (parentKind, $"spec.parentRefs[{i}].kind", parentKind.Value!);
            }
        }

        return null;
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
        // A generated name is Kubernetes' to make at creation; an export carries it beside the name it made (an
        // EndpointSlice's, a pod's), and then the name is what counts.
        if (m.Has("name"))
        {
            m.Ignore("generateName");
        }
        else
        {
            m.NotSupported("generateName", DiagnosticSeverity.Error, "config resources need a fixed name");
        }
        return new Metadata(name, ns, labels, annotations);
    }

    private static IReadOnlyList<string> ReadExportTo(MapReader s, string key = "exportTo")
    {
        var exportTo = s.Strings(key);
        for (var i = 0; i < exportTo.Count; i++)
        {
            var value = exportTo[i];
            if (value is not ("." or "*" or "~") && !Names.IsDnsLabel(value))
            {
                s.Context.Error(s.Get(key), $"{s.ChildPath(key)}[{i}]", $"'{value}' must be '.', '*', '~' or a namespace");
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
            if (!ushort.TryParse(values[i], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port == 0)
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
