using System.Collections.Frozen;
using MeshKit.Config.Compilation;
using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Resilience;
using MeshKit.Routing;

namespace MeshKit.Snapshot;

/// <summary>
/// Compiles the protocol resources a workload holds into a <see cref="MeshSnapshot"/>. Throws
/// <see cref="MeshConfigException"/> when they cannot be applied, so the caller can NACK and keep its previous snapshot.
/// </summary>
internal static class SnapshotBuilder
{
    public static MeshSnapshot Build(IReadOnlyDictionary<string, IReadOnlyDictionary<string, Resource>> resources, SourceWorkload source, string version, bool ready, MeshRuntime? clock = null)
    {
        // What outlives snapshots changes only once the whole build succeeded: a refused push keeps the snapshot in
        // force, and with it the pools, endpoint health and counts it uses.
        var changes = new RuntimeChanges();
        MeshSnapshot snapshot;
        try
        {
            snapshot = Build(resources, source, version, ready, clock, changes);
        }
        catch
        {
            changes.Rollback();
            throw;
        }

        changes.Commit();
        return snapshot;
    }

    private static MeshSnapshot Build(IReadOnlyDictionary<string, IReadOnlyDictionary<string, Resource>> resources, SourceWorkload source, string version, bool ready, MeshRuntime? clock, RuntimeChanges changes)
    {
        var ownNamespace = source.Namespace;
        var settings = new MeshSettings { OutboundTrafficPolicy = "ALLOW_ANY", ClusterDomain = MeshCompiler.DefaultClusterDomain };
        if (resources.TryGetValue(ResourceTypes.Mesh, out var meshResources) && meshResources.TryGetValue(ResourceTypes.MeshResourceName, out var mesh))
        {
            settings = Unpack<MeshSettings>(mesh);
        }

        var allRoutes = resources.TryGetValue(ResourceTypes.Routes, out var routeResources) ? routeResources.Values.Select(Unpack<ServiceRoutes>).ToArray() : [];
        var clusters = new Dictionary<string, ClusterView>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (resources.TryGetValue(ResourceTypes.Cluster, out var clusterResources))
        {
            var shapes = new EndpointShapes();
            var outside = allRoutes.Where(r => r.External).Select(r => r.Host).ToHashSet(StringComparer.Ordinal);
            foreach (var resource in clusterResources.Values)
            {
                var cluster = Unpack<ServiceCluster>(resource);
                clusters[cluster.Host] = BuildCluster(cluster, outside.Contains(cluster.Host), source, clock, shapes, names, changes);
            }
        }

        if (clock is not null)
        {
            var keys = clusters.Values.SelectMany(c => c.All.Endpoints).Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
            changes.Defer(() =>
            {
                clock.Retain(keys);
                clock.RetainClusters(names);
            });
        }

        var services = new Dictionary<string, ServiceView>(StringComparer.Ordinal);
        var aliases = new Dictionary<string, ServiceView>(StringComparer.Ordinal);
        if (allRoutes.Length > 0)
        {
            var ports = allRoutes.ToDictionary(r => r.Host, r => r.Ports.Select(p => p.Number).ToArray(), StringComparer.Ordinal);
            var pipelines = new RouteResilience.Pipelines(clock?.Time ?? TimeProvider.System);
            foreach (var routes in allRoutes)
            {
                var view = BuildService(routes, clusters, ports, source, pipelines, settings.DefaultHttpRetryPolicy);
                services[routes.Host] = view;
                foreach (var alias in Aliases(routes, ownNamespace, settings.ClusterDomain))
                {
                    aliases[alias] = view;
                }
            }
        }

        var own = source.Service.Length == 0 ? null : services.GetValueOrDefault(HostNames.ServiceHost(source.Service, source.Namespace, settings.ClusterDomain));
        var inbound = resources.TryGetValue(ResourceTypes.Inbound, out var inboundResources) && inboundResources.TryGetValue(ResourceTypes.InboundResourceName, out var inboundResource)
            ? Unpack<InboundPolicy>(inboundResource)
            : new InboundPolicy();
        return new MeshSnapshot(version, ready, settings.OutboundTrafficPolicy == "REGISTRY_ONLY", services.ToFrozenDictionary(StringComparer.Ordinal), aliases.ToFrozenDictionary(StringComparer.Ordinal), own)
        {
            PeerAuthentication = inbound.PeerAuthentication ?? new PeerAuthenticationPolicy(),
            ProxyHeaders = settings.ProxyHeaders ?? Http.ProxyHeaderValues.Defaults,
            EgressProxy = settings.EgressProxy is { Host.Length: > 0 } proxy ? (proxy.Host, EgressProxyService(proxy, clusters, source, clock)) : null,
            Authorization = Security.AuthorizationEngine.Compile(inbound.Authorization),
            Jwt = Security.JwtAuthenticator.Compile(inbound.JwtProviders),
            PathNormalization = Security.PathNormalizer.Parse(inbound.PathNormalization),
            Reports = Telemetry.ReportPolicy.From(inbound.Telemetry),
            ClientAccessLogOff = inbound.Telemetry?.ClientAccessLogDisabled == true,
            ServerAccessLogOff = inbound.Telemetry?.ServerAccessLogDisabled == true,
            ClientAccessLogFilter = AccessLogFilter(inbound.Telemetry?.ClientAccessLogFilter),
            ServerAccessLogFilter = AccessLogFilter(inbound.Telemetry?.ServerAccessLogFilter),
            SpansOff = inbound.Telemetry?.ClientSpansDisabled == true,
            SpanTags = inbound.Telemetry is { } telemetry ? Telemetry.SpanTags.From(telemetry.ClientSpanTags) : null,
            ClientSampling = inbound.Telemetry?.HasClientSamplingPercentage == true ? inbound.Telemetry.ClientSamplingPercentage / 100 : null,
            ServerSampling = inbound.Telemetry?.HasServerSamplingPercentage == true ? inbound.Telemetry.ServerSamplingPercentage / 100 : null,
            StreamReportingInterval = inbound.Telemetry?.MetricsReportingIntervalMs is > 0 and var ms ? TimeSpan.FromMilliseconds(ms) : Telemetry.LiveStreams.DefaultInterval,
        };
    }

    // Compiled once per config version; one the control plane let through but this workload cannot compile is NACKed.
    private static MeshKit.Config.Expressions.CelProgram? AccessLogFilter(string? expression)
    {
        if (string.IsNullOrEmpty(expression))
        {
            return null;
        }

        try
        {
            return MeshKit.Config.Expressions.RequestAttributes.CompileFilter(expression);
        }
        catch (MeshKit.Config.Expressions.CelException ex)
        {
            throw new MeshConfigException($"access log filter '{expression}': {ex.Detail}", ex);
        }
    }

    /// <summary>The names a request may use for a service: Kubernetes DNS forms, the short name only from its own namespace.</summary>
    private static IEnumerable<string> Aliases(ServiceRoutes routes, string ownNamespace, string clusterDomain)
    {
        yield return routes.Host;
        if (routes.ShortName.Length == 0 || routes.Namespace.Length == 0)
        {
            yield break;
        }

        yield return $"{routes.ShortName}.{routes.Namespace}";
        yield return $"{routes.ShortName}.{routes.Namespace}.svc";
        yield return $"{routes.ShortName}.{routes.Namespace}.svc.{clusterDomain}";
        if (routes.Namespace == ownNamespace)
        {
            yield return routes.ShortName;
        }
    }

    /// <summary>A destination's Envoy-style name, by which its connection pool and counters are kept: <c>outbound|port|subset|host</c>.</summary>
    internal static string DestinationName(string subset, uint port, string host) => $"outbound|{(port == 0 ? string.Empty : port)}|{subset}|{host}";

    private static ClusterView BuildCluster(ServiceCluster cluster, bool outsideMesh, SourceWorkload source, MeshRuntime? clock, EndpointShapes shapes, ISet<string> names, RuntimeChanges changes)
    {
        var runtime = clock?.Cluster(cluster.Host);
        var time = clock?.Time ?? TimeProvider.System;

        // Each destination (the service or a subset, on every port or one port) counts its own requests in flight, as
        // each Envoy cluster does, when it has limits to count them against; it has a pool of its own only where its
        // policy is its own, not inherited. A destination with neither holds nothing of its own.
        string Name(string subset, uint port) => DestinationName(subset, port, cluster.Host);
        ClusterRuntime? Counters(string name, ConnectionLimits? limits)
        {
            if (limits is null)
            {
                return null;
            }

            names.Add(name);
            return clock?.Cluster(name) ?? new ClusterRuntime();
        }

        Upstream Own(string name, UpstreamPolicy? policy)
        {
            if (policy is null)
            {
                return Upstream.None;
            }

            var transport = clock?.Transports.For(name, policy.Connection, policy.TlsOrigination, changes);
            if (transport is not null)
            {
                names.Add(name);
            }

            return new(Counters(name, policy.Limits), policy.Limits, transport, policy.TlsMode);
        }

        // A destination without a policy of its own shares its parent's pool (connections are per endpoint anyway)
        // and limits, but counts its own requests.
        Upstream Inherit(string name, Upstream parent) => parent.Limits is null ? parent : parent with { Counters = Counters(name, parent.Limits) };

        EndpointSet Create(EndpointView[] members, string policy, ConsistentHash? hash, LocalitySettings? locality, Warmup? warmup, Upstream upstream, UpstreamPolicy? upstreamPolicy)
        {
            if (policy == "CONSISTENT_HASH" && hash is null)
            {
                throw new MeshConfigException($"{cluster.Host}: load balancer CONSISTENT_HASH without its settings");
            }

            return EndpointSet.Create(members, policy, policy == "CONSISTENT_HASH" ? hash : null, locality, source, warmup, clock)
                .WithUpstream(upstream, upstreamPolicy?.OutlierDetection, time).WithSession(StickySession.Create(cluster.SessionPersistence));
        }

        // The sets of single ports that portLevelSettings give a balancer or an upstream policy of their own; a port
        // with only one of them takes the other from the set it belongs to.
        FrozenDictionary<uint, EndpointSet>? PortSets(EndpointView[] members, string subset, IEnumerable<PortPolicy> policies, IEnumerable<PortUpstream> upstreams, (string Policy, ConsistentHash? Hash, LocalitySettings? Locality, Warmup? Warmup) parent, Upstream parentUpstream, UpstreamPolicy? parentPolicy)
        {
            var balancing = policies.ToDictionary(p => p.Port);
            var own = upstreams.ToDictionary(u => u.Port, u => u.Policy);
            var sets = balancing.Keys.Union(own.Keys).ToDictionary(port => port, port =>
            {
                var upstreamPolicy = own.TryGetValue(port, out var set) ? set : parentPolicy;
                var upstream = own.ContainsKey(port) ? Own(Name(subset, port), upstreamPolicy) : Inherit(Name(subset, port), parentUpstream);
                return balancing.TryGetValue(port, out var p)
                    ? Create(members, p.LoadBalancer.Length > 0 ? p.LoadBalancer : "ROUND_ROBIN", p.ConsistentHash, p.Locality ?? parent.Locality, p.Warmup ?? parent.Warmup, upstream, upstreamPolicy)
                    : Create(members, parent.Policy, parent.Hash, parent.Locality, parent.Warmup, upstream, upstreamPolicy);
            });
            return sets.Count == 0 ? null : sets.ToFrozenDictionary();
        }

        var serviceUpstream = Own(Name(string.Empty, 0), cluster.Upstream);

        var endpoints = cluster.Endpoints.Select(e => new EndpointView(e, shapes, outsideMesh)).ToArray();
        if (runtime is not null)
        {
            if (runtime.Endpoints is { } previous)
            {
                // The same endpoint (address, first port, identity) keeps its in-flight count, URL and metadata memo.
                var used = previous.Where(e => e.InUse).ToLookup(e => (e.Key, e.Identity));
                if (used.Count > 0)
                {
                    foreach (var endpoint in endpoints)
                    {
                        if (used[(endpoint.Key, endpoint.Identity)].FirstOrDefault() is { } before)
                        {
                            endpoint.Adopt(before);
                        }
                    }
                }
            }

            // An endpoint's health is the instance's: one record however many destinations (subsets, ports) include it;
            // each destination's outlier detection decides with its own settings, and only its picks skip ejections.
            var detects = cluster.Upstream?.OutlierDetection is not null
                || cluster.PortUpstreams.Any(u => u.Policy?.OutlierDetection is not null)
                || cluster.Subsets.Any(s => s.Upstream?.OutlierDetection is not null || s.PortUpstreams.Any(u => u.Policy?.OutlierDetection is not null));
            var keys = endpoints.Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
            changes.Defer(() =>
            {
                runtime.Endpoints = endpoints;
                runtime.EndpointCount = endpoints.Length;
                runtime.Retain(keys);
            });
            foreach (var endpoint in endpoints)
            {
                endpoint.Health = detects ? runtime.HealthOf(endpoint.Key) : null;
            }
        }

        var subsets = new Dictionary<string, EndpointSet>(StringComparer.Ordinal);
        foreach (var subset in cluster.Subsets)
        {
            var members = endpoints.Where(e => subset.Labels.All(l => e.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToArray();
            var own = subset.LoadBalancer.Length > 0;
            var policy = own ? subset.LoadBalancer : cluster.LoadBalancer;
            var hash = own ? subset.ConsistentHash : cluster.ConsistentHash;

            // Precedence for one port: the subset's port-level policy, the subset's policy, the rule's port-level
            // policy, the rule's policy (the upstream policies come resolved from the control plane).
            var ports = subset.PortPolicies.Count > 0 ? subset.PortPolicies : own ? [] : cluster.PortPolicies;
            var warmup = own ? subset.Warmup : subset.Warmup ?? cluster.Warmup;
            var locality = subset.Locality ?? cluster.Locality;
            var upstreamPolicy = subset.Upstream ?? cluster.Upstream;
            var upstream = subset.Upstream is not null ? Own(Name(subset.Name, 0), upstreamPolicy) : Inherit(Name(subset.Name, 0), serviceUpstream);
            subsets[subset.Name] = Create(members, policy, hash, locality, warmup, upstream, upstreamPolicy)
                .WithPortOverrides(PortSets(members, subset.Name, ports, subset.PortUpstreams, (policy, hash, locality, warmup), upstream, upstreamPolicy));
        }

        var all = Create(endpoints, cluster.LoadBalancer, cluster.ConsistentHash, cluster.Locality, cluster.Warmup, serviceUpstream, cluster.Upstream)
            .WithPortOverrides(PortSets(endpoints, string.Empty, cluster.PortPolicies, cluster.PortUpstreams, (cluster.LoadBalancer, cluster.ConsistentHash, cluster.Locality, cluster.Warmup), serviceUpstream, cluster.Upstream));
        names.Add(cluster.Host);
        return new ClusterView(cluster.Host, all, subsets.ToFrozenDictionary(StringComparer.Ordinal), runtime);
    }

    // The egress proxy as a service of one route: every call to a host outside the registry, to the proxy's subset and
    // port, sent once (Envoy's passthrough, which the proxy replaces, retries nothing); null when its cluster is not seen.
    private static ServiceView? EgressProxyService(WeightedDestination proxy, Dictionary<string, ClusterView> clusters, SourceWorkload source, MeshRuntime? clock)
    {
        if (!clusters.ContainsKey(proxy.Host))
        {
            return null;
        }

        var routes = new ServiceRoutes { Host = proxy.Host, HttpRoutes = { new HttpRoute { Name = "egress-proxy", Destinations = { proxy }, Retries = new RetryPolicy { Attempts = 0 } } } };
        var ports = new Dictionary<string, uint[]>(StringComparer.Ordinal) { [proxy.Host] = [proxy.Port] };
        return BuildService(routes, clusters, ports, source, new RouteResilience.Pipelines(clock?.Time ?? TimeProvider.System), null);
    }

    private static ServiceView BuildService(ServiceRoutes routes, Dictionary<string, ClusterView> clusters, Dictionary<string, uint[]> ports, SourceWorkload source, RouteResilience.Pipelines pipelines, RetryPolicy? defaultRetries)
    {
        var entries = new List<RouteEntry>(routes.HttpRoutes.Count + 1);
        for (var i = 0; i < routes.HttpRoutes.Count; i++)
        {
            var route = routes.HttpRoutes[i];

            // sourceLabels and sourceNamespace are about this workload: decided here, once, not per request.
            var blocks = route.Matches.Where(m => AppliesTo(m, source)).ToArray();
            if (route.Matches.Count > 0 && blocks.Length == 0)
            {
                continue;
            }

            RequestMatcher[] matchers;
            RouteActions actions;
            try
            {
                matchers = blocks.Select(m => new RequestMatcher(m)).ToArray();
                actions = RouteActions.Create(route, routes.Host);
            }
            catch (MeshConfigException ex)
            {
                throw new MeshConfigException($"{routes.Host}: route {i} ('{route.Name}'): {ex.Message}", ex);
            }

            var targets = route.Destinations.Select(d => Target(d.Host, d.Subset, d.Port, (int)d.Weight, clusters, ports) with
            {
                RequestHeaders = HeaderEdits.Create(d.RequestHeaders),
                ResponseHeaders = HeaderEdits.Create(d.ResponseHeaders),
            }).ToArray();
            var mirrors = route.Mirrors.Select(m => (Target(m.Host, m.Subset, m.Port, 0, clusters, ports), m.Percentage)).ToArray();
            entries.Add(new RouteEntry(route.Name, matchers, targets, actions, RouteResilience.Create(route, pipelines, defaultRetries), mirrors, route.UnknownDestinationStatus == 0 ? 503 : (int)route.UnknownDestinationStatus)
            {
                Session = StickySession.Create(route.SessionPersistence),
            });
        }

        // No VirtualService: everything goes to the service itself, as Istio's default route does (with its default
        // retry policy).
        if (routes.HttpRoutes.Count == 0)
        {
            entries.Add(new RouteEntry("default", [], [Target(routes.Host, string.Empty, 0, 100, clusters, ports)], RouteActions.None, RouteResilience.Create(new HttpRoute(), pipelines, defaultRetries)));
        }

        // Istio names a Kubernetes service by its short name, a ServiceEntry's host by itself.
        return new ServiceView(routes.Host, routes.ShortName.Length > 0 ? routes.ShortName : routes.Host, routes.Ports.Select(p => p.Number).ToArray(), routes.External, entries.ToArray())
        {
            SidecarPorts = routes.SidecarPorts.Count == 0 ? null : [.. routes.SidecarPorts],
        };
    }

    private static bool AppliesTo(HttpMatch match, SourceWorkload source) =>
        (match.SourceNamespace.Length == 0 || match.SourceNamespace == source.Namespace)
        && match.SourceLabels.All(l => source.Labels.TryGetValue(l.Key, out var v) && v == l.Value);

    private static RouteTarget Target(string host, string subset, uint port, int weight, Dictionary<string, ClusterView> clusters, Dictionary<string, uint[]> ports)
    {
        EndpointSet? endpoints = null;
        if (clusters.TryGetValue(host, out var cluster))
        {
            endpoints = subset.Length == 0 ? cluster.All : cluster.Subsets.GetValueOrDefault(subset);
        }

        return new RouteTarget(host, subset, port, weight, endpoints, ports.GetValueOrDefault(host) ?? []);
    }

    private static T Unpack<T>(Resource resource)
        where T : Google.Protobuf.IMessage<T>, new()
    {
        if (resource.Resource_ is null || !resource.Resource_.TryUnpack<T>(out var message))
        {
            throw new MeshConfigException($"resource '{resource.Name}' is not a {typeof(T).Name}");
        }

        return message;
    }
}

/// <summary>The workload the snapshot is built for: what <c>sourceLabels</c>, <c>sourceNamespace</c>, locality and source affinity are computed against.</summary>
/// <param name="Namespace">Gets the workload's namespace.</param>
/// <param name="Labels">Gets the workload's labels.</param>
/// <param name="Locality">Gets the workload's locality.</param>
/// <param name="Identity">Gets what <c>useSourceIp</c> hashes: the workload instance (in-process, the caller is this process).</param>
/// <param name="Service">Gets the workload's service name (its own inbound routes), or empty.</param>
internal sealed record SourceWorkload(string Namespace, IReadOnlyDictionary<string, string> Labels, Locality Locality, string Identity, string Service = "")
{
    public SourceWorkload(string ns, IReadOnlyDictionary<string, string> labels)
        : this(ns, labels, new Locality(), ns)
    {
    }
}
