using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// ServiceEntry and WorkloadEntry (networking.istio.io): hosts outside the registry and their endpoints.
public static partial class ConfigParser
{
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

        var seen = new List<ServiceEntryPort>();
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
            return Unique(p, seen, number is null ? null : new ServiceEntryPort(number.Value, protocol, name, target), "number");
        });

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

    // Port numbers and names are unique within a ServiceEntry or a Service: checked as each port is read, so that a
    // finding names the port's own item.
    private static ServiceEntryPort? Unique(MapReader p, List<ServiceEntryPort> earlier, ServiceEntryPort? port, string numberField)
    {
        if (port is null)
        {
            return null;
        }

        if (earlier.Any(o => o.Number == port.Number))
        {
            p.Context.Error(p.Get(numberField) ?? p.Node, p.ChildPath(numberField), $"port {port.Number} is already defined");
        }

        if (port.Name.Length > 0 && earlier.Any(o => o.Name == port.Name))
        {
            p.Context.Error(p.Get("name") ?? p.Node, p.ChildPath("name"), $"port name '{port.Name}' is already defined");
        }

        earlier.Add(port);
        return port;
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
}
