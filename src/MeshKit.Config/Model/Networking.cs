namespace MeshKit.Config.Model;

/// <summary>How a <see cref="StringMatchSpec"/> compares.</summary>
public enum StringMatchKind
{
    /// <summary>The whole value equals the pattern.</summary>
    Exact,

    /// <summary>The value starts with the pattern.</summary>
    Prefix,

    /// <summary>The whole value matches the RE2-style regular expression.</summary>
    Regex,

    /// <summary>The header or parameter is present, whatever its value (an empty match object in Istio).</summary>
    Present,

    /// <summary>
    /// The path starts with the pattern's segments (Gateway API's <c>PathPrefix</c>): <c>/api</c> matches <c>/api</c>,
    /// <c>/api/</c> and <c>/api/x</c>, not <c>/apix</c>; a trailing slash of the pattern does not count.
    /// </summary>
    PathPrefix,
}

/// <summary>Istio's <c>StringMatch</c>: exactly one of exact, prefix or regex.</summary>
/// <param name="Kind">Gets how to compare.</param>
/// <param name="Value">Gets the pattern.</param>
public sealed record StringMatchSpec(StringMatchKind Kind, string Value);

/// <summary><c>networking.istio.io</c> VirtualService.</summary>
public sealed record VirtualService : ConfigResource
{
    /// <summary>Gets <c>spec.hosts</c>.</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>Gets <c>spec.gateways</c>; empty means <c>mesh</c>.</summary>
    public IReadOnlyList<string> Gateways { get; init; } = [];

    /// <summary>Gets <c>spec.exportTo</c>; empty means every namespace.</summary>
    public IReadOnlyList<string> ExportTo { get; init; } = [];

    /// <summary>Gets <c>spec.http</c>, in match order.</summary>
    public IReadOnlyList<HttpRouteSpec> Http { get; init; } = [];

    /// <summary>Gets where the VirtualService came from when an HTTPRoute made it (<see cref="GatewayRouteResource"/>); null for a VirtualService.</summary>
    public GatewayRouteOrigin? Gateway { get; init; }
}

/// <summary>One entry of <c>spec.http</c>.</summary>
public sealed record HttpRouteSpec
{
    /// <summary>Gets <c>name</c>.</summary>
    public string? Name { get; init; }

    /// <summary>Gets <c>match</c>: any one of them matching selects the route; empty matches everything.</summary>
    public IReadOnlyList<HttpMatchRequest> Match { get; init; } = [];

    /// <summary>Gets <c>route</c>: the weighted destinations.</summary>
    public IReadOnlyList<HttpRouteDestination> Route { get; init; } = [];

    /// <summary>Gets <c>headers</c>.</summary>
    public HeadersSpec? Headers { get; init; }

    /// <summary>Gets <c>rewrite</c>.</summary>
    public RewriteSpec? Rewrite { get; init; }

    /// <summary>Gets <c>redirect</c>.</summary>
    public RedirectSpec? Redirect { get; init; }

    /// <summary>Gets <c>directResponse</c>.</summary>
    public DirectResponseSpec? DirectResponse { get; init; }

    /// <summary>Gets <c>timeout</c>: covers all attempts; zero disables it.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Gets <c>retries</c>.</summary>
    public RetrySpec? Retries { get; init; }

    /// <summary>Gets <c>fault</c>.</summary>
    public FaultSpec? Fault { get; init; }

    /// <summary>Gets <c>mirror</c>/<c>mirrorPercentage</c> and <c>mirrors</c>, as one list.</summary>
    public IReadOnlyList<MirrorSpec> Mirrors { get; init; } = [];

    /// <summary>Gets <c>corsPolicy</c>.</summary>
    public CorsPolicySpec? CorsPolicy { get; init; }

    /// <summary>Gets strong session affinity for the route's calls (an HTTPRoute rule's <c>sessionPersistence</c>).</summary>
    public SessionPersistenceSpec? SessionPersistence { get; init; }

    /// <summary>Gets where the route starts.</summary>
    public SourceLocation Location { get; init; }
}

/// <summary>One entry of <c>match</c>: every condition set must hold.</summary>
public sealed record HttpMatchRequest
{
    /// <summary>Gets <c>name</c>.</summary>
    public string? Name { get; init; }

    /// <summary>Gets <c>statPrefix</c>: the name of the per-route statistics of the route this block selects; null for none.</summary>
    public string? StatPrefix { get; init; }

    /// <summary>Gets <c>uri</c> (the path, without query).</summary>
    public StringMatchSpec? Uri { get; init; }

    /// <summary>Gets <c>scheme</c>.</summary>
    public StringMatchSpec? Scheme { get; init; }

    /// <summary>Gets <c>method</c>.</summary>
    public StringMatchSpec? Method { get; init; }

    /// <summary>Gets <c>authority</c>.</summary>
    public StringMatchSpec? Authority { get; init; }

    /// <summary>Gets <c>headers</c>, by lower-case name.</summary>
    public IReadOnlyDictionary<string, StringMatchSpec> Headers { get; init; } = new Dictionary<string, StringMatchSpec>();

    /// <summary>Gets <c>port</c>, or <see langword="null"/>.</summary>
    public uint? Port { get; init; }

    /// <summary>
    /// Gets the Service port the call must go to (an HTTPRoute parent's <c>port</c>): the URL's port when the service
    /// has it, else the service's only port (a call to <c>http://reviews/</c> goes to its one port); null for any.
    /// </summary>
    public uint? ServicePort { get; init; }

    /// <summary>Gets <c>queryParams</c>, by name.</summary>
    public IReadOnlyDictionary<string, StringMatchSpec> QueryParams { get; init; } = new Dictionary<string, StringMatchSpec>();

    /// <summary>Gets <c>withoutHeaders</c>: the request matches only when none of them matches.</summary>
    public IReadOnlyDictionary<string, StringMatchSpec> WithoutHeaders { get; init; } = new Dictionary<string, StringMatchSpec>();

    /// <summary>Gets <c>sourceLabels</c>: labels the calling workload must carry.</summary>
    public IReadOnlyDictionary<string, string> SourceLabels { get; init; } = ConfigResource.EmptyMap;

    /// <summary>Gets <c>sourceNamespace</c>: the namespace the calling workload must be in.</summary>
    public string? SourceNamespace { get; init; }
}

/// <summary>Istio's <c>Headers</c>: edits of the request and the response headers.</summary>
/// <param name="Request">Gets <c>request</c>.</param>
/// <param name="Response">Gets <c>response</c>.</param>
public sealed record HeadersSpec(HeaderOperationsSpec? Request, HeaderOperationsSpec? Response);

/// <summary>Istio's <c>HeaderOperations</c>.</summary>
/// <param name="Set">Gets <c>set</c>: replace (or add) these headers.</param>
/// <param name="Add">Gets <c>add</c>: append these values.</param>
/// <param name="Remove">Gets <c>remove</c>: drop these headers.</param>
public sealed record HeaderOperationsSpec(IReadOnlyDictionary<string, string> Set, IReadOnlyDictionary<string, string> Add, IReadOnlyList<string> Remove);

/// <summary>Istio's <c>HTTPRewrite</c>.</summary>
/// <param name="Uri">Gets <c>uri</c>: replaces the matched prefix, or the whole path for exact and regex matches.</param>
/// <param name="Authority">Gets <c>authority</c>.</param>
/// <param name="UriRegexMatch">Gets <c>uriRegexRewrite.match</c>.</param>
/// <param name="UriRegexRewrite">Gets <c>uriRegexRewrite.rewrite</c>.</param>
public sealed record RewriteSpec(string? Uri, string? Authority, string? UriRegexMatch, string? UriRegexRewrite);

/// <summary>Istio's <c>HTTPRedirect</c>.</summary>
/// <param name="Uri">Gets <c>uri</c>: replaces the whole path.</param>
/// <param name="Authority">Gets <c>authority</c>.</param>
/// <param name="Port">Gets <c>port</c>.</param>
/// <param name="Scheme">Gets <c>scheme</c>.</param>
/// <param name="RedirectCode">Gets <c>redirectCode</c> (default 301).</param>
/// <param name="PortFromRequest">Gets whether <c>derivePort</c> is <c>FROM_REQUEST_PORT</c>.</param>
public sealed record RedirectSpec(string? Uri, string? Authority, uint? Port, string? Scheme, uint RedirectCode, bool PortFromRequest)
{
    /// <summary>Gets whether <see cref="Uri"/> replaces the matched path prefix only (Gateway API's <c>ReplacePrefixMatch</c>), not the whole path.</summary>
    public bool ReplacesPrefix { get; init; }
}

/// <summary>Istio's <c>HTTPDirectResponse</c>.</summary>
/// <param name="Status">Gets <c>status</c>.</param>
/// <param name="Body">Gets <c>body</c> (<c>string</c> as UTF-8, or <c>bytes</c> decoded), or empty.</param>
public sealed record DirectResponseSpec(uint Status, ReadOnlyMemory<byte> Body);

/// <summary>One entry of <c>route</c>.</summary>
/// <param name="Destination">Gets <c>destination</c>.</param>
/// <param name="Weight">Gets <c>weight</c>, or <see langword="null"/> when absent.</param>
/// <param name="Headers">Gets <c>headers</c> of this destination.</param>
public sealed record HttpRouteDestination(Destination Destination, int? Weight, HeadersSpec? Headers = null);

/// <summary>Istio's <c>Destination</c>.</summary>
/// <param name="Host">Gets <c>host</c>: a short name (resolved in the rule's namespace) or an FQDN.</param>
/// <param name="Subset">Gets <c>subset</c>.</param>
/// <param name="Port">Gets <c>port.number</c>.</param>
public sealed record Destination(string Host, string? Subset, uint? Port);

/// <summary><c>networking.istio.io</c> DestinationRule.</summary>
public sealed record DestinationRule : ConfigResource
{
    /// <summary>Gets <c>spec.host</c>.</summary>
    public string Host { get; init; } = string.Empty;

    /// <summary>Gets <c>spec.trafficPolicy</c>.</summary>
    public TrafficPolicy? TrafficPolicy { get; init; }

    /// <summary>Gets <c>spec.subsets</c>.</summary>
    public IReadOnlyList<SubsetSpec> Subsets { get; init; } = [];

    /// <summary>Gets <c>spec.exportTo</c>; empty means every namespace.</summary>
    public IReadOnlyList<string> ExportTo { get; init; } = [];

    /// <summary>Gets <c>spec.workloadSelector</c>: the rule then applies only to matching workloads of its namespace.</summary>
    public WorkloadSelector? WorkloadSelector { get; init; }
}

/// <summary>Istio's <c>TrafficPolicy</c> (the parts MeshKit models).</summary>
/// <param name="LoadBalancer">Gets <c>loadBalancer.simple</c>, or <see langword="null"/>.</param>
/// <param name="ConsistentHash">Gets <c>loadBalancer.consistentHash</c>.</param>
/// <param name="Locality">Gets <c>loadBalancer.localityLbSetting</c>.</param>
public sealed record TrafficPolicy(string? LoadBalancer, ConsistentHashSpec? ConsistentHash = null, LocalityLbSpec? Locality = null)
{
    /// <summary>Gets <c>loadBalancer.warmupDurationSecs</c> or <c>loadBalancer.warmup</c>: slow start for new endpoints.</summary>
    public WarmupSpec? Warmup { get; init; }

    /// <summary>Gets <c>connectionPool</c>.</summary>
    public ConnectionPoolSpec? ConnectionPool { get; init; }

    /// <summary>Gets <c>outlierDetection</c>.</summary>
    public OutlierDetectionSpec? OutlierDetection { get; init; }

    /// <summary>Gets <c>tls</c>.</summary>
    public ClientTlsSpec? Tls { get; init; }

    /// <summary>Gets <c>retryBudget</c>.</summary>
    public RetryBudgetSpec? RetryBudget { get; init; }

    /// <summary>Gets <c>proxyProtocol</c>: the PROXY protocol header written on each new upstream connection.</summary>
    public ProxyProtocolSpec? ProxyProtocol { get; init; }

    /// <summary>Gets <c>portLevelSettings</c>.</summary>
    public IReadOnlyList<PortTrafficPolicy> PortLevelSettings { get; init; } = [];
}

/// <summary>
/// Istio's <c>TrafficPolicy.ProxyProtocol</c>: each new connection to the destination's endpoints starts with a PROXY
/// protocol header (HAProxy's format), before any TLS.
/// </summary>
/// <param name="Version">Gets the header's version: 1 (text, Istio's default) or 2 (binary).</param>
public sealed record ProxyProtocolSpec(int Version);

/// <summary>Slow start: a new endpoint's share grows from <see cref="MinimumPercent"/> to full over <see cref="Duration"/>.</summary>
/// <param name="Duration">Gets the warmup window.</param>
/// <param name="MinimumPercent">Gets the share a brand-new endpoint starts with (default 10).</param>
/// <param name="Aggression">Gets the curve: 1 is linear, above 1 ramps faster at first (default 1).</param>
public sealed record WarmupSpec(TimeSpan Duration, double MinimumPercent, double Aggression);

/// <summary>Istio's <c>ConsistentHashLB</c>: exactly one key, and ring hash (default) or Maglev.</summary>
public sealed record ConsistentHashSpec
{
    /// <summary>Gets <c>httpHeaderName</c>.</summary>
    public string? HttpHeaderName { get; init; }

    /// <summary>Gets <c>httpCookie.name</c>.</summary>
    public string? CookieName { get; init; }

    /// <summary>Gets <c>httpCookie.path</c>.</summary>
    public string? CookiePath { get; init; }

    /// <summary>Gets <c>httpCookie.ttl</c>; null when absent (the cookie is then never generated).</summary>
    public TimeSpan? CookieTtl { get; init; }

    /// <summary>Gets <c>httpCookie.attributes</c>: name and value (empty for a flag such as <c>Secure</c>) of each, in order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> CookieAttributes { get; init; } = [];

    /// <summary>Gets <c>httpQueryParameterName</c>.</summary>
    public string? QueryParameterName { get; init; }

    /// <summary>Gets <c>useSourceIp</c>.</summary>
    public bool UseSourceIp { get; init; }

    /// <summary>Gets <c>ringHash.minimumRingSize</c> (or the deprecated <c>minimumRingSize</c>).</summary>
    public ulong? MinimumRingSize { get; init; }

    /// <summary>Gets <c>maglev.tableSize</c>.</summary>
    public ulong? MaglevTableSize { get; init; }
}

/// <summary>Istio's <c>LocalityLoadBalancerSetting</c>.</summary>
public sealed record LocalityLbSpec
{
    /// <summary>Gets <c>enabled</c> (default true).</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Gets <c>distribute</c>: for callers in <c>from</c>, traffic shares by destination locality.</summary>
    public IReadOnlyList<LocalityDistribute> Distribute { get; init; } = [];

    /// <summary>Gets <c>failover</c>: where a region's traffic goes when it has no healthy endpoint.</summary>
    public IReadOnlyList<LocalityFailover> Failover { get; init; } = [];

    /// <summary>Gets <c>failoverPriority</c>: labels that order endpoints by how many of them match the caller's.</summary>
    public IReadOnlyList<string> FailoverPriority { get; init; } = [];
}

/// <summary>One <c>distribute</c> entry.</summary>
/// <param name="From">Gets <c>from</c>: a locality pattern (<c>region/zone/*</c>).</param>
/// <param name="To">Gets <c>to</c>: locality pattern → weight (summing to 100).</param>
public sealed record LocalityDistribute(string From, IReadOnlyDictionary<string, uint> To);

/// <summary>One <c>failover</c> entry.</summary>
/// <param name="From">Gets <c>from</c> (a region).</param>
/// <param name="To">Gets <c>to</c> (a region).</param>
public sealed record LocalityFailover(string From, string To);

/// <summary>One entry of <c>subsets</c>.</summary>
/// <param name="Name">Gets <c>name</c>.</param>
/// <param name="Labels">Gets <c>labels</c>.</param>
/// <param name="TrafficPolicy">Gets <c>trafficPolicy</c>.</param>
public sealed record SubsetSpec(string Name, IReadOnlyDictionary<string, string> Labels, TrafficPolicy? TrafficPolicy);

/// <summary><c>networking.istio.io</c> ServiceEntry.</summary>
public sealed record ServiceEntry : ConfigResource
{
    /// <summary>Gets <c>spec.hosts</c>.</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>Gets <c>spec.ports</c>.</summary>
    public IReadOnlyList<ServiceEntryPort> Ports { get; init; } = [];

    /// <summary>Gets <c>spec.location</c>: <c>MESH_EXTERNAL</c> (default) or <c>MESH_INTERNAL</c>.</summary>
    public string Location { get; init; } = "MESH_EXTERNAL";

    /// <summary>Gets <c>spec.resolution</c>: <c>NONE</c> (default), <c>STATIC</c>, <c>DNS</c>, <c>DNS_ROUND_ROBIN</c> or <c>DYNAMIC_DNS</c>.</summary>
    public string Resolution { get; init; } = "NONE";

    /// <summary>Gets <c>spec.endpoints</c>.</summary>
    public IReadOnlyList<WorkloadEntrySpec> Endpoints { get; init; } = [];

    /// <summary>Gets <c>spec.workloadSelector</c>: the entry's endpoints are the matching workloads of its namespace.</summary>
    public WorkloadSelector? WorkloadSelector { get; init; }

    /// <summary>Gets <c>spec.subjectAltNames</c>: SPIFFE IDs the entry's endpoints may prove under mutual TLS.</summary>
    public IReadOnlyList<string> SubjectAltNames { get; init; } = [];

    /// <summary>Gets <c>spec.exportTo</c>; empty means every namespace.</summary>
    public IReadOnlyList<string> ExportTo { get; init; } = [];
}

/// <summary>One entry of a ServiceEntry's <c>ports</c>.</summary>
/// <param name="Number">Gets <c>number</c>.</param>
/// <param name="Protocol">Gets <c>protocol</c> (upper case).</param>
/// <param name="Name">Gets <c>name</c>.</param>
/// <param name="TargetPort">Gets <c>targetPort</c>, or <see langword="null"/>.</param>
public sealed record ServiceEntryPort(uint Number, string Protocol, string Name, uint? TargetPort)
{
    /// <summary>
    /// Gets the name of the selected workloads' port that takes the port's calls (a Kubernetes Service's
    /// <c>targetPort</c> written as a name), or <see langword="null"/>.
    /// </summary>
    public string? TargetPortName { get; init; }
}

/// <summary>
/// Strong session affinity, as Envoy's stateful session filter keeps it: the endpoint that served a call is named in a
/// cookie or a response header, and a call that sends it back goes to that endpoint while it is healthy.
/// </summary>
/// <param name="CookieName">Gets the cookie's name, or <see langword="null"/> when a header carries the session.</param>
/// <param name="HeaderName">Gets the header's name, or <see langword="null"/> when a cookie carries the session.</param>
/// <param name="CookiePath">Gets the cookie's <c>Path</c>, or <see langword="null"/>.</param>
/// <param name="CookieTtl">Gets the cookie's lifetime (<c>Max-Age</c>); <see langword="null"/> for a session cookie.</param>
public sealed record SessionPersistenceSpec(string? CookieName, string? HeaderName, string? CookiePath, TimeSpan? CookieTtl);

/// <summary>
/// A Kubernetes <c>v1</c> Service, read as Istio reads one: the mesh-internal host
/// <c>name.namespace.svc.&lt;cluster domain&gt;</c> whose endpoints are the live workloads of its namespace that carry
/// every label of its selector (Istio's <c>bookinfo-versions.yaml</c>: one Service per version), or, without a selector,
/// the addresses its EndpointSlices or Endpoints list (<see cref="KubernetesEndpoints"/>); or an <c>ExternalName</c> alias.
/// </summary>
public sealed record KubernetesService : ConfigResource
{
    /// <summary>
    /// Gets <c>spec.selector</c>; <see langword="null"/> for a Service without one, whose endpoints are those its
    /// EndpointSlices (or Endpoints) list (<see cref="KubernetesEndpoints"/>), and for an <c>ExternalName</c> alias.
    /// </summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>
    /// Gets <c>spec.publishNotReadyAddresses</c>: the endpoints its EndpointSlices list are endpoints whatever their
    /// conditions say (not ready, terminating), as Kubernetes and Istio take them.
    /// </summary>
    public bool PublishNotReadyAddresses { get; init; }

    /// <summary>Gets <c>spec.ports</c>, each with the protocol Istio selects for it (<c>appProtocol</c>, else the name's prefix).</summary>
    public IReadOnlyList<ServiceEntryPort> Ports { get; init; } = [];

    /// <summary>Gets the namespaces that see the Service (Istio's annotation <c>networking.istio.io/exportTo</c>); empty means every namespace.</summary>
    public IReadOnlyList<string> ExportTo { get; init; } = [];

    /// <summary>
    /// Gets strong session affinity for the Service's calls (Istio's labels <c>istio.io/persistent-session</c> and
    /// <c>istio.io/persistent-session-header</c>), or <see langword="null"/>.
    /// </summary>
    public SessionPersistenceSpec? SessionPersistence { get; init; }

    /// <summary>
    /// Gets <c>spec.externalName</c> of an <c>ExternalName</c> Service (an alias: its calls are the named service's,
    /// or go to the name by DNS), or <see langword="null"/>.
    /// </summary>
    public string? ExternalName { get; init; }

    /// <summary>
    /// Returns the Service as the ServiceEntry it amounts to: internal, its endpoints the selected workloads (none
    /// without a selector: the compiler adds those of its <see cref="KubernetesEndpoints"/>).
    /// </summary>
    /// <returns>A ServiceEntry of the same name, namespace and source.</returns>
    public ServiceEntry AsServiceEntry() => new()
    {
        Kind = Kind, ApiVersion = ApiVersion, Name = Name, Namespace = Namespace, Labels = Labels, Annotations = Annotations,
        Source = Source, FieldLocations = FieldLocations,
        Hosts = [Name], Ports = Ports, Location = "MESH_INTERNAL", Resolution = "STATIC", WorkloadSelector = Selector, ExportTo = ExportTo,
    };
}

/// <summary>
/// The endpoints a Kubernetes Service's EndpointSlice (<c>discovery.k8s.io/v1</c>) or Endpoints (<c>v1</c>) lists,
/// read as Istio reads them: the endpoints of a Service without a selector (a database's primary, a VM, a host outside
/// the cluster), or, for a slice written by someone other than Kubernetes' controller, more endpoints of a Service with
/// one. The slices Kubernetes makes from a Service's selector are not read (the selected workloads are its endpoints).
/// </summary>
public sealed record KubernetesEndpoints : ConfigResource
{
    /// <summary>
    /// Gets the name of the Service of the resource's namespace whose endpoints these are: an EndpointSlice's label
    /// <c>kubernetes.io/service-name</c>, an Endpoints' own name.
    /// </summary>
    public required string ServiceName { get; init; }

    /// <summary>Gets the groups of addresses that share ports: an EndpointSlice is one, an Endpoints has one per subset.</summary>
    public IReadOnlyList<KubernetesEndpointSubset> Subsets { get; init; } = [];
}

/// <summary>
/// A pod of the cluster, as the control plane reads it from the API server (never from a file: a pod's address is
/// current only there): its labels (<see cref="ConfigResource.Labels"/>) and addresses, which give an EndpointSlice's
/// address that runs no MeshKit the labels its pod has, as Istio takes an endpoint's labels from its pod.
/// </summary>
public sealed record KubernetesPod : ConfigResource
{
    /// <summary>Gets the pod's addresses (<c>status.podIPs</c>).</summary>
    public IReadOnlyList<string> Addresses { get; init; } = [];

    /// <summary>Gets the node the pod runs on (<c>spec.nodeName</c>); null when not scheduled.</summary>
    public string? NodeName { get; init; }

    /// <summary>
    /// Gets the pod's locality, <c>region/zone/subzone</c>, from its node's labels (<c>topology.kubernetes.io/region</c>,
    /// <c>topology.kubernetes.io/zone</c>, <c>topology.istio.io/subzone</c>) as Istio takes it; null when unknown.
    /// </summary>
    public string? Locality { get; init; }
}

/// <summary>Addresses and the ports each of them serves (an EndpointSlice, or one of an Endpoints' <c>subsets</c>).</summary>
/// <param name="Addresses">Gets the addresses, with their conditions.</param>
/// <param name="Ports">Gets the ports: each named as the Service's port it serves, with the number the address listens on.</param>
public sealed record KubernetesEndpointSubset(IReadOnlyList<KubernetesEndpointAddress> Addresses, IReadOnlyList<KubernetesEndpointPort> Ports);

/// <summary>One endpoint address and its conditions.</summary>
/// <param name="Address">Gets the IP address.</param>
/// <param name="Ready">Gets <c>conditions.ready</c> (absent means ready); false for an Endpoints' <c>notReadyAddresses</c>.</param>
/// <param name="Terminating">Gets <c>conditions.terminating</c> (absent means not terminating).</param>
public sealed record KubernetesEndpointAddress(string Address, bool Ready, bool Terminating);

/// <summary>One port of an EndpointSlice or an Endpoints' subset.</summary>
/// <param name="Name">Gets the name of the Service's port it serves (empty for a Service's one unnamed port).</param>
/// <param name="Number">Gets the port the addresses listen on.</param>
/// <param name="Path">Gets the port's field path (<c>ports[0]</c>, <c>subsets[1].ports[0]</c>), for findings.</param>
public sealed record KubernetesEndpointPort(string Name, uint Number, string Path);

/// <summary>One entry of a ServiceEntry's <c>endpoints</c>.</summary>
public sealed record WorkloadEntrySpec
{
    /// <summary>Gets <c>address</c>.</summary>
    public string Address { get; init; } = string.Empty;

    /// <summary>Gets <c>ports</c>: port name → target port.</summary>
    public IReadOnlyDictionary<string, uint> Ports { get; init; } = new Dictionary<string, uint>();

    /// <summary>Gets <c>labels</c>.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = ConfigResource.EmptyMap;

    /// <summary>Gets <c>locality</c> as <c>region/zone/subzone</c>.</summary>
    public string? Locality { get; init; }

    /// <summary>Gets <c>weight</c>.</summary>
    public uint? Weight { get; init; }

    /// <summary>Gets <c>serviceAccount</c>.</summary>
    public string? ServiceAccount { get; init; }
}

/// <summary>MeshKit's mesh-wide settings (<c>meshkit.dev/v1alpha1</c> MeshConfig), named after Istio's MeshConfig fields.</summary>
public sealed record MeshConfigResource : ConfigResource
{
    /// <summary>Gets <c>spec.trustDomain</c>; default <c>cluster.local</c>.</summary>
    public string? TrustDomain { get; init; }

    /// <summary>Gets <c>spec.pathNormalization.normalization</c>: BASE (default), MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or NONE.</summary>
    public string? PathNormalization { get; init; }

    /// <summary>Gets <c>spec.rootNamespace</c>; default <c>istio-system</c>.</summary>
    public string? RootNamespace { get; init; }

    /// <summary>Gets <c>spec.outboundTrafficPolicy.mode</c>: <c>ALLOW_ANY</c> (default) or <c>REGISTRY_ONLY</c>.</summary>
    public string? OutboundTrafficPolicy { get; init; }

    /// <summary>Gets <c>spec.clusterDomain</c>: the DNS suffix of service hosts; default <c>cluster.local</c>.</summary>
    public string? ClusterDomain { get; init; }

    /// <summary>Gets <c>spec.extensionProviders</c> that MeshKit acts on: external authorization services, by name.</summary>
    public IReadOnlyList<ExtAuthzProviderSpec> ExtensionProviders { get; init; } = [];

    /// <summary>
    /// Gets <c>enableAutoMtls</c>: false turns automatic mutual TLS off, so a call is mutual TLS only where a
    /// DestinationRule says <c>ISTIO_MUTUAL</c>; null or true, Istio's default (on).
    /// </summary>
    public bool? EnableAutoMtls { get; init; }

    /// <summary>
    /// Gets <c>trustDomainAliases</c>: trust domains treated as the mesh's own in AuthorizationPolicy principals (a
    /// principal in any of them, or in the trust domain, matches its counterpart in all of them).
    /// </summary>
    public IReadOnlyList<string> TrustDomainAliases { get; init; } = [];

    /// <summary>
    /// Gets <c>localityLbSetting</c>: locality-aware balancing for every destination whose DestinationRule sets none
    /// (those without a DestinationRule included); a rule's own replaces it.
    /// </summary>
    public LocalityLbSpec? LocalityLbSetting { get; init; }

    /// <summary>Gets <c>defaultHttpRetryPolicy</c>: the retry policy of routes that set none, instead of Istio's default.</summary>
    public RetrySpec? DefaultHttpRetryPolicy { get; init; }

    /// <summary>Gets <c>defaultServiceExportTo</c>: the visibility of services (registered, ServiceEntries, Kubernetes Services) that set none; empty means every namespace.</summary>
    public IReadOnlyList<string> DefaultServiceExportTo { get; init; } = [];

    /// <summary>Gets <c>defaultVirtualServiceExportTo</c>: the visibility of VirtualServices that set none; empty means every namespace.</summary>
    public IReadOnlyList<string> DefaultVirtualServiceExportTo { get; init; } = [];

    /// <summary>Gets <c>defaultDestinationRuleExportTo</c>: the visibility of DestinationRules that set none; empty means every namespace.</summary>
    public IReadOnlyList<string> DefaultDestinationRuleExportTo { get; init; } = [];

    /// <summary>Gets <c>defaultConfig.proxyHeaders</c>: the headers the mesh adds to calls; null: Istio's defaults.</summary>
    public ProxyHeadersSpec? ProxyHeaders { get; init; }

    /// <summary>
    /// Gets <c>discoverySelectors</c>: the namespaces whose resources the control plane reads from a Kubernetes API
    /// server, those whose labels any selector matches (the root namespace always); empty: every namespace.
    /// </summary>
    public IReadOnlyList<LabelSelectorSpec> DiscoverySelectors { get; init; } = [];
}

/// <summary>A Kubernetes label selector: every <c>matchLabels</c> pair and every <c>matchExpressions</c> requirement must hold.</summary>
public sealed record LabelSelectorSpec
{
    /// <summary>Gets <c>matchLabels</c>: labels that must be present with these values.</summary>
    public IReadOnlyDictionary<string, string> MatchLabels { get; init; } = new Dictionary<string, string>();

    /// <summary>Gets <c>matchExpressions</c>: requirements on a label (<c>In</c>, <c>NotIn</c>, <c>Exists</c>, <c>DoesNotExist</c>).</summary>
    public IReadOnlyList<LabelRequirementSpec> MatchExpressions { get; init; } = [];

    /// <summary>Returns whether a set of labels satisfies the selector, as Kubernetes evaluates it (an empty selector matches everything).</summary>
    /// <param name="labels">The labels of the object (a namespace).</param>
    /// <returns><see langword="true"/> when every pair and requirement holds.</returns>
    public bool Matches(IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return MatchLabels.All(l => labels.TryGetValue(l.Key, out var value) && value == l.Value)
            && MatchExpressions.All(r => r.Operator switch
            {
                "In" => labels.TryGetValue(r.Key, out var value) && r.Values.Contains(value),
                "NotIn" => !labels.TryGetValue(r.Key, out var value) || !r.Values.Contains(value),
                "Exists" => labels.ContainsKey(r.Key),
                "DoesNotExist" => !labels.ContainsKey(r.Key),
                _ => false,
            });
    }
}

/// <summary>One <c>matchExpressions</c> requirement: a label key, an operator and, for <c>In</c> and <c>NotIn</c>, values.</summary>
/// <param name="Key">The label's key.</param>
/// <param name="Operator"><c>In</c>, <c>NotIn</c>, <c>Exists</c> or <c>DoesNotExist</c>.</param>
/// <param name="Values">The values <c>In</c> and <c>NotIn</c> compare with.</param>
public sealed record LabelRequirementSpec(string Key, string Operator, IReadOnlyList<string> Values);

/// <summary>
/// <c>defaultConfig.proxyHeaders</c> (Istio's <c>ProxyConfig.ProxyHeaders</c>): which of the headers a sidecar adds to
/// calls MeshKit adds too. Every one is on by default, as in Istio.
/// </summary>
public sealed record ProxyHeadersSpec
{
    /// <summary>Gets <c>requestId.disabled</c>: no <c>x-request-id</c> is made for a request that has none.</summary>
    public bool RequestIdDisabled { get; init; }

    /// <summary>Gets <c>attemptCount.disabled</c>: no <c>x-envoy-attempt-count</c> on the requests sent upstream.</summary>
    public bool AttemptCountDisabled { get; init; }

    /// <summary>
    /// Gets <c>envoyDebugHeaders.disabled</c>: none of Envoy's debug headers (<c>x-envoy-expected-rq-timeout-ms</c>,
    /// <c>x-envoy-original-path</c> on requests, <c>x-envoy-upstream-service-time</c> on responses).
    /// </summary>
    public bool EnvoyDebugHeadersDisabled { get; init; }

    /// <summary>
    /// Gets <c>forwardedClientCert</c>: <c>SANITIZE</c> (the application is not told the caller's certificate in
    /// <c>x-forwarded-client-cert</c>), or <c>SANITIZE_SET</c> / <c>APPEND_FORWARD</c> (it is told the verified caller's,
    /// the default); null when not set.
    /// </summary>
    public string? ForwardedClientCert { get; init; }
}

/// <summary>
/// <c>extensionProviders[].envoyExtAuthzHttp</c> or <c>envoyExtAuthzGrpc</c>: an external authorization service spoken
/// to as Envoy's <c>ext_authz</c> filter does, over HTTP or gRPC; AuthorizationPolicies with action CUSTOM name it.
/// </summary>
public sealed record ExtAuthzProviderSpec
{
    /// <summary>Gets whether the service speaks Envoy's gRPC protocol (<c>envoyExtAuthzGrpc</c>) rather than HTTP.</summary>
    public bool Grpc { get; init; }

    /// <summary>Gets <c>includeRequestBodyInCheck.packAsBytes</c> (gRPC): the body goes as bytes, not as text.</summary>
    public bool PackAsBytes { get; init; }

    /// <summary>Gets <c>name</c>, which <c>AuthorizationPolicy.spec.provider.name</c> refers to.</summary>
    public required string Name { get; init; }

    /// <summary>Gets <c>service</c>: the host of the authorization service (<c>[namespace/]host</c> without the namespace).</summary>
    public required string Service { get; init; }

    /// <summary>Gets <c>port</c>.</summary>
    public required uint Port { get; init; }

    /// <summary>Gets <c>timeout</c>; Istio's default is 600 s.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Gets <c>pathPrefix</c>: put before the request's path in the check request.</summary>
    public string? PathPrefix { get; init; }

    /// <summary>Gets <c>failOpen</c>: allow the request when the service cannot be reached or answers 5xx.</summary>
    public bool FailOpen { get; init; }

    /// <summary>Gets <c>statusOnError</c>: the status of a request refused because the service failed; default 403.</summary>
    public int? StatusOnError { get; init; }

    /// <summary>Gets <c>includeRequestHeadersInCheck</c> (and the deprecated <c>includeHeadersInCheck</c>): header patterns sent along.</summary>
    public IReadOnlyList<string> IncludeRequestHeadersInCheck { get; init; } = [];

    /// <summary>Gets <c>includeAdditionalHeadersInCheck</c>: fixed headers added to the check request.</summary>
    public IReadOnlyDictionary<string, string> IncludeAdditionalHeadersInCheck { get; init; } = new Dictionary<string, string>();

    /// <summary>Gets <c>includeRequestBodyInCheck.maxRequestBytes</c> when the body is sent along; null when it is not.</summary>
    public uint? MaxRequestBytes { get; init; }

    /// <summary>Gets <c>includeRequestBodyInCheck.allowPartialMessage</c>.</summary>
    public bool AllowPartialMessage { get; init; }

    /// <summary>Gets <c>headersToUpstreamOnAllow</c>: header patterns of the check's answer set on the allowed request.</summary>
    public IReadOnlyList<string> HeadersToUpstreamOnAllow { get; init; } = [];

    /// <summary>Gets <c>headersToDownstreamOnDeny</c>: header patterns of the check's answer sent with a denial; empty: all.</summary>
    public IReadOnlyList<string> HeadersToDownstreamOnDeny { get; init; } = [];

    /// <summary>Gets <c>headersToDownstreamOnAllow</c>: header patterns of the check's answer added to the allowed request's response.</summary>
    public IReadOnlyList<string> HeadersToDownstreamOnAllow { get; init; } = [];
}

/// <summary>
/// <c>networking.istio.io</c> Sidecar: which services the selected workloads (or a namespace's, or the mesh's by
/// default) send to through the mesh, and their outbound traffic policy. A workload receives only those services.
/// </summary>
public sealed record SidecarResource : ConfigResource
{
    /// <summary>Gets <c>spec.workloadSelector</c>; null for the namespace's (or, in the root namespace, the mesh's) default.</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets every <c>egress[].hosts</c> entry as (namespace, host): the namespace is a name, <c>*</c>, <c>.</c> (the workload's own) or <c>~</c> (none); the host an FQDN or a wildcard.</summary>
    public IReadOnlyList<SidecarHost> EgressHosts { get; init; } = [];

    /// <summary>Gets <c>spec.outboundTrafficPolicy.mode</c>, overriding MeshConfig's for the selected workloads.</summary>
    public string? OutboundTrafficPolicy { get; init; }

    /// <summary>
    /// Gets <c>spec.outboundTrafficPolicy.egressProxy</c>: the service (host, subset, port) calls to hosts outside the
    /// registry go through instead of going directly (with <c>mode: ALLOW_ANY</c> only); null when not set.
    /// </summary>
    public Destination? EgressProxy { get; init; }
}

/// <summary>One <c>egress[].hosts</c> entry of a Sidecar.</summary>
/// <param name="Namespace">Gets the namespace part: a name, <c>*</c>, <c>.</c> or <c>~</c>.</param>
/// <param name="Host">Gets the host part: an FQDN, <c>*.suffix</c> or <c>*</c>.</param>
public sealed record SidecarHost(string Namespace, string Host)
{
    /// <summary>Gets the entry's <c>port.number</c>: the host is admitted for calls to that service port only; null for every port.</summary>
    public uint? Port { get; init; }
}

/// <summary>
/// <c>networking.istio.io</c> WorkloadEntry: a workload declared rather than registered (a VM, a process elsewhere);
/// ServiceEntries whose <c>workloadSelector</c> matches its labels in its namespace have it as an endpoint.
/// </summary>
public sealed record WorkloadEntryResource : ConfigResource
{
    /// <summary>Gets <c>spec</c>: address, ports, labels, locality, weight, serviceAccount.</summary>
    public WorkloadEntrySpec Spec { get; init; } = new();
}
