using System.Collections.Concurrent;
using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>
/// Compiles validated configuration plus the registry of live workloads into protocol resources. The result is
/// immutable; the resources a namespace may see are computed once per namespace on first use and cached.
/// </summary>
public sealed class CompiledMesh
{
    private readonly ConfigSet _config;
    private readonly IReadOnlyDictionary<string, string> _jwks;
    private readonly IReadOnlyDictionary<string, ServiceInfo> _services;
    private readonly ConcurrentDictionary<string, Lazy<ResourceView>> _views = new(StringComparer.Ordinal);

    internal CompiledMesh(ConfigSet config, MeshSettings settings, IReadOnlyDictionary<string, ServiceInfo> services, IReadOnlyList<ConfigDiagnostic> diagnostics, IReadOnlyDictionary<string, string>? jwks = null)
    {
        _config = config;
        _jwks = jwks ?? EmptyLabels;
        _serviceExportTo = config.MeshConfig?.DefaultServiceExportTo ?? [];
        _virtualServiceExportTo = config.MeshConfig?.DefaultVirtualServiceExportTo ?? [];
        _destinationRuleExportTo = config.MeshConfig?.DefaultDestinationRuleExportTo ?? [];
        _meshLocality = ToProto(config.MeshConfig?.LocalityLbSetting);
        Settings = settings;
        _services = services;
        Diagnostics = diagnostics;
    }

    // MeshConfig's defaults for resources that set no exportTo of their own (Istio's defaultServiceExportTo and kin).
    private readonly IReadOnlyList<string> _serviceExportTo;
    private readonly IReadOnlyList<string> _virtualServiceExportTo;
    private readonly IReadOnlyList<string> _destinationRuleExportTo;

    // MeshConfig's localityLbSetting: the locality balancing of destinations whose rule sets none (shared, never changed).
    private readonly LocalitySettings? _meshLocality;

    /// <summary>Gets the mesh-wide settings in force.</summary>
    public MeshSettings Settings { get; }

    private readonly IReadOnlyList<ServiceAlias> _aliases = [];
    private readonly Dictionary<string, string> _aliasTargets = new(StringComparer.Ordinal);

    /// <summary>Gets the ExternalName Services that alias a service of the mesh.</summary>
    internal IReadOnlyList<ServiceAlias> Aliases
    {
        get => _aliases;
        init
        {
            _aliases = value;
            _aliasTargets = value.ToDictionary(a => a.Host, a => a.Target, StringComparer.Ordinal);
        }
    }

    /// <summary>Gets the findings of compilation (references to unknown hosts or subsets, overlapping rules).</summary>
    public IReadOnlyList<ConfigDiagnostic> Diagnostics { get; }

    /// <summary>Gets the fully qualified hosts of every known service.</summary>
    public IReadOnlyCollection<string> ServiceHosts => (IReadOnlyCollection<string>)_services.Keys;

    /// <summary>Returns the resources a workload in <paramref name="ns"/> without labels can use.</summary>
    /// <param name="ns">The workload's namespace.</param>
    /// <returns>The view, computed once per namespace.</returns>
    public ResourceView ViewFor(string ns) => ViewFor(ns, EmptyLabels);

    /// <summary>
    /// Returns the resources a workload can use: what its namespace sees, with the DestinationRules whose
    /// <c>workloadSelector</c> selects it. Computed once per distinct (namespace, selecting rules) and cached.
    /// </summary>
    /// <param name="ns">The workload's namespace.</param>
    /// <param name="labels">The workload's labels.</param>
    /// <returns>The view.</returns>
    public ResourceView ViewFor(string ns, IReadOnlyDictionary<string, string> labels) => ViewFor(ns, labels, string.Empty);

    /// <summary>
    /// Returns the resources a workload of <paramref name="service"/> can use: as <see cref="ViewFor(string, IReadOnlyDictionary{string, string})"/>,
    /// and always with the workload's own service, which its inbound side reads (its routes' CORS policy) even when
    /// its Sidecar's egress leaves it out.
    /// </summary>
    /// <param name="ns">The workload's namespace.</param>
    /// <param name="labels">The workload's labels.</param>
    /// <param name="service">The workload's service name; empty for none.</param>
    /// <returns>The view.</returns>
    public ResourceView ViewFor(string ns, IReadOnlyDictionary<string, string> labels, string service)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(service);
        var selecting = _config.DestinationRules.Where(r => r.WorkloadSelector is { } s && r.Namespace == ns && s.Matches(labels)).ToArray();
        var security = SecurityPolicies.SelectingKey(_config, ns, labels);
        var key = selecting.Length == 0 && security.Length == 0 ? ns : ns + "|" + string.Join(",", selecting.Select(r => r.Name)) + "|" + security;

        // Only where a Sidecar would hide the workload's own service does the view depend on the service.
        string? own = null;
        if (service.Length > 0 && _config.Sidecars.Count > 0 && Sidecars.Resolve(_config.Sidecars, Settings.RootNamespace, ns, labels) is { } sidecar)
        {
            var host = HostNames.ServiceHost(service, ns, Settings.ClusterDomain);
            if (_services.TryGetValue(host, out var info) && !Sidecars.Admits(sidecar, ns, host, info.Namespace, Settings.ClusterDomain))
            {
                own = host;
                key += "|own=" + host;
            }
        }

        return _views.GetOrAdd(key, _ => new Lazy<ResourceView>(() => BuildView(ns, selecting, labels, own))).Value;
    }

    private static readonly IReadOnlyDictionary<string, string> EmptyLabels = new Dictionary<string, string>();

    private ResourceView BuildView(string viewer, DestinationRule[] selecting, IReadOnlyDictionary<string, string> labels, string? own)
    {
        var domain = Settings.ClusterDomain;
        var sidecar = Sidecars.Resolve(_config.Sidecars, Settings.RootNamespace, viewer, labels);
        var routes = new Dictionary<string, Resource>(StringComparer.Ordinal);
        var clusters = new Dictionary<string, Resource>(StringComparer.Ordinal);
        var aliased = Aliases.Count == 0 ? null : new Dictionary<string, ServiceRoutes>(StringComparer.Ordinal);
        foreach (var service in _services.Values)
        {
            var admitted = sidecar is null || service.Host == own ? (Admitted: true, Ports: null) : Sidecars.AdmittedPorts(sidecar, viewer, service.Host, service.Namespace, domain);
            if (!Visibility.IsVisible(Visibility.Or(service.ExportTo, _serviceExportTo), service.Namespace, viewer) || !admitted.Admitted)
            {
                continue;
            }

            var serviceRoutes = new ServiceRoutes
            {
                Host = service.Host,
                Namespace = service.Namespace,
                ShortName = service.ShortName,
                External = service.External,
            };
            if (admitted.Ports is { } sidecarPorts)
            {
                serviceRoutes.SidecarPorts.AddRange(sidecarPorts.Order());
            }
            serviceRoutes.Ports.AddRange(service.Ports.Values.OrderBy(p => p.Number));

            // The most specific host wins (exact name, then the longest wildcard); rules naming the service equally
            // specifically are merged in (namespace, name) order.
            var best = -1;
            var applicable = new List<(VirtualService Rule, int Specificity)>();
            foreach (var vs in _config.VirtualServices)
            {
                // A route made from an HTTPRoute is seen as Gateway API says (producer or consumer), not by MeshConfig's default.
                if (vs.Hosts.Count == 0 || !Visibility.IsVisible(vs.Gateway is null ? Visibility.Or(vs.ExportTo, _virtualServiceExportTo) : vs.ExportTo, vs.Namespace, viewer))
                {
                    continue;
                }

                var specificity = vs.Hosts.Max(h => HostNames.Specificity(HostNames.Qualify(h, vs.Namespace, domain), service.Host));
                if (specificity >= 0)
                {
                    applicable.Add((vs, specificity));
                    best = Math.Max(best, specificity);
                }
            }

            // VirtualServices' rules first; then the HTTPRoutes' (Gateway API for the mesh), in Gateway API's order.
            var chosen = applicable.Where(a => a.Specificity == best).Select(a => a.Rule).ToArray();
            foreach (var vs in chosen.Where(v => v.Gateway is null))
            {
                serviceRoutes.Sources.Add(vs.DisplayName);
                var nonIdempotent = vs.Annotations.TryGetValue(RetryNonIdempotentAnnotation, out var optIn) && optIn == "true";
                foreach (var route in vs.Http)
                {
                    var compiled = CompileRoute(route, vs.Namespace, domain);
                    compiled.RetryNonIdempotent = nonIdempotent;
                    serviceRoutes.HttpRoutes.Add(compiled);
                }
            }

            var gatewayRoutes = chosen.Where(v => v.Gateway is not null).ToArray();
            if (gatewayRoutes.Length > 0)
            {
                foreach (var (vs, route) in GatewayRoutes.Ordered(gatewayRoutes))
                {
                    if (!serviceRoutes.Sources.Contains(vs.DisplayName))
                    {
                        serviceRoutes.Sources.Add(vs.DisplayName);
                    }

                    var compiled = CompileRoute(route, vs.Namespace, domain);
                    compiled.UnknownDestinationStatus = 500; // Gateway API: an invalid backend's share of the calls gets 500
                    serviceRoutes.HttpRoutes.Add(compiled);
                }
            }

            var cluster = new ServiceCluster { Host = service.Host, LoadBalancer = service.Passthrough ? "PASSTHROUGH" : "ROUND_ROBIN", SessionPersistence = ToProto(service.SessionPersistence), Locality = _meshLocality };
            cluster.Endpoints.AddRange(service.Endpoints);
            var rule = SelectDestinationRule(service, viewer, selecting);
            if (rule is not null)
            {
                cluster.Sources.Add(rule.DisplayName);
                cluster.LoadBalancer = service.Passthrough ? "PASSTHROUGH" : LoadBalancerName(rule.TrafficPolicy) ?? "ROUND_ROBIN";
                cluster.ConsistentHash = ToProto(rule.TrafficPolicy?.ConsistentHash);
                cluster.Locality = rule.TrafficPolicy?.Locality is { } ruleLocality ? ToProto(ruleLocality) : _meshLocality;
                cluster.PortPolicies.AddRange(PortPolicies(rule.TrafficPolicy));
                cluster.Warmup = ToProto(rule.TrafficPolicy?.Warmup);
                var top = rule.TrafficPolicy;
                cluster.Upstream = UpstreamOf(top);
                foreach (var port in top?.PortLevelSettings ?? [])
                {
                    if (SetsUpstream(port.Policy))
                    {
                        cluster.PortUpstreams.Add(new PortUpstream { Port = port.Port, Policy = UpstreamOf(Over(port.Policy, top)) });
                    }
                }

                foreach (var subset in rule.Subsets)
                {
                    var compiled = new Subset
                    {
                        Name = subset.Name,
                        LoadBalancer = LoadBalancerName(subset.TrafficPolicy) ?? string.Empty,
                        ConsistentHash = ToProto(subset.TrafficPolicy?.ConsistentHash),
                        Locality = ToProto(subset.TrafficPolicy?.Locality),
                        Warmup = ToProto(subset.TrafficPolicy?.Warmup),
                    };
                    compiled.PortPolicies.AddRange(PortPolicies(subset.TrafficPolicy));
                    if (SetsUpstream(subset.TrafficPolicy))
                    {
                        compiled.Upstream = UpstreamOf(Over(subset.TrafficPolicy, top));
                    }

                    // A port the rule or the subset sets a port-level policy for is a destination of its own.
                    var ports = (top?.PortLevelSettings ?? []).Concat(subset.TrafficPolicy?.PortLevelSettings ?? [])
                        .Where(p => SetsUpstream(p.Policy)).Select(p => p.Port).Distinct().Order();
                    foreach (var port in ports)
                    {
                        var policy = Over(PortLevel(subset.TrafficPolicy, port), Over(subset.TrafficPolicy, Over(PortLevel(top, port), top)));
                        compiled.PortUpstreams.Add(new PortUpstream { Port = port, Policy = UpstreamOf(policy) });
                    }

                    foreach (var (k, v) in subset.Labels)
                    {
                        compiled.Labels[k] = v;
                    }
                    cluster.Subsets.Add(compiled);
                }
            }

            // A destination that is an alias is the service it names (the alias has routes, not endpoints).
            if (_aliasTargets.Count > 0)
            {
                foreach (var route in serviceRoutes.HttpRoutes)
                {
                    foreach (var destination in route.Destinations)
                    {
                        destination.Host = _aliasTargets.GetValueOrDefault(destination.Host, destination.Host);
                    }

                    foreach (var mirror in route.Mirrors)
                    {
                        mirror.Host = _aliasTargets.GetValueOrDefault(mirror.Host, mirror.Host);
                    }
                }
            }

            routes[service.Host] = ToResource(service.Host, serviceRoutes);
            clusters[service.Host] = ToResource(service.Host, cluster);
            aliased?.Add(service.Host, serviceRoutes);
        }

        // An alias is its service under another name: the same routes (to that service's destinations), and the
        // service itself when it has none. Seen where the alias is exported (and a Sidecar admits it) and its service is seen.
        foreach (var alias in Aliases)
        {
            if (!aliased!.TryGetValue(alias.Target, out var target) || !Visibility.IsVisible(Visibility.Or(alias.ExportTo, _serviceExportTo), alias.Namespace, viewer)
                || (sidecar is not null && !Sidecars.Admits(sidecar, viewer, alias.Host, alias.Namespace, domain)))
            {
                continue;
            }

            var aliasRoutes = target.Clone();
            aliasRoutes.Host = alias.Host;
            aliasRoutes.Namespace = alias.Namespace;
            aliasRoutes.ShortName = alias.ShortName;
            aliasRoutes.Sources.Insert(0, alias.Source);
            if (aliasRoutes.HttpRoutes.Count == 0)
            {
                aliasRoutes.HttpRoutes.Add(new HttpRoute { Name = "default", Destinations = { new WeightedDestination { Host = alias.Target, Weight = 100 } } });
            }

            routes[alias.Host] = ToResource(alias.Host, aliasRoutes);
        }

        var mesh = new Dictionary<string, Resource>(StringComparer.Ordinal)
        {
            [ResourceTypes.MeshResourceName] = ToResource(ResourceTypes.MeshResourceName, sidecar?.OutboundTrafficPolicy is { } mode
                ? new MeshSettings(Settings)
                {
                    OutboundTrafficPolicy = mode,
                    EgressProxy = sidecar.EgressProxy is { } proxy
                        ? new WeightedDestination { Host = HostNames.Qualify(proxy.Host, sidecar.Namespace, domain), Subset = proxy.Subset ?? string.Empty, Port = proxy.Port ?? 0, Weight = 100 }
                        : null,
                }
                : Settings),
        };
        var inbound = new InboundPolicy
        {
            PeerAuthentication = PeerAuthentications.Resolve(_config.PeerAuthentications, Settings.RootNamespace, viewer, labels),
            PathNormalization = _config.MeshConfig?.PathNormalization ?? "BASE",
            Telemetry = Telemetries.Resolve(_config.Telemetries, Settings.RootNamespace, viewer, labels),
        };
        inbound.Authorization.AddRange(SecurityPolicies.Authorization(_config, Settings.RootNamespace, viewer, labels));
        inbound.JwtProviders.AddRange(SecurityPolicies.JwtProviders(_config, Settings.RootNamespace, viewer, labels, _jwks));
        return new ResourceView(new Dictionary<string, IReadOnlyDictionary<string, Resource>>(StringComparer.Ordinal)
        {
            [ResourceTypes.Mesh] = mesh,
            [ResourceTypes.Inbound] = new Dictionary<string, Resource>(StringComparer.Ordinal)
            {
                [ResourceTypes.InboundResourceName] = ToResource(ResourceTypes.InboundResourceName, inbound),
            },
            [ResourceTypes.Cluster] = clusters,
            [ResourceTypes.Routes] = routes,
        });
    }

    // Istio's precedence for a DestinationRule: the caller's namespace, then the service's, then the root namespace;
    // within one namespace the most specific host.
    // A rule whose workloadSelector selects the caller beats every other.
    private DestinationRule? SelectDestinationRule(ServiceInfo service, string viewer, DestinationRule[] selecting)
    {
        DestinationRule? best = null;
        var bestRank = (int.MaxValue, int.MinValue);
        foreach (var rule in _config.DestinationRules)
        {
            var specificity = HostNames.Specificity(HostNames.Qualify(rule.Host, rule.Namespace, Settings.ClusterDomain), service.Host);
            var selects = rule.WorkloadSelector is not null;
            if (specificity < 0 || !Visibility.IsVisible(Visibility.Or(rule.ExportTo, _destinationRuleExportTo), rule.Namespace, viewer) || (selects && !selecting.Contains(rule)))
            {
                continue;
            }

            var rank = (selects ? -1 : rule.Namespace == viewer ? 0 : rule.Namespace == service.Namespace ? 1 : rule.Namespace == Settings.RootNamespace ? 2 : 3, specificity);
            if (rank.Item1 < bestRank.Item1 || (rank.Item1 == bestRank.Item1 && rank.specificity > bestRank.Item2))
            {
                best = rule;
                bestRank = rank;
            }
        }

        return best;
    }

    private static IEnumerable<PortPolicy> PortPolicies(TrafficPolicy? policy) =>
        (policy?.PortLevelSettings ?? []).Where(p => LoadBalancerName(p.Policy) is not null || p.Policy.Locality is not null || p.Policy.Warmup is not null).Select(p => new PortPolicy
        {
            Port = p.Port,
            LoadBalancer = LoadBalancerName(p.Policy) ?? string.Empty,
            ConsistentHash = ToProto(p.Policy.ConsistentHash),
            Locality = ToProto(p.Policy.Locality),
            Warmup = ToProto(p.Policy.Warmup),
        });

    // Istio merges a DestinationRule's policies per destination (MergeTrafficPolicy): a subset's port-level settings
    // over the subset's, over the rule's port-level settings, over the rule's; each of these fields replaced whole.
    private static TrafficPolicy? Over(TrafficPolicy? top, TrafficPolicy? under) =>
        top is null ? under : under is null ? top : top with
        {
            ConnectionPool = top.ConnectionPool ?? under.ConnectionPool,
            OutlierDetection = top.OutlierDetection ?? under.OutlierDetection,
            Tls = top.Tls ?? under.Tls,
            RetryBudget = top.RetryBudget ?? under.RetryBudget,
            ProxyProtocol = top.ProxyProtocol ?? under.ProxyProtocol,
        };

    private static TrafficPolicy? PortLevel(TrafficPolicy? policy, uint port) =>
        policy?.PortLevelSettings.FirstOrDefault(p => p.Port == port)?.Policy;

    private static bool SetsUpstream(TrafficPolicy? policy) =>
        policy is not null && (policy.ConnectionPool is not null || policy.OutlierDetection is not null || policy.Tls is not null || policy.RetryBudget is not null || policy.ProxyProtocol is not null);

    /// <summary>The upstream part of a (merged) traffic policy; null when it sets none of it.</summary>
    private static UpstreamPolicy? UpstreamOf(TrafficPolicy? policy)
    {
        if (!SetsUpstream(policy))
        {
            return null;
        }

        var upstream = new UpstreamPolicy
        {
            OutlierDetection = ToProto(policy!.OutlierDetection),
            Limits = LimitsOf(policy),
            Connection = ConnectionOf(policy.ConnectionPool, policy.ProxyProtocol),
            TlsMode = policy.Tls?.Mode ?? string.Empty,
        };
        if (policy.Tls is { Mode: "SIMPLE" or "MUTUAL" } tls)
        {
            upstream.TlsOrigination = new TlsOrigination
            {
                Mode = tls.Mode,
                Sni = tls.Sni ?? string.Empty,
                CaCertificates = tls.CaCertificates ?? string.Empty,
                ClientCertificate = tls.ClientCertificate ?? string.Empty,
                PrivateKey = tls.PrivateKey ?? string.Empty,
                InsecureSkipVerify = tls.InsecureSkipVerify ?? false,
                CaCrl = tls.CaCrl ?? string.Empty,
            };
            upstream.TlsOrigination.SubjectAltNames.AddRange(tls.SubjectAltNames);
        }

        return upstream;
    }

    // Istio's defaults for fields an outlierDetection block leaves out.
    private static OutlierDetection? ToProto(OutlierDetectionSpec? spec) => spec is null ? null : new OutlierDetection
    {
        Consecutive5XxErrors = (uint)(spec.Consecutive5xxErrors ?? 5),
        ConsecutiveGatewayErrors = (uint)(spec.ConsecutiveGatewayErrors ?? 0),
        ConsecutiveLocalOriginFailures = (uint)(spec.ConsecutiveLocalOriginFailures ?? (spec.SplitExternalLocalOriginErrors ? 5 : 0)),
        SplitExternalLocalOriginErrors = spec.SplitExternalLocalOriginErrors,
        IntervalMs = (ulong)(spec.Interval ?? TimeSpan.FromSeconds(10)).TotalMilliseconds,
        BaseEjectionMs = (ulong)(spec.BaseEjectionTime ?? TimeSpan.FromSeconds(30)).TotalMilliseconds,
        MaxEjectionPercent = (uint)(spec.MaxEjectionPercent ?? 10),
        MinHealthPercent = (uint)(spec.MinHealthPercent ?? 0),
    };

    /// <summary>The <c>idle_timeout_ms</c> that keeps idle pooled connections open for good.</summary>
    internal const ulong NeverIdle = ulong.MaxValue;

    /// <summary>A retry policy as the protocol carries it (a route's, or MeshConfig's defaultHttpRetryPolicy).</summary>
    internal static RetryPolicy? ToProto(RetrySpec? retries)
    {
        if (retries is null)
        {
            return null;
        }

        var policy = new RetryPolicy
        {
            Attempts = (uint)retries.Attempts,
            PerTryTimeoutMs = (ulong)(retries.PerTryTimeout?.TotalMilliseconds ?? 0),
            BackoffMs = (ulong)(retries.Backoff?.TotalMilliseconds ?? 0),
        };

        // Istio takes bare status codes in retryOn ("503"); "5xx" is a condition.
        static bool IsCode(string c) => c.All(char.IsAsciiDigit);
        policy.RetryOn.AddRange(retries.RetryOn.Where(c => !IsCode(c)));
        policy.RetriableStatusCodes.AddRange(retries.RetryOn.Where(IsCode).Select(c => uint.Parse(c, System.Globalization.CultureInfo.InvariantCulture)));
        if (retries.RetryRemoteLocalities is { } remote)
        {
            policy.RetryRemoteLocalities = remote;
        }

        if (retries.RetryIgnorePreviousHosts is { } ignorePrevious)
        {
            policy.RetryIgnorePreviousHosts = ignorePrevious;
        }

        return policy;
    }

    private static SessionPersistence? ToProto(SessionPersistenceSpec? spec)
    {
        if (spec is null)
        {
            return null;
        }

        var session = new SessionPersistence { CookiePath = spec.CookiePath ?? string.Empty, CookieTtlMs = (ulong)(spec.CookieTtl?.TotalMilliseconds ?? 0) };
        if (spec.CookieName is { } cookie)
        {
            session.CookieName = cookie;
        }
        else
        {
            session.HeaderName = spec.HeaderName ?? string.Empty;
        }

        return session;
    }

    private static ConnectionSettings? ConnectionOf(ConnectionPoolSpec? pool, ProxyProtocolSpec? proxyProtocol)
    {
        var tcp = pool?.Tcp;
        var http = pool?.Http;
        if (tcp is null && http?.IdleTimeout is null && http?.H2UpgradePolicy is null && (http?.MaxRequestsPerConnection ?? 0) == 0 && http?.MaxConcurrentStreams is null
            && proxyProtocol is null)
        {
            return null;
        }

        static ulong Ms(TimeSpan? t) => (ulong)(t?.TotalMilliseconds ?? 0);
        var settings = new ConnectionSettings
        {
            ConnectTimeoutMs = Ms(tcp?.ConnectTimeout),
            MaxConnections = (uint)(tcp?.MaxConnections ?? 0),
            // tcp.idleTimeout: 0s turns the idle timeout off, as Istio documents (http.idleTimeout must be 1 ms or more).
            IdleTimeoutMs = http?.IdleTimeout is null && tcp?.IdleTimeout == TimeSpan.Zero ? NeverIdle : Ms(http?.IdleTimeout ?? tcp?.IdleTimeout),
            MaxConnectionDurationMs = Ms(tcp?.MaxConnectionDuration),
            KeepaliveTimeMs = Ms(tcp?.KeepaliveTime),
            KeepaliveIntervalMs = Ms(tcp?.KeepaliveInterval),
            KeepaliveProbes = (uint)(tcp?.KeepaliveProbes ?? 0),
            H2UpgradePolicy = http?.H2UpgradePolicy ?? string.Empty,
            MaxRequestsPerConnection = (uint)(http?.MaxRequestsPerConnection ?? 0),
            MaxConcurrentStreams = (uint)(http?.MaxConcurrentStreams ?? 0),
            ProxyProtocolVersion = (uint)(proxyProtocol?.Version ?? 0),
        };
        return settings.Equals(new ConnectionSettings()) ? null : settings;
    }

    private static ConnectionLimits? LimitsOf(TrafficPolicy? policy)
    {
        var http = policy?.ConnectionPool?.Http;
        var tcp = policy?.ConnectionPool?.Tcp;
        var budget = policy?.RetryBudget;
        if (http is null && tcp is null && budget is null)
        {
            return null;
        }

        // HTTP/2 multiplexes: http2MaxRequests bounds requests in flight; for HTTP/1.1 it is connections plus pending,
        // pending defaulting to Envoy's 1024 so that requests never queue without bound behind maxConnections.
        var maxRequests = http?.Http2MaxRequests
            ?? (tcp?.MaxConnections is { } connections ? connections + (http?.Http1MaxPendingRequests ?? 1024) : (int?)null)
            ?? 0;
        return new ConnectionLimits
        {
            MaxRequests = (uint)maxRequests,
            MaxRetries = (uint)(http?.MaxRetries ?? 0),
            RetryBudgetPercent = budget?.Percent ?? 0,
            MinRetryConcurrency = (uint)(budget?.MinRetryConcurrency ?? (budget is null ? 0 : 3)),
        };
    }

    private static Warmup? ToProto(WarmupSpec? spec) => spec is null ? null : new Warmup
    {
        DurationMs = (ulong)spec.Duration.TotalMilliseconds,
        MinimumPercent = spec.MinimumPercent,
        Aggression = spec.Aggression,
    };

    /// <summary>The VirtualService annotation that lets its routes retry requests that are not idempotent.</summary>
    public const string RetryNonIdempotentAnnotation = "meshkit.dev/retry-non-idempotent";

    private static string? LoadBalancerName(TrafficPolicy? policy) =>
        policy?.ConsistentHash is not null ? "CONSISTENT_HASH" : policy?.LoadBalancer;

    private static ConsistentHash? ToProto(ConsistentHashSpec? spec)
    {
        if (spec is null)
        {
            return null;
        }

        var hash = new ConsistentHash();
        if (spec.HttpHeaderName is not null)
        {
            hash.HeaderName = spec.HttpHeaderName;
        }
        else if (spec.QueryParameterName is not null)
        {
            hash.QueryParameterName = spec.QueryParameterName;
        }
        else if (spec.CookieName is not null)
        {
            hash.Cookie = new HashCookie { Name = spec.CookieName, Path = spec.CookiePath ?? string.Empty };
            hash.Cookie.Attributes.AddRange(spec.CookieAttributes.Select(a => new CookieAttribute { Name = a.Key, Value = a.Value }));
            if (spec.CookieTtl is { } ttl)
            {
                hash.Cookie.TtlMs = (ulong)ttl.TotalMilliseconds;
            }
        }
        else
        {
            hash.UseSourceIp = spec.UseSourceIp;
        }

        if (spec.MaglevTableSize is { } table)
        {
            hash.MaglevTableSize = table;
        }
        else
        {
            hash.MinimumRingSize = spec.MinimumRingSize ?? 1024;
        }

        return hash;
    }

    private static LocalitySettings? ToProto(LocalityLbSpec? spec)
    {
        if (spec is null || !spec.Enabled)
        {
            return null;
        }

        var settings = new LocalitySettings();
        settings.FailoverPriority.AddRange(spec.FailoverPriority);
        foreach (var failover in spec.Failover)
        {
            settings.Failover.Add(new MeshKit.Protocol.V1.LocalityFailover { From = failover.From, To = failover.To });
        }

        foreach (var distribute in spec.Distribute)
        {
            var compiled = new MeshKit.Protocol.V1.LocalityDistribute { From = distribute.From };
            foreach (var (locality, weight) in distribute.To)
            {
                compiled.To[locality] = weight;
            }

            settings.Distribute.Add(compiled);
        }

        return settings;
    }

    private static HttpRoute CompileRoute(HttpRouteSpec spec, string ns, string domain)
    {
        var route = new HttpRoute
        {
            Name = spec.Name ?? string.Empty,
            RequestHeaders = ToProto(spec.Headers?.Request),
            ResponseHeaders = ToProto(spec.Headers?.Response),
        };
        foreach (var match in spec.Match)
        {
            var compiled = new HttpMatch
            {
                Name = match.Name ?? string.Empty,
                Uri = ToProto(match.Uri),
                Method = ToProto(match.Method),
                Authority = ToProto(match.Authority),
                Scheme = ToProto(match.Scheme),
                Port = match.Port ?? 0,
                ServicePort = match.ServicePort ?? 0,
                SourceNamespace = match.SourceNamespace ?? string.Empty,
                StatPrefix = match.StatPrefix ?? string.Empty,
            };
            Copy(match.Headers, compiled.Headers);
            Copy(match.WithoutHeaders, compiled.WithoutHeaders);
            Copy(match.QueryParams, compiled.QueryParams);
            foreach (var (key, value) in match.SourceLabels)
            {
                compiled.SourceLabels[key] = value;
            }

            route.Matches.Add(compiled);
        }

        foreach (var destination in spec.Route)
        {
            route.Destinations.Add(new WeightedDestination
            {
                Host = HostNames.Qualify(destination.Destination.Host, ns, domain),
                Subset = destination.Destination.Subset ?? string.Empty,
                Port = destination.Destination.Port ?? 0,
                Weight = (uint)(spec.Route.Count == 1 ? 100 : destination.Weight ?? 0),
                RequestHeaders = ToProto(destination.Headers?.Request),
                ResponseHeaders = ToProto(destination.Headers?.Response),
            });
        }

        if (spec.Rewrite is { } rewrite)
        {
            route.Rewrite = new Rewrite
            {
                Uri = rewrite.Uri ?? string.Empty,
                Authority = rewrite.Authority ?? string.Empty,
                UriRegex = rewrite.UriRegexMatch is null ? null : new RegexRewrite { Match = rewrite.UriRegexMatch, Rewrite = rewrite.UriRegexRewrite ?? string.Empty },
            };
        }

        if (spec.Redirect is { } redirect)
        {
            route.Redirect = new Redirect
            {
                Uri = redirect.Uri ?? string.Empty,
                Authority = redirect.Authority ?? string.Empty,
                Port = redirect.Port ?? 0,
                Scheme = redirect.Scheme ?? string.Empty,
                RedirectCode = redirect.RedirectCode,
                PortFromRequest = redirect.PortFromRequest,
                UriReplacesPrefix = redirect.ReplacesPrefix,
            };
        }

        if (spec.Timeout is { } timeout)
        {
            route.TimeoutMs = (ulong)timeout.TotalMilliseconds;
        }

        route.Retries = ToProto(spec.Retries);

        if (spec.Fault is { } fault)
        {
            route.Fault = new FaultInjection
            {
                Delay = fault.Delay is { } d ? new FaultDelay { FixedDelayMs = (ulong)d.FixedDelay.TotalMilliseconds, Percentage = d.Percentage } : null,
                Abort = fault.Abort is { } a ? new FaultAbort { HttpStatus = (uint)(a.HttpStatus ?? 0), GrpcStatus = a.GrpcStatus ?? string.Empty, Percentage = a.Percentage } : null,
            };
        }

        foreach (var mirror in spec.Mirrors)
        {
            route.Mirrors.Add(new Mirror
            {
                Host = HostNames.Qualify(mirror.Destination.Host, ns, domain),
                Subset = mirror.Destination.Subset ?? string.Empty,
                Port = mirror.Destination.Port ?? 0,
                Percentage = mirror.Percentage,
            });
        }

        if (spec.CorsPolicy is { } cors)
        {
            route.Cors = new CorsPolicy
            {
                MaxAgeSeconds = (ulong)(cors.MaxAge?.TotalSeconds ?? 0),
                AllowCredentials = cors.AllowCredentials ?? false,
                IgnoreUnmatchedPreflights = cors.UnmatchedPreflights == "IGNORE",
                EchoWildcards = cors.EchoWildcards,
            };
            route.Cors.AllowOrigins.AddRange(cors.AllowOrigins.Select(o => ToProto(o)!));
            route.Cors.AllowMethods.AddRange(cors.AllowMethods);
            route.Cors.AllowHeaders.AddRange(cors.AllowHeaders);
            route.Cors.ExposeHeaders.AddRange(cors.ExposeHeaders);
        }

        route.SessionPersistence = ToProto(spec.SessionPersistence);
        if (spec.DirectResponse is { } direct)
        {
            route.DirectResponse = new DirectResponse { Status = direct.Status, Body = Google.Protobuf.ByteString.CopyFrom(direct.Body.Span) };
        }

        return route;
    }

    private static void Copy(IReadOnlyDictionary<string, StringMatchSpec> from, Google.Protobuf.Collections.MapField<string, StringMatch> to)
    {
        foreach (var (name, value) in from)
        {
            to[name] = ToProto(value)!;
        }
    }

    private static HeaderOperations? ToProto(HeaderOperationsSpec? spec)
    {
        if (spec is null)
        {
            return null;
        }

        var operations = new HeaderOperations();
        operations.Remove.AddRange(spec.Remove);
        foreach (var (name, value) in spec.Set)
        {
            operations.Set[name] = value;
        }

        foreach (var (name, value) in spec.Add)
        {
            operations.Add[name] = value;
        }

        return operations;
    }

    private static StringMatch? ToProto(StringMatchSpec? spec) => spec?.Kind switch
    {
        null => null,
        StringMatchKind.Exact => new StringMatch { Exact = spec.Value },
        StringMatchKind.Prefix => new StringMatch { Prefix = spec.Value },
        StringMatchKind.Present => new StringMatch { Present = true },
        StringMatchKind.PathPrefix => new StringMatch { PathPrefix = spec.Value },
        _ => new StringMatch { Regex = spec.Value },
    };

    internal static Resource ToResource(string name, IMessage message)
    {
        var bytes = message.ToByteArray();
        return new Resource
        {
            Name = name,
            Version = Convert.ToHexStringLower(SHA256.HashData(bytes).AsSpan(0, 8)),
            Resource_ = Any.Pack(message),
        };
    }
}

/// <summary>The resources one namespace's workloads can use, by type URL and then by name.</summary>
/// <param name="Resources">Gets the resources.</param>
public sealed record ResourceView(IReadOnlyDictionary<string, IReadOnlyDictionary<string, Resource>> Resources)
{
    /// <summary>Returns the resources of one type (empty when none).</summary>
    /// <param name="typeUrl">The type URL.</param>
    /// <returns>The resources by name.</returns>
    public IReadOnlyDictionary<string, Resource> OfType(string typeUrl) =>
        Resources.TryGetValue(typeUrl, out var map) ? map : EmptyResources;

    private static readonly IReadOnlyDictionary<string, Resource> EmptyResources = new Dictionary<string, Resource>();
}

/// <summary>An ExternalName Service naming a service of the mesh: its calls are that service's (Istio's alias).</summary>
internal sealed record ServiceAlias(string Host, string Namespace, string ShortName, IReadOnlyList<string> ExportTo, string Target, string Source);

internal sealed class ServiceInfo(string host, string ns, string shortName, bool external, IReadOnlyList<string> exportTo)
{
    /// <summary>Gets or sets whether calls go to the host the caller named (ServiceEntry resolution NONE).</summary>
    public bool Passthrough { get; set; }

    public string Host { get; } = host;

    public string Namespace { get; } = ns;

    public string ShortName { get; } = shortName;

    public bool External { get; } = external;

    // Settable: a Kubernetes Service's annotation governs its host, the workloads registered under it included.
    public IReadOnlyList<string> ExportTo { get; set; } = exportTo;

    // A Kubernetes Service's persistent-session label, for the whole host as its exportTo.
    public SessionPersistenceSpec? SessionPersistence { get; set; }

    public SortedDictionary<uint, ServicePort> Ports { get; } = [];

    public List<Endpoint> Endpoints { get; } = [];
}

internal static class Visibility
{
    // A resource's own exportTo, or the mesh's default for its kind when it sets none.
    public static IReadOnlyList<string> Or(IReadOnlyList<string> own, IReadOnlyList<string> meshDefault) => own.Count > 0 ? own : meshDefault;

    // exportTo: empty or "*" = everyone; "." = the owner's namespace; "~" = nobody; otherwise the named namespaces.
    public static bool IsVisible(IReadOnlyList<string> exportTo, string owner, string viewer)
    {
        if (exportTo.Count == 0)
        {
            return true;
        }

        foreach (var entry in exportTo)
        {
            if (entry == "*" || (entry == "." && owner == viewer) || entry == viewer)
            {
                return true;
            }
        }

        return false;
    }
}
