using MeshKit.Config.Model;

namespace MeshKit.Config.Compilation;

/// <summary>
/// HTTPRoutes attached to Services, as VirtualServices of the model: one per route and Service, for that Service's host
/// (to its port only, when the parent names one), visible everywhere when the route is in the Service's namespace (a
/// producer route) and to its own namespace only otherwise (a consumer route, which routes that namespace's calls
/// instead of the producer's, GEP-1426).
/// </summary>
internal static class GatewayRoutes
{
    public static IEnumerable<VirtualService> ToVirtualServices(IEnumerable<GatewayRouteResource> routes, IReadOnlyList<ServiceEntry> serviceEntries, IReadOnlyList<KubernetesService> services, string domain)
    {
        foreach (var route in routes)
        {
            foreach (var parent in route.Parents)
            {
                var producer = parent.Namespace == route.Namespace;

                // A ServiceEntry parent: its hosts (none when it names no ServiceEntry: MeshCompiler reports it).
                var entry = parent.IsServiceEntry ? serviceEntries.FirstOrDefault(e => e.Namespace == parent.Namespace && e.Name == parent.Name) : null;
                string[] hosts = parent.IsServiceEntry
                    ? entry is not null ? [.. entry.Hosts.Select(h => HostNames.Qualify(h, entry.Namespace, domain))] : []
                    : [HostNames.ServiceHost(parent.Name, parent.Namespace, domain)];

                // A sectionName is a port's name: the port of the ServiceEntry, or of the Kubernetes Service, that has it.
                var port = parent.Port;
                string? unresolved = null;
                if (parent.SectionName is { } section && (!parent.IsServiceEntry || entry is not null))
                {
                    var ports = parent.IsServiceEntry
                        ? entry!.Ports
                        : services.FirstOrDefault(s => s.Namespace == parent.Namespace && s.Name == parent.Name)?.Ports ?? [];
                    var named = ports.FirstOrDefault(p => p.Name == section && (parent.Port is null || p.Number == parent.Port));
                    port = named?.Number;
                    if (named is null)
                    {
                        unresolved = $"sectionName '{section}' names no port{(parent.Port is { } number ? $" {number}" : string.Empty)} of {(parent.IsServiceEntry ? "ServiceEntry" : "Service")} {parent.Namespace}/{parent.Name}{(parent.IsServiceEntry ? string.Empty : " (a Kubernetes Service of the config names its ports; workloads' own ports are named by port)")}: the route takes none of its calls";
                        hosts = [];
                    }
                }

                var locations = new Dictionary<string, SourceLocation>(route.FieldLocations, StringComparer.Ordinal) { ["spec.hosts[0]"] = route.Locate(parent.Path) };
                yield return new VirtualService
                {
                    Kind = route.Kind, ApiVersion = route.ApiVersion, Name = route.Name, Namespace = route.Namespace,
                    Labels = route.Labels, Annotations = route.Annotations, Source = route.Source, FieldLocations = locations,
                    Hosts = hosts,
                    ExportTo = producer ? [] : ["."],
                    Http = route.Rules.Select(r => Qualified(r.Route, port, domain)).ToArray(),
                    Gateway = new GatewayRouteOrigin(producer, route.CreationTimestamp, route.Rules.Select(r => r.Precedence).ToArray(), route.Rules.Select(r => r.Rule).ToArray(), parent.Path, port) { Unresolved = unresolved },
                };
            }
        }
    }

    /// <summary>
    /// The routes of the HTTPRoutes that route one Service's calls for a caller, in Gateway API's order: by the match's
    /// precedence across every route, then the older route, then the route's namespace and name, then the rule's place.
    /// A consumer route (the caller's namespace's) takes the calls instead of the producer's.
    /// </summary>
    public static IEnumerable<(VirtualService Vs, HttpRouteSpec Route)> Ordered(IReadOnlyCollection<VirtualService> routes)
    {
        var consumers = routes.Any(r => !r.Gateway!.Producer);
        var group = routes.Where(r => !(consumers && r.Gateway!.Producer)).ToArray();
        return group.Where(r => ShadowingGrpcRoute(r, group) is null)
            .SelectMany(vs => vs.Http.Select((route, i) => (Vs: vs, Route: route, Index: i)))
            .OrderBy(x => x.Vs.Gateway!.Precedence[x.Index])
            .ThenBy(x => x.Vs.Gateway!.Created ?? DateTimeOffset.MaxValue)
            .ThenBy(x => x.Vs.Namespace + "/" + x.Vs.Name, StringComparer.Ordinal)
            .ThenBy(x => x.Vs.Gateway!.Rules[x.Index])
            .Select(x => (x.Vs, x.Route));
    }

    /// <summary>
    /// The GRPCRoute that takes <paramref name="route"/>'s calls instead of it: Gateway API applies one route kind per
    /// Service and port, GRPCRoute before HTTPRoute (GEP-1426); null when none does.
    /// </summary>
    public static VirtualService? ShadowingGrpcRoute(VirtualService route, IEnumerable<VirtualService> others) =>
        route.Kind != "HTTPRoute" ? null : others.FirstOrDefault(o => o.Kind == "GRPCRoute" && o.Gateway is { } g && o.Hosts.Intersect(route.Hosts).Any()
            && g.Producer == route.Gateway!.Producer && (g.ParentPort is null || route.Gateway.ParentPort is null || g.ParentPort == route.Gateway.ParentPort));

    // The route for one parent: its Service port on every match, and the backends' hosts completed with the cluster domain.
    private static HttpRouteSpec Qualified(HttpRouteSpec route, uint? port, string domain) => route with
    {
        Match = port is { } p ? route.Match.Select(m => m with { ServicePort = p }).ToArray() : route.Match,
        Route = route.Route.Select(d => d with { Destination = d.Destination with { Host = Complete(d.Destination.Host, domain) } }).ToArray(),
        Mirrors = route.Mirrors.Select(m => m with { Destination = m.Destination with { Host = Complete(m.Destination.Host, domain) } }).ToArray(),
    };

    // A Service backend is written name.namespace.svc (the parser knows no domain); a Hostname backend as it is.
    private static string Complete(string host, string domain) => host.EndsWith(".svc", StringComparison.Ordinal) ? host + "." + domain : host;
}
