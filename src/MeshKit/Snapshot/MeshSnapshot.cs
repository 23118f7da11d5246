using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using MeshKit.LoadBalancing;
using MeshKit.Routing;

namespace MeshKit.Snapshot;

/// <summary>
/// Everything the request path reads, compiled once per config version and never changed afterwards: host aliases,
/// route tables with their matchers, and endpoint sets with their load balancers. Swapped atomically as a whole.
/// </summary>
internal sealed class MeshSnapshot
{
    private readonly FrozenDictionary<string, ServiceView> _aliases;
    private readonly (string Suffix, ServiceView Service)[] _wildcards;

    public MeshSnapshot(string version, bool isReady, bool registryOnly, FrozenDictionary<string, ServiceView> services, FrozenDictionary<string, ServiceView> aliases, ServiceView? ownService = null)
    {
        OwnService = ownService;
        Version = version;
        IsReady = isReady;
        RegistryOnly = registryOnly;
        Services = services;
        _aliases = aliases;

        // "*.example.com" services, longest suffix first, so the most specific one answers.
        _wildcards = services.Values.Where(s => s.Host.StartsWith("*.", StringComparison.Ordinal))
            .Select(s => (s.Host[1..], s)).OrderByDescending(w => w.Item1.Length).ToArray();
    }

    /// <summary>Gets the snapshot before any configuration arrived.</summary>
    public static MeshSnapshot Empty { get; } = new(string.Empty, false, false, FrozenDictionary<string, ServiceView>.Empty, FrozenDictionary<string, ServiceView>.Empty);

    public string Version { get; }

    /// <summary>Gets this workload's effective PeerAuthentication (PERMISSIVE until the control plane says otherwise).</summary>
    public Protocol.V1.PeerAuthenticationPolicy PeerAuthentication { get; init; } = new();

    /// <summary>Gets this workload's AuthorizationPolicies, compiled.</summary>
    public Security.AuthorizationEngine Authorization { get; init; } = Security.AuthorizationEngine.None;

    /// <summary>Gets this workload's RequestAuthentication providers, compiled.</summary>
    public Security.JwtAuthenticator Jwt { get; init; } = Security.JwtAuthenticator.None;

    /// <summary>Gets how request paths are normalized before policy and the application see them.</summary>
    public Security.PathNormalization PathNormalization { get; init; } = Security.PathNormalization.Base;

    /// <summary>Gets what the Telemetry API changes of Istio's standard metrics here; null when nothing (every metric, every label).</summary>
    internal Telemetry.ReportPolicy? Reports { get; init; }

    /// <summary>Gets how often a running gRPC stream's message counts are added (the Telemetry API's <c>reportingInterval</c>).</summary>
    internal TimeSpan StreamReportingInterval { get; init; } = Telemetry.LiveStreams.DefaultInterval;

    /// <summary>Gets whether the Telemetry API turned the access log off for this workload's outbound calls (mode CLIENT).</summary>
    internal bool ClientAccessLogOff { get; init; }

    /// <summary>Gets whether the Telemetry API turned the access log off for the requests this workload serves (mode SERVER).</summary>
    internal bool ServerAccessLogOff { get; init; }

    /// <summary>Gets the Telemetry API's access-log filter for this workload's outbound calls; null: every call.</summary>
    internal MeshKit.Config.Expressions.CelProgram? ClientAccessLogFilter { get; init; }

    /// <summary>Gets the Telemetry API's access-log filter for the requests this workload serves; null: every request.</summary>
    internal MeshKit.Config.Expressions.CelProgram? ServerAccessLogFilter { get; init; }

    /// <summary>
    /// Gets the workload's egress proxy (its Sidecar's <c>outboundTrafficPolicy.egressProxy</c>): the host calls
    /// outside the registry go through, and its one route (to the proxy's subset and port, no retries); the route is
    /// null when this workload does not see the proxy's service, and such calls then fail rather than go around it.
    /// </summary>
    internal (string Host, ServiceView? Service)? EgressProxy { get; init; }

    /// <summary>Gets which of the headers a sidecar adds to calls the workload adds (MeshConfig's <c>defaultConfig.proxyHeaders</c>).</summary>
    internal Protocol.V1.ProxyHeaders ProxyHeaders { get; init; } = Http.ProxyHeaderValues.Defaults;

    /// <summary>Gets whether the Telemetry API turned MeshKit's spans off (<c>tracing.disableSpanReporting</c>).</summary>
    internal bool SpansOff { get; init; }

    /// <summary>Gets the Telemetry API's custom tags for MeshKit's outbound spans; null when none.</summary>
    internal Telemetry.SpanTags? SpanTags { get; init; }

    /// <summary>Gets the share (0–1) of the traces this workload starts on an outbound call to sample; null: the application's sampler alone decides.</summary>
    internal double? ClientSampling { get; init; }

    /// <summary>Gets the share (0–1) of the traces this workload starts on a request without trace context to sample; null as above.</summary>
    internal double? ServerSampling { get; init; }

    /// <summary>Gets whether the workload has received a complete configuration (every resource type at least once).</summary>
    public bool IsReady { get; }

    /// <summary>Gets whether hosts outside the registry are refused (<c>outboundTrafficPolicy: REGISTRY_ONLY</c>).</summary>
    public bool RegistryOnly { get; }

    /// <summary>Gets this workload's own service (its inbound routes carry the CORS policies), when it is known.</summary>
    public ServiceView? OwnService { get; }

    /// <summary>Gets the services by FQDN.</summary>
    public FrozenDictionary<string, ServiceView> Services { get; }

    /// <summary>Resolves a request host (any of the service's names, or a name under a wildcard service) to its service.</summary>
    public bool TryResolve(string host, [NotNullWhen(true)] out ServiceView? service)
    {
        if (_aliases.TryGetValue(host, out service))
        {
            return true;
        }

        foreach (var (suffix, wildcard) in _wildcards)
        {
            if (host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.Ordinal))
            {
                service = wildcard;
                return true;
            }
        }

        return false;
    }
}

/// <summary>A service as the request path sees it: its ports and its routes in match order.</summary>
internal sealed class ServiceView(string host, string name, uint[] ports, bool external, RouteEntry[] routes)
{
    /// <summary>Gets the service ports the workload's Sidecar admits it on (egress entries with a port); null: every port.</summary>
    public uint[]? SidecarPorts { get; init; }

    // The authority callers last used for this service ("reviews:9080"): Uri.Authority builds a new string per call,
    // and the callers of one service nearly always spell it the same way.
    private AuthorityText? _authority;
    private Telemetry.PeerMetadata? _unknownPeer;

    /// <summary>
    /// Gets the metadata Istio's metrics report for this service when its answering peer told nothing: unknown, but for
    /// the service's name (<c>destination_service_name</c>), as Istio takes it from the cluster's metadata.
    /// </summary>
    public Telemetry.PeerMetadata UnknownPeer => _unknownPeer ??= Telemetry.PeerMetadata.Unknown with { Service = name };

    /// <summary>Returns <paramref name="uri"/>'s authority, reusing the text of the previous call when it is the same.</summary>
    public string AuthorityOf(Uri uri)
    {
        var host = uri.IdnHost;
        var port = uri.IsDefaultPort ? -1 : uri.Port;
        if (Volatile.Read(ref _authority) is { } known && known.Port == port && string.Equals(known.IdnHost, host, StringComparison.Ordinal))
        {
            return known.Text;
        }

        var text = uri.Authority;
        Volatile.Write(ref _authority, new AuthorityText(host, port, text));
        return text;
    }

    private sealed record AuthorityText(string IdnHost, int Port, string Text);

    /// <summary>Gets whether any route has a CORS policy (the inbound middleware looks only then).</summary>
    public bool HasCors { get; } = routes.Any(r => r.Actions.Cors is not null);

    public string Host { get; } = host;

    public uint[] Ports { get; } = ports;

    public bool External { get; } = external;

    public RouteEntry[] Routes { get; } = routes;
}

/// <summary>A service's endpoints and subsets.</summary>
internal sealed class ClusterView(string host, EndpointSet all, FrozenDictionary<string, EndpointSet> subsets, ClusterRuntime? runtime = null)
{
    /// <summary>Gets the service's state that outlives snapshots (the health of each endpoint).</summary>
    public ClusterRuntime Runtime { get; } = runtime ?? new ClusterRuntime();

    public string Host { get; } = host;

    /// <summary>Gets the service's endpoints, balanced and limited as the DestinationRule's own policy says.</summary>
    public EndpointSet All { get; } = all;

    /// <summary>Gets the subsets, each a destination of its own (<see cref="EndpointSet.Upstream"/>).</summary>
    public FrozenDictionary<string, EndpointSet> Subsets { get; } = subsets;
}
