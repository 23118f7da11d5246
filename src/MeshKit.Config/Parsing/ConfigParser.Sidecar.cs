using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// Sidecar (networking.istio.io): the hosts a workload sees.
public static partial class ConfigParser
{
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
            // An entry with a port is Istio's listener on that port: its hosts are called on that port only.
            var port = e.Map("port", p =>
            {
                p.Ignore("protocol", "name", "targetPort");
                if (!p.Has("number"))
                {
                    p.Context.Error(p.Node, p.ChildPath("number"), "is required");
                }

                return new PortBox(p.UInt("number", 1, 65535));
            })?.Number;
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
                hosts.Add(new SidecarHost(ns, host) { Port = port });
            }

            // MeshKit has no listeners: nothing is bound, and no traffic is captured.
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

        Destination? egressProxy = null;
        var outbound = s.Map("outboundTrafficPolicy", o =>
        {
            var mode = o.String("mode");
            egressProxy = o.Map("egressProxy", ReadEgressProxy);
            if (egressProxy is not null && mode != "ALLOW_ANY")
            {
                // As Istio validates: unknown hosts go through the proxy only where they may go at all.
                o.Context.Error(o.Get("egressProxy"), o.ChildPath("egressProxy"), "is valid only with mode ALLOW_ANY");
            }

            return new BoxedString(mode);
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
            Selector = selector, EgressHosts = hosts, OutboundTrafficPolicy = outbound, EgressProxy = egressProxy,
        }, h);
    }

    // The egress proxy: a destination with a port, as Istio validates it (a service's host, no wildcard).
    private static Destination? ReadEgressProxy(MapReader e)
    {
        var proxy = ReadDestination(e);
        if (proxy is null)
        {
            return null;
        }

        if (proxy.Host.Contains('*', StringComparison.Ordinal))
        {
            e.Context.Error(e.Get("host"), e.ChildPath("host"), "an egress proxy is one service: no wildcard");
            return null;
        }

        if (proxy.Port is null)
        {
            e.Context.Error(e.Node, e.ChildPath("port"), "an egress proxy needs its port (port.number), as in Istio");
            return null;
        }

        return proxy;
    }
}
