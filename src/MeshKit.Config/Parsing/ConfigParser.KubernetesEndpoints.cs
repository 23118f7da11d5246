using System.Net;
using System.Net.Sockets;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Parsing;

// Kubernetes' EndpointSlice and Endpoints, as Istio reads them: the endpoints of a Service without a selector.
public static partial class ConfigParser
{
    /// <summary>The label that names an EndpointSlice's Service.</summary>
    internal const string ServiceNameLabel = "kubernetes.io/service-name";

    /// <summary>The label that names who keeps an EndpointSlice.</summary>
    private const string ManagedByLabel = "endpointslice.kubernetes.io/managed-by";

    /// <summary>
    /// The annotation (value <c>true</c>) the control plane gives every object it reads from a Kubernetes API server
    /// (<c>ControlPlane:KubernetesApiServer</c>): such an object is the cluster's current state, so an EndpointSlice of
    /// Kubernetes' own controller (a selector's ready pods) is read, where a file's copy of one is an export, stale once
    /// pods move, and skipped.
    /// </summary>
    public const string LiveObjectAnnotation = "meshkit.dev/live";

    // What a slice's endpoint says about where it runs and what it is: MeshKit takes a live workload's labels,
    // identity and locality from the workload (an address that is one), and Istio takes them from the pod and its
    // node, not from these fields.
    private static readonly string[] EndpointPlacementFields = ["hostname", "nodeName", "zone", "targetRef", "deprecatedTopology"];

    private static KubernetesEndpoints? ReadEndpointSlice(MapReader doc, Header h)
    {
        var labels = h.Metadata.Labels;
        if (labels.TryGetValue(ManagedByLabel, out var managedBy) && managedBy == "endpointslice-controller.k8s.io"
            && !(h.Metadata.Annotations.TryGetValue(LiveObjectAnnotation, out var live) && live == "true"))
        {
            // Kubernetes' own slice of a Service's selected pods, from a file: MeshKit's endpoints of that Service are
            // the live workloads its selector picks, so the pods' addresses (an export's) are not read. Read from the
            // API server it is current, and it also holds the selected pods that run no MeshKit (the compiler takes an
            // address that is a live workload's as that workload).
            doc.Ignore("addressType", "endpoints", "ports");
            return null;
        }

        if (!labels.TryGetValue(ServiceNameLabel, out var service) || service.Length == 0)
        {
            doc.Context.Warning(MetadataNode(doc, "labels"), $"metadata.labels.{ServiceNameLabel}", "names no Service: the slice's endpoints belong to none (as in Kubernetes and Istio); the document is ignored");
            doc.Ignore("addressType", "endpoints", "ports");
            return null;
        }

        doc.Context.Anchor($"metadata.labels.{ServiceNameLabel}", MetadataNode(doc, "labels", ServiceNameLabel));
        var addressType = doc.String("addressType", required: true);
        AddressFamily? family = addressType switch
        {
            "IPv4" => AddressFamily.InterNetwork,
            "IPv6" => AddressFamily.InterNetworkV6,
            _ => null,
        };
        if (addressType == "FQDN")
        {
            // Deprecated by Kubernetes, and neither kube-proxy nor Istio routes to it.
            doc.Context.Warning(doc.Get("addressType"), "addressType", "FQDN slices are not read (deprecated in Kubernetes; kube-proxy and Istio do not route to them either): the document is ignored; a ServiceEntry with resolution DNS sends calls to a host name");
            doc.Ignore("endpoints", "ports");
            return null;
        }

        if (addressType is not null && family is null)
        {
            doc.Context.Error(doc.Get("addressType"), "addressType", $"unknown addressType '{addressType}'; expected IPv4, IPv6 or FQDN");
        }

        var addresses = doc.List("endpoints", e => ReadSliceEndpoint(e, family));
        var ports = ReadEndpointPorts(doc);
        return Fill(new KubernetesEndpoints
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace, ServiceName = service,
            Subsets = [new KubernetesEndpointSubset(addresses, ports)],
        }, h);
    }

    private static KubernetesEndpointAddress? ReadSliceEndpoint(MapReader e, AddressFamily? family)
    {
        var list = e.Strings("addresses");
        if (list.Count == 0)
        {
            e.Context.Error(e.Get("addresses") ?? e.Node, e.ChildPath("addresses"), "is required: one address");
        }

        for (var i = 0; i < list.Count; i++)
        {
            if (family is not null && (!IPAddress.TryParse(list[i], out var ip) || ip.AddressFamily != family))
            {
                e.Context.Error(e.Get("addresses"), $"{e.ChildPath("addresses")}[{i}]", $"'{list[i]}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address (the slice's addressType)");
            }
        }

        bool? ready = null, terminating = null;
        e.Map<object>("conditions", c =>
        {
            ready = c.Bool("ready");
            c.Bool("serving");
            terminating = c.Bool("terminating");
            return null;
        });
        e.Ignore(EndpointPlacementFields);
        e.NotSupported("hints", DiagnosticSeverity.Warning, "topology-aware routing hints; a DestinationRule's localityLbSetting keeps calls near their caller");

        // Kubernetes: consumers take the first address (the others are reserved for the same endpoint's other
        // families). Ready unless it says otherwise; "serving" is what "ready" would be but for termination, which
        // "terminating" says: Istio reads those two.
        return list.Count == 0 ? null : new KubernetesEndpointAddress(list[0], ready ?? true, terminating ?? false);
    }

    private static KubernetesEndpoints? ReadEndpoints(MapReader doc, Header h)
    {
        var subsets = doc.List("subsets", s =>
        {
            var ready = s.List("addresses", a => ReadEndpointsAddress(a, ready: true));
            var notReady = s.List("notReadyAddresses", a => ReadEndpointsAddress(a, ready: false));
            return new KubernetesEndpointSubset([.. ready, .. notReady], ReadEndpointPorts(s));
        });
        return Fill(new KubernetesEndpoints
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace, ServiceName = h.Metadata.Name,
            Subsets = subsets,
        }, h);
    }

    private static KubernetesEndpointAddress? ReadEndpointsAddress(MapReader a, bool ready)
    {
        var ip = a.String("ip", required: true);
        if (ip is { Length: > 0 } && !IPAddress.TryParse(ip, out _))
        {
            a.Context.Error(a.Get("ip"), a.ChildPath("ip"), $"'{ip}' is not an IP address");
        }

        a.Ignore(EndpointPlacementFields);
        return ip is { Length: > 0 } ? new KubernetesEndpointAddress(ip, ready, Terminating: false) : null;
    }

    // A slice's or a subset's ports: each named as the Service's port it serves ("" for a Service's one unnamed port).
    private static List<KubernetesEndpointPort> ReadEndpointPorts(MapReader r)
    {
        var ports = r.List("ports", p =>
        {
            var name = p.String("name") ?? string.Empty;
            if (name.Length > 0 && !Names.IsDnsLabel(name))
            {
                p.Context.Error(p.Get("name"), p.ChildPath("name"), $"'{name}' is not a valid port name (a DNS-1123 label)");
            }

            p.Context.Anchor(p.ChildPath("name"), p.Get("name") ?? p.Node);
            var number = p.UInt("port", 1, 65535);
            p.Ignore("appProtocol"); // the Service's port says the protocol, as Istio reads it
            if (!IsTcpPort(p))
            {
                return null;
            }

            if (number is null && !p.Has("port"))
            {
                // Kubernetes reads a slice port without a number as "all ports", which a Service's port cannot name.
                p.Context.Warning(p.Node, p.ChildPath("port"), "a port without a number serves no port of the Service the mesh can route to; it is ignored");
            }

            return number is null ? null : new KubernetesEndpointPort(name, number.Value, p.Path);
        });

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var port in ports.Where(port => !seen.Add(port.Name)))
        {
            r.Context.Error(r.Get("ports"), $"{port.Path}.name", $"port name '{port.Name}' is already defined");
        }

        return [.. ports];
    }
}
