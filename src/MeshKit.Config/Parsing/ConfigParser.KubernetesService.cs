using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// Kubernetes' v1 Service, as Istio reads one: a host of the mesh whose endpoints are the workloads its selector picks.
public static partial class ConfigParser
{
    // What a Service says about the cluster's network below the mesh (virtual IPs, node ports, cloud load balancers,
    // kube-proxy's handling of external traffic): MeshKit routes by host name in process, so none of it applies, as
    // none of it changes what Istio's sidecars do with a call.
    private static readonly string[] NetworkOnlyServiceFields =
    [
        "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalIPs", "externalName", "externalTrafficPolicy",
        "healthCheckNodePort", "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass",
        "allocateLoadBalancerNodePorts",
    ];

    /// <summary>Istio's annotation that gives a Service the <c>exportTo</c> a ServiceEntry has in its spec.</summary>
    internal const string ExportToAnnotation = "networking.istio.io/exportTo";

    /// <summary>Istio's label for cookie-based persistent sessions: the cookie's name, or <c>name:/path</c>.</summary>
    internal const string PersistentSessionLabel = "istio.io/persistent-session";

    /// <summary>Istio's label for header-based persistent sessions: the header's name.</summary>
    internal const string PersistentSessionHeaderLabel = "istio.io/persistent-session-header";

    private static KubernetesService? ReadKubernetesService(MapReader s, Header h, MapReader doc)
    {
        // A Service's name is one label of its host (name.namespace.svc...), as Kubernetes requires.
        if (!Names.IsDnsLabel(h.Metadata.Name))
        {
            doc.Context.Error(MetadataNode(doc, "name"), "metadata.name", $"'{h.Metadata.Name}' is not a valid Service name (a DNS-1123 label: lower-case letters, digits and '-')");
        }

        var exportTo = ServiceExportTo(doc, h);
        var session = ServiceSession(doc, h);
        var type = s.String("type") ?? "ClusterIP";
        if (type == "ExternalName")
        {
            if (session is not null)
            {
                var label = session.CookieName is null ? PersistentSessionHeaderLabel : PersistentSessionLabel;
                doc.Context.Error(MetadataNode(doc, "labels", label), $"metadata.labels.{label}", "an ExternalName Service keeps no sessions: it has no endpoints of its own (label the Service it names)");
            }

            return ReadExternalNameService(s, h, exportTo);
        }

        if (type is not ("ClusterIP" or "NodePort" or "LoadBalancer"))
        {
            s.Context.Error(s.Get("type"), s.ChildPath("type"), $"unknown type '{type}'; expected ClusterIP, NodePort, LoadBalancer or ExternalName");
        }

        s.Ignore(NetworkOnlyServiceFields);
        var selector = SelectorLabels(s, "selector");
        var publishNotReady = s.Bool("publishNotReadyAddresses") ?? false;
        var seen = new List<ServiceEntryPort>();
        var ports = s.List("ports", p => Unique(p, seen, ReadKubernetesServicePort(p), "port"));
        var portItems = (s.Get("ports") as YamlSequenceNode)?.Children;
        if (portItems is { Count: > 1 })
        {
            // Kubernetes' own rule: with two ports or more, each is named (a route or a DestinationRule names them).
            for (var i = 0; i < portItems.Count; i++)
            {
                if (portItems[i] is YamlMappingNode item && !item.Children.ContainsKey(new YamlScalarNode("name")))
                {
                    s.Context.Error(item, $"{s.ChildPath("ports")}[{i}].name", "is required when a Service has more than one port (as in Kubernetes)");
                }
            }
        }

        var affinity = s.String("sessionAffinity") ?? "None";
        if (affinity == "ClientIP")
        {
            s.Context.Warning(s.Get("sessionAffinity"), s.ChildPath("sessionAffinity"), "is not supported by MeshKit and is ignored: kube-proxy's affinity is below the mesh; a DestinationRule's loadBalancer.consistentHash.useSourceIp keeps a caller on one endpoint");
        }
        else if (affinity != "None")
        {
            s.Context.Error(s.Get("sessionAffinity"), s.ChildPath("sessionAffinity"), $"unknown sessionAffinity '{affinity}'; expected None or ClientIP");
        }

        s.Ignore("sessionAffinityConfig"); // ClientIP's timeout: reported with it
        if ((s.String("internalTrafficPolicy") ?? "Cluster") != "Cluster")
        {
            s.Context.Warning(s.Get("internalTrafficPolicy"), s.ChildPath("internalTrafficPolicy"), "is not supported by MeshKit and is ignored: MeshKit's workloads are not placed on nodes; a DestinationRule's localityLbSetting keeps calls near their caller");
        }

        s.NotSupported("trafficDistribution", DiagnosticSeverity.Warning, "a DestinationRule's localityLbSetting keeps calls near their caller");

        if (portItems is not { Count: > 0 })
        {
            // Kubernetes allows it (a headless Service); Istio ignores it: there is no port to route its calls by.
            s.Context.Warning(s.Get("ports") ?? s.Node, s.ChildPath("ports"), "a Service without ports has no calls the mesh can route; the document is ignored");
            return null;
        }

        // Without a selector, Kubernetes leaves the endpoints to EndpointSlices (or Endpoints) written by someone else.
        return Fill(new KubernetesService
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Selector = selector.Count == 0 ? null : new WorkloadSelector(selector), Ports = ports, ExportTo = exportTo, SessionPersistence = session,
            PublishNotReadyAddresses = publishNotReady,
        }, h);
    }

    // The node of metadata.<map>.<key> (or of metadata.<map> alone), for a finding's line; the nearest one written when absent.
    private static YamlNode MetadataNode(MapReader doc, string map, string? key = null)
    {
        var metadata = doc.Get("metadata") as YamlMappingNode;
        if (metadata?.Children.TryGetValue(new YamlScalarNode(map), out var entries) != true || entries is null)
        {
            return metadata ?? doc.Node;
        }

        return key is null ? entries : entries is YamlMappingNode entryMap && entryMap.Children.TryGetValue(new YamlScalarNode(key), out var entry) ? entry : doc.Node;
    }

    // Istio's labels for strong session affinity: a cookie ("name" or "name:/path") or a header; one of them.
    private static SessionPersistenceSpec? ServiceSession(MapReader doc, Header h)
    {
        var labels = h.Metadata.Labels;
        var cookie = labels.TryGetValue(PersistentSessionLabel, out var c) ? c : null;
        var header = labels.TryGetValue(PersistentSessionHeaderLabel, out var hd) ? hd : null;
        if (cookie is not null && header is not null)
        {
            doc.Context.Error(MetadataNode(doc, "labels", PersistentSessionHeaderLabel), $"metadata.labels.{PersistentSessionHeaderLabel}", $"a Service keeps sessions by a cookie ({PersistentSessionLabel}) or by a header, not both");
            return null;
        }

        if (header is not null)
        {
            if (!IsHeaderToken(header))
            {
                doc.Context.Error(MetadataNode(doc, "labels", PersistentSessionHeaderLabel), $"metadata.labels.{PersistentSessionHeaderLabel}", $"'{header}' is not a header name");
                return null;
            }

            return new SessionPersistenceSpec(null, header.ToLowerInvariant(), null, null);
        }

        if (cookie is null)
        {
            return null;
        }

        // Istio's form: the cookie's name, or name:/path; the path is / when not given.
        var colon = cookie.IndexOf(':', StringComparison.Ordinal);
        var name = colon < 0 ? cookie : cookie[..colon];
        var path = colon < 0 ? "/" : cookie[(colon + 1)..];
        if (!IsHeaderToken(name) || !path.StartsWith('/'))
        {
            doc.Context.Error(MetadataNode(doc, "labels", PersistentSessionLabel), $"metadata.labels.{PersistentSessionLabel}", $"'{cookie}' is not a cookie name, or name:/path");
            return null;
        }

        return new SessionPersistenceSpec(name, null, path, null);
    }

    // The annotation's value: '.', '*', '~' or namespaces, separated by commas (Istio's own form).
    private static IReadOnlyList<string> ServiceExportTo(MapReader doc, Header h)
    {
        if (!h.Metadata.Annotations.TryGetValue(ExportToAnnotation, out var value))
        {
            return [];
        }

        var path = $"metadata.annotations.{ExportToAnnotation}";
        var node = MetadataNode(doc, "annotations", ExportToAnnotation);
        var exportTo = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (exportTo.Length == 0)
        {
            doc.Context.Error(node, path, "names no namespace: use '*' for every namespace, '.' for the Service's own");
        }

        foreach (var entry in exportTo.Where(e => e is not ("." or "*" or "~") && !Names.IsDnsLabel(e)))
        {
            doc.Context.Error(node, path, $"'{entry}' must be '.', '*', '~' or a namespace");
        }

        return exportTo;
    }

    // An alias (Kubernetes: a DNS CNAME): as Istio reads one since 1.20, calls to it are calls to the service the
    // name belongs to when the mesh has it; otherwise they go to that name, resolved by DNS, on the Service's ports.
    private static KubernetesService? ReadExternalNameService(MapReader s, Header h, IReadOnlyList<string> exportTo)
    {
        var externalName = s.String("externalName", required: true)?.TrimEnd('.').ToLowerInvariant();
        if (externalName is { Length: > 0 } && !Names.IsDnsSubdomain(externalName))
        {
            s.Context.Error(s.Get("externalName"), s.ChildPath("externalName"), $"'{externalName}' is not a DNS name");
        }

        // Kubernetes gives an alias no endpoints of its own; its selector and the cluster's network fields do nothing.
        s.Ignore("selector", "sessionAffinity", "sessionAffinityConfig", "internalTrafficPolicy", "trafficDistribution", "publishNotReadyAddresses");
        s.Ignore(NetworkOnlyServiceFields);
        var seen = new List<ServiceEntryPort>();
        var ports = s.List("ports", p => Unique(p, seen, ReadKubernetesServicePort(p), "port"));
        return externalName is not { Length: > 0 } ? null : Fill(new KubernetesService
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Ports = ports, ExportTo = exportTo, ExternalName = externalName,
        }, h);
    }

    private static ServiceEntryPort? ReadKubernetesServicePort(MapReader p)
    {
        var number = p.UInt("port", 1, 65535);
        if (number is null && !p.Has("port"))
        {
            p.Context.Error(p.Node, p.ChildPath("port"), "is required");
        }

        var name = p.String("name") ?? string.Empty;
        if (name.Length > 0 && !Names.IsDnsLabel(name))
        {
            p.Context.Error(p.Get("name"), p.ChildPath("name"), $"'{name}' is not a valid port name (a DNS-1123 label)");
        }

        p.Ignore("nodePort"); // a node's port, below the mesh
        var (targetPort, targetName) = ReadTargetPort(p);
        var appProtocol = p.String("appProtocol");
        if (!IsTcpPort(p))
        {
            return null;
        }

        return number is null ? null : new ServiceEntryPort(number.Value, IstioProtocol(appProtocol, name), name, targetPort) { TargetPortName = targetName };
    }

    // A Kubernetes port's protocol: TCP (the default) carries the calls MeshKit sees; UDP and SCTP ports are skipped
    // with a warning (Istio does not proxy them either); anything else is an error.
    private static bool IsTcpPort(MapReader p)
    {
        var protocol = p.String("protocol") ?? "TCP";
        if (protocol is "UDP" or "SCTP")
        {
            p.Context.Warning(p.Get("protocol"), p.ChildPath("protocol"), $"MeshKit carries HTTP calls, not {protocol}: the port is ignored");
            return false;
        }

        if (protocol != "TCP")
        {
            p.Context.Error(p.Get("protocol"), p.ChildPath("protocol"), $"unknown protocol '{protocol}'; expected TCP, UDP or SCTP");
        }

        return true;
    }

    // targetPort is a number, or the name of the workloads' port (Kubernetes' IntOrString).
    private static (uint? Number, string? Name) ReadTargetPort(MapReader p)
    {
        var node = p.Get("targetPort");
        if (node is not YamlScalarNode { Value: { Length: > 0 } value })
        {
            return (null, null);
        }

        if (value.All(char.IsAsciiDigit))
        {
            return (p.ToUInt(node, p.ChildPath("targetPort"), 1, 65535), null);
        }

        // IANA_SVC_NAME: up to 15 lower-case letters, digits and inner dashes, at least one letter.
        if (value.Length > 15 || !Names.IsDnsLabel(value) || !value.Any(char.IsAsciiLetterLower) || value.Contains("--", StringComparison.Ordinal))
        {
            p.Context.Error(node, p.ChildPath("targetPort"), $"'{value}' is neither a port number nor a port name (up to 15 lower-case letters, digits and dashes)");
            return (null, null);
        }

        return (null, value);
    }

    /// <summary>
    /// The protocol Istio selects for a Service port: its <c>appProtocol</c>, else the prefix of its name
    /// (<c>http-web</c>, <c>grpc</c>); else Istio sniffs the traffic, and the calls MeshKit's handler carries are HTTP.
    /// </summary>
    internal static string IstioProtocol(string? appProtocol, string portName)
    {
        static string? Known(string value) => value.ToLowerInvariant() switch
        {
            "http" or "kubernetes.io/ws" => "HTTP",
            "http2" or "kubernetes.io/h2c" => "HTTP2",
            "https" or "kubernetes.io/wss" => "HTTPS",
            "grpc" => "GRPC",
            "grpc-web" => "GRPC-WEB",
            "tcp" => "TCP",
            "tls" => "TLS",
            "mongo" => "MONGO",
            "mysql" => "MYSQL",
            "redis" => "REDIS",
            _ => null,
        };

        var dash = portName.IndexOf('-', StringComparison.Ordinal);

        // grpc-web is a protocol of its own before it is grpc with a suffix.
        return (appProtocol is { Length: > 0 } ? Known(appProtocol) : null)
            ?? (portName.StartsWith("grpc-web", StringComparison.OrdinalIgnoreCase) ? "GRPC-WEB" : null)
            ?? Known(dash < 0 ? portName : portName[..dash])
            ?? "HTTP";
    }
}
