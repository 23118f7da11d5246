using System.Collections.Frozen;
using System.Net;
using System.Net.Sockets;
using MeshKit.Protocol.V1;
using MeshKit.Routing;
using MeshKit.Snapshot;

namespace MeshKit.LoadBalancing;

/// <summary>One endpoint of a cluster, with its ports resolved; its authority strings are built on first use.</summary>
internal sealed class EndpointView
{
    // The port layout is shared by every endpoint with the same ports (nearly all of a service's), and the authority
    // texts ("10.0.0.7:8080") are built when a request first goes to the endpoint: a workload of a large mesh holds
    // tens of thousands of endpoints and calls few of them.
    private readonly PortLayout[] _ports;
    private string?[]? _authorities;
    private string? _key;

    public EndpointView(Endpoint endpoint, EndpointShapes? shapes = null, bool outsideMesh = false)
    {
        // Shared with every endpoint of the same ports, labels, locality and identity: the snapshot keeps no message.
        shapes ??= new EndpointShapes();
        Address = endpoint.Address;
        _ports = shapes.Ports(endpoint.Ports);
        Identity = shapes.Text(endpoint.Identity);
        ExpectedPeer = endpoint.AcceptedIdentities.Count == 0 ? Identity : shapes.Text(string.Join(',', [Identity, .. endpoint.AcceptedIdentities]));
        AutoMtlsOff = endpoint.AutoMtlsOff;
        IdentityNamespace = Identity.Length > 0 && Security.SpiffeId.TryParse(Identity, out var id) ? shapes.Text(id.Value.Namespace) : null;
        Weight = (int)Math.Clamp(endpoint.Weight, 1u, 1_000_000u);
        Labels = shapes.Labels(endpoint.Labels);
        Locality = shapes.Locality(endpoint.Locality);
        IsWorkload = endpoint.Origin.Length > 0 && !Config.Compilation.EndpointOrigins.IsDeclaredAddress(endpoint.Origin);
        OutsideMesh = outsideMesh;
    }

    /// <summary>
    /// Gets whether the endpoint is outside the mesh (of a ServiceEntry with <c>location: MESH_EXTERNAL</c>): calls to
    /// it go through the HTTP proxy the client's settings name for its address, as the application's calls to hosts
    /// outside the mesh do; calls to any other endpoint connect to it directly (<see cref="Http.MeshProxy"/>).
    /// </summary>
    public bool OutsideMesh { get; }

    /// <summary>Gets whether the endpoint is a workload instance (registered, or a WorkloadEntry), not an address a ServiceEntry or EndpointSlice lists.</summary>
    public bool IsWorkload { get; }

    public string Address { get; }

    /// <summary>Gets the SPIFFE ID the endpoint proved to the control plane (or its ServiceEntry gives it); empty when it has no mesh certificate.</summary>
    public string Identity { get; }

    /// <summary>
    /// Gets what the endpoint's certificate must say under mutual TLS: <see cref="Identity"/>, or with a ServiceEntry's
    /// subjectAltNames, any of them, comma-separated (SPIFFE IDs hold no comma).
    /// </summary>
    public string ExpectedPeer { get; }

    /// <summary>Gets whether automatic mutual TLS leaves this endpoint alone (a ServiceEntry endpoint not labelled as a mesh workload).</summary>
    public bool AutoMtlsOff { get; }

    /// <summary>Gets the namespace of <see cref="Identity"/>, parsed once; null when the endpoint has no identity.</summary>
    public string? IdentityNamespace { get; }

    /// <summary>Gets the endpoint's health (outlier detection), shared by every snapshot; null when not tracked.</summary>
    public Resilience.EndpointHealth? Health { get; set; }

    /// <summary>Gets the endpoint's stable identity (address and first port): what consistent hashing places.</summary>
    public string Key => _key ??= _ports.Length > 0 ? AuthorityAt(0) : Host;

    // IPv6 addresses are bracketed in an authority.
    private string Host => Address.Contains(':', StringComparison.Ordinal) && IPAddress.TryParse(Address, out var ip) && ip.AddressFamily == AddressFamily.InterNetworkV6
        ? $"[{Address}]" : Address;

    public IReadOnlyDictionary<string, string> Labels { get; }

    public Locality Locality { get; }

    /// <summary>Gets the endpoint's weight (ServiceEntry <c>endpoints[].weight</c>; 1 for registered workloads).</summary>
    public int Weight { get; }

    /// <summary>Gets the number of requests in flight to this endpoint (for LEAST_REQUEST).</summary>
    public int ActiveRequests => Volatile.Read(ref _recent) is { } use ? Volatile.Read(ref use.Active) : 0;

    /// <summary>Whether automatic mutual TLS applies on a service port: the endpoint has an identity and its policy does not disable it there.</summary>
    public bool MtlsOn(uint servicePort) => !AutoMtlsOff && MtlsPossible(servicePort);

    /// <summary>Whether mutual TLS can be spoken on a service port (ISTIO_MUTUAL): the endpoint has an identity and its policy does not disable it there.</summary>
    public bool MtlsPossible(uint servicePort)
    {
        if (Identity.Length == 0)
        {
            return false;
        }

        foreach (var port in _ports)
        {
            if (port.ServicePort == servicePort)
            {
                return !port.PlaintextOnly;
            }
        }

        return true;
    }

    /// <summary>
    /// The endpoint's URL for a request: <c>scheme://authority/pathAndQuery</c>. The last one built is kept (a
    /// <see cref="Uri"/> is immutable), so calls that repeat a path — every call of a gRPC method, a fixed REST
    /// resource — reuse it instead of parsing a new one each time.
    /// </summary>
    public Uri UriFor(string scheme, string authority, string pathAndQuery)
    {
        var recent = Recent;
        var last = Volatile.Read(ref recent.LastUri);
        if (last is not null && ReferenceEquals(last.Authority, authority) && string.Equals(last.PathAndQuery, pathAndQuery, StringComparison.Ordinal)
            && string.Equals(last.Scheme, scheme, StringComparison.Ordinal) && last.Uri is Http.WorkloadUri != OutsideMesh)
        {
            return last.Uri;
        }

        // The URL's type carries the endpoint's side of the mesh to the proxy settings below (MeshProxy).
        var text = string.Concat(scheme, "://", authority, pathAndQuery);
        var uri = OutsideMesh ? new Uri(text, UriKind.Absolute) : new Http.WorkloadUri(text);
        Volatile.Write(ref recent.LastUri, new BuiltUri(scheme, authority, pathAndQuery, uri));
        return uri;
    }

    // Made when a request first goes to the endpoint: a mesh of 10,000 endpoints keeps one field each for what only
    // the endpoints it calls need. The next snapshot's view of the same endpoint (same address, first port and
    // identity) takes it over (Adopt): requests in flight, the URL and the metadata it told survive a config push.
    private RecentUse? _recent;

    /// <summary>Gets whether a request has gone to this endpoint (it has state worth carrying to the next snapshot).</summary>
    internal bool InUse => Volatile.Read(ref _recent) is not null;

    /// <summary>Takes over what requests to <paramref name="previous"/> (the same endpoint in the previous snapshot) share.</summary>
    internal void Adopt(EndpointView previous)
    {
        if (Volatile.Read(ref previous._recent) is { } use)
        {
            Interlocked.CompareExchange(ref _recent, use, null);
        }
    }

    /// <summary>
    /// Gets the peer metadata this endpoint answered with last, parsed, or null when it has not answered with any yet:
    /// an instance's metadata does not change while it runs (its identity and labels are fixed), so once known the
    /// caller stops asking for it.
    /// </summary>
    internal Telemetry.PeerMetadata? AnsweredMetadata => Volatile.Read(ref _recent)?.AnsweredMetadata?.Parsed;

    /// <summary>
    /// Returns what the control plane says of this endpoint as a peer of <paramref name="serviceHost"/>: a registered
    /// workload's metadata, as it would tell it itself (Istio's caller falls back to the endpoint's metadata when its
    /// peer told nothing, over plain text for one); null for a ServiceEntry's address or a host not named
    /// <c>name.namespace.svc.*</c>. Kept per endpoint while its labels and service are the same objects, and shared
    /// with what peers told (one label object per distinct metadata, for the metrics store).
    /// </summary>
    internal Telemetry.PeerMetadata? Described(string serviceHost)
    {
        if (!IsWorkload)
        {
            return null;
        }

        var recent = Recent;
        if (Volatile.Read(ref recent.Described) is { } memo && ReferenceEquals(memo.Host, serviceHost) && ReferenceEquals(memo.Labels, Labels))
        {
            return memo.Metadata;
        }

        Telemetry.PeerMetadata? metadata = null;
        var parts = serviceHost.Split('.');
        if (parts.Length >= 4 && parts[2] == "svc")
        {
            var fresh = Telemetry.PeerMetadata.ForWorkload(parts[0], parts[1], Labels);
            metadata = Telemetry.SharedLabels<Telemetry.PeerMetadata>.TryGet(fresh.Encoded, out var shared) ? shared : Telemetry.SharedLabels<Telemetry.PeerMetadata>.Share(fresh.Encoded, fresh);
        }

        Volatile.Write(ref recent.Described, new DescribedPeer(serviceHost, Labels, metadata));
        return metadata;
    }

    internal sealed record DescribedPeer(string Host, IReadOnlyDictionary<string, string> Labels, Telemetry.PeerMetadata? Metadata);

    /// <summary>Gets what requests to this endpoint remember between them.</summary>
    internal RecentUse Recent => Volatile.Read(ref _recent) ?? Interlocked.CompareExchange(ref _recent, new RecentUse(), null) ?? _recent!;

    internal sealed record BuiltUri(string Scheme, string Authority, string PathAndQuery, Uri Uri);

    /// <summary>
    /// What requests to an endpoint share, across snapshots while the endpoint is unchanged: how many are in flight, the
    /// last URL built, the last peer metadata it answered with.
    /// </summary>
    internal sealed class RecentUse
    {
        /// <summary>Requests in flight (LEAST_REQUEST).</summary>
        public int Active;

        /// <summary>The last URL built for the endpoint (immutable, replaced whole).</summary>
        public BuiltUri? LastUri;

        /// <summary>The peer metadata the endpoint answered with last, parsed (the same text on each of its answers).</summary>
        public Telemetry.PeerMetadata.Memo? AnsweredMetadata;

        /// <summary>What the control plane says of the endpoint as a peer (<see cref="Described"/>), for the service and labels it was made for.</summary>
        public DescribedPeer? Described;
    }

    /// <summary>Returns <c>host:targetPort</c> for a service port, or null when the endpoint does not serve it.</summary>
    public string? AuthorityFor(uint servicePort)
    {
        for (var i = 0; i < _ports.Length; i++)
        {
            if (_ports[i].ServicePort == servicePort)
            {
                return AuthorityAt(i);
            }
        }

        return null;
    }

    /// <summary>Returns the port the endpoint listens on for <paramref name="servicePort"/>; null when it has no such port.</summary>
    public int? TargetPortFor(uint servicePort)
    {
        foreach (var port in _ports)
        {
            if (port.ServicePort == servicePort)
            {
                return (int)port.TargetPort;
            }
        }

        return null;
    }

    private string AuthorityAt(int index)
    {
        // Racing threads build equal strings; either one may stay.
        var authorities = Volatile.Read(ref _authorities) ?? Interlocked.CompareExchange(ref _authorities, new string?[_ports.Length], null) ?? _authorities;
        return authorities[index] ??= string.Concat(Host, ":", _ports[index].TargetPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>How an endpoint serves one service port: the port it listens on, and whether it accepts plaintext only.</summary>
/// <param name="ServicePort">Gets the service port.</param>
/// <param name="TargetPort">Gets the port the endpoint listens on.</param>
/// <param name="PlaintextOnly">Gets whether the endpoint disables mutual TLS on this port.</param>
internal readonly record struct PortLayout(uint ServicePort, uint TargetPort, bool PlaintextOnly);

/// <summary>
/// What endpoints of one snapshot have in common, kept once: port layouts, label sets, localities and identity texts.
/// </summary>
internal sealed class EndpointShapes
{
    private static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>(StringComparer.Ordinal);
    private readonly Dictionary<Google.Protobuf.Collections.MapField<string, string>, IReadOnlyDictionary<string, string>> _labels = [];
    private readonly Dictionary<Locality, Locality> _localities = [];
    private readonly Dictionary<string, PortLayout[]> _ports = new(StringComparer.Ordinal);
    private readonly Dictionary<PortLayout, PortLayout[]> _singlePorts = [];
    private readonly Dictionary<string, string> _texts = new(StringComparer.Ordinal);

    /// <summary>Returns the shared port layout equal to <paramref name="ports"/>.</summary>
    public PortLayout[] Ports(Google.Protobuf.Collections.RepeatedField<EndpointPort> ports)
    {
        if (ports.Count == 0)
        {
            return [];
        }

        if (ports.Count == 1)
        {
            var only = new PortLayout(ports[0].ServicePort, ports[0].TargetPort, ports[0].MtlsDisabled);
            if (!_singlePorts.TryGetValue(only, out var single))
            {
                _singlePorts[only] = single = [only];
            }

            return single;
        }

        var key = string.Join(',', ports.Select(p => $"{p.ServicePort}:{p.TargetPort}:{(p.MtlsDisabled ? 1 : 0)}"));
        if (!_ports.TryGetValue(key, out var shared))
        {
            shared = ports.Select(p => new PortLayout(p.ServicePort, p.TargetPort, p.MtlsDisabled)).ToArray();
            _ports[key] = shared;
        }

        return shared;
    }

    /// <summary>Returns one shared instance of equal texts (identities, namespaces).</summary>
    public string Text(string text)
    {
        if (text.Length == 0)
        {
            return string.Empty;
        }

        if (!_texts.TryGetValue(text, out var shared))
        {
            _texts[text] = shared = text;
        }

        return shared;
    }

    public IReadOnlyDictionary<string, string> Labels(Google.Protobuf.Collections.MapField<string, string> labels)
    {
        if (labels.Count == 0)
        {
            return NoLabels;
        }

        if (!_labels.TryGetValue(labels, out var shared))
        {
            shared = new Dictionary<string, string>(labels, StringComparer.Ordinal);
            _labels[labels] = shared;
        }

        return shared;
    }

    public Locality Locality(Locality? locality)
    {
        locality ??= new Locality();
        if (!_localities.TryGetValue(locality, out var shared))
        {
            shared = locality;
            _localities[locality] = shared;
        }

        return shared;
    }
}

/// <summary>Endpoints picked among together: one locality priority level, or one locality share, or all of them.</summary>
/// <param name="Endpoints">Gets the endpoints.</param>
/// <param name="Balancer">Gets the balancer over them.</param>
/// <param name="Weight">Gets the share of the group (distribute mode).</param>
internal sealed record EndpointGroup(EndpointView[] Endpoints, LoadBalancer Balancer, int Weight);

/// <summary>
/// The endpoints a destination (service or subset) spreads over, arranged once per snapshot: locality groups in
/// priority order (or weighted shares), each with its load balancer; and the consistent-hash key, when one is set.
/// </summary>
internal sealed class EndpointSet
{
    private readonly EndpointGroup[] _groups;
    private readonly bool _weighted;
    private readonly int _totalWeight;
    private readonly HashKey? _hashKey;
    private readonly string _sourceKey;
    private OutlierDetection? _outlier;
    private TimeProvider _time = TimeProvider.System;

    public EndpointSet(EndpointView[] endpoints, LoadBalancer balancer)
        : this(endpoints, [new EndpointGroup(endpoints, balancer, 1)], weighted: false, hashKey: null, sourceKey: string.Empty)
    {
    }

    private EndpointSet(EndpointView[] endpoints, EndpointGroup[] groups, bool weighted, HashKey? hashKey, string sourceKey)
    {
        Endpoints = endpoints;
        _groups = groups;
        _weighted = weighted;
        _totalWeight = groups.Sum(g => g.Weight);
        _hashKey = hashKey;
        _sourceKey = sourceKey;
        Balancer = groups.Length > 0 ? groups[0].Balancer : LoadBalancer.Create(null);
    }

    public EndpointView[] Endpoints { get; }

    /// <summary>Gets the sets that <c>portLevelSettings</c> define for single service ports, if any.</summary>
    public FrozenDictionary<uint, EndpointSet>? PortOverrides { get; private set; }

    /// <summary>Gets the outlier detection policy whose health the picks respect, if any.</summary>
    public OutlierDetection? Outlier => _outlier;

    /// <summary>Gets the destination the set's calls go to: limits and their counters, connection pool, TLS.</summary>
    public Upstream Upstream { get; private set; } = Upstream.None;

    /// <summary>Sets the destination's policy while the snapshot is being built: its outlier detection, limits, pool and TLS.</summary>
    public EndpointSet WithUpstream(Upstream upstream, OutlierDetection? outlier, TimeProvider time)
    {
        Upstream = upstream;
        _outlier = outlier;
        _time = time;
        return this;
    }

    /// <summary>Gets the destination's strong session affinity (a Service's persistent-session label), or null.</summary>
    public StickySession? Session { get; private set; }

    /// <summary>Sets the session affinity while the snapshot is being built (never after it is published).</summary>
    public EndpointSet WithSession(StickySession? session)
    {
        Session = session;
        return this;
    }

    /// <summary>
    /// Returns the endpoint of <paramref name="authority"/> for calls to <paramref name="port"/> when it is one of this
    /// set's and usable (not ejected), or null: a session's endpoint, found by what its cookie or header names.
    /// </summary>
    public EndpointView? Pinned(string authority, uint port) =>
        Find(authority, port) is { } endpoint && (_outlier is null || endpoint.Health is null || endpoint.Health.TryUse(_time.GetUtcNow())) ? endpoint : null;

    /// <summary>Returns whether <paramref name="authority"/> is one of this set's endpoints for calls to <paramref name="port"/> (its health aside).</summary>
    public bool Holds(string authority, uint port) => Find(authority, port) is not null;

    // The endpoints by authority for one port, made on a session's first lookup (a set serves one port almost always;
    // another port replaces it). Racing threads build equal indexes; either one may stay.
    private AuthorityIndex? _byAuthority;

    private EndpointView? Find(string authority, uint port)
    {
        var index = Volatile.Read(ref _byAuthority);
        if (index is null || index.Port != port)
        {
            index = new AuthorityIndex(port, Endpoints);
            Volatile.Write(ref _byAuthority, index);
        }

        return index.Endpoints.GetValueOrDefault(authority);
    }

    private sealed class AuthorityIndex(uint port, EndpointView[] endpoints)
    {
        public uint Port { get; } = port;

        public FrozenDictionary<string, EndpointView> Endpoints { get; } = endpoints
            .Select(e => (Authority: e.AuthorityFor(port), Endpoint: e)).Where(e => e.Authority is not null)
            .DistinctBy(e => e.Authority).ToFrozenDictionary(e => e.Authority!, e => e.Endpoint, StringComparer.Ordinal);
    }

    /// <summary>Sets the port-level sets while the snapshot is being built (never after it is published).</summary>
    public EndpointSet WithPortOverrides(FrozenDictionary<uint, EndpointSet>? overrides)
    {
        PortOverrides = overrides;
        return this;
    }

    /// <summary>Returns the set that balances calls to <paramref name="port"/>: its port-level set, or this one.</summary>
    public EndpointSet ForPort(uint port) => PortOverrides is { } overrides && overrides.TryGetValue(port, out var set) ? set : this;

    /// <summary>Gets the balancer of the first group (tells whether the policy is pass-through).</summary>
    public LoadBalancer Balancer { get; }

    /// <summary>Gets the load-balancing policy's name (ROUND_ROBIN, LEAST_REQUEST, RANDOM, PASSTHROUGH, CONSISTENT_HASH), for diagnostics.</summary>
    public string Policy { get; private init; } = "ROUND_ROBIN";

    /// <summary>Gets the groups, in priority order (for diagnostics and tests).</summary>
    public IReadOnlyList<EndpointGroup> Groups => _groups;

    public static EndpointSet Create(EndpointView[] endpoints, string policy, ConsistentHash? hash, LocalitySettings? locality, SourceWorkload source, Warmup? warmup = null, MeshRuntime? clock = null)
    {
        // Unequal weights: in a group each endpoint takes slots in proportion to its weight, so every balancer
        // honours them (consistent hashing places endpoints by key and ignores weights).
        EndpointView[] Slots(EndpointView[] members) =>
            hash is null && members.Length > 1 && members.Any(e => e.Weight != members[0].Weight) ? Weighted(members) : members;

        EndpointGroup Group(EndpointView[] members, int weight)
        {
            var slots = Slots(members);
            return new EndpointGroup(slots, Balancer(slots), weight);
        }

        LoadBalancer Balancer(EndpointView[] members) => hash is not null
            ? new ConsistentHashBalancer(members, hash.MinimumRingSize, hash.MaglevTableSize)
            : warmup is { DurationMs: > 0 } && clock is not null
                ? new WarmupBalancer(LoadBalancer.Create(policy), members, warmup, clock)
                : LoadBalancer.Create(policy);

        var name = hash is not null ? "CONSISTENT_HASH" : policy switch
        {
            "" => "ROUND_ROBIN",
            "LEAST_CONN" => "LEAST_REQUEST",
            _ => policy,
        };
        if (locality is null || endpoints.Length == 0 || policy == "PASSTHROUGH")
        {
            return new EndpointSet(endpoints, [Group(endpoints, 1)], false, HashKey.Create(hash), source.Identity) { Policy = name };
        }

        var distribute = locality.Distribute.FirstOrDefault(d => LocalityPattern.Matches(d.From, source.Locality));
        if (distribute is not null)
        {
            var shares = distribute.To
                .Select(to => (Members: endpoints.Where(e => LocalityPattern.Matches(to.Key, e.Locality)).ToArray(), Weight: (int)to.Value))
                .Where(s => s.Members.Length > 0 && s.Weight > 0)
                .Select(s => Group(s.Members, s.Weight))
                .ToArray();
            if (shares.Length > 0)
            {
                return new EndpointSet(endpoints, shares, true, HashKey.Create(hash), source.Identity) { Policy = name };
            }
        }

        var levels = endpoints.GroupBy(e => LocalityPriority.Of(e, source, locality)).OrderBy(g => g.Key)
            .Select(g => Group(g.ToArray(), 1)).ToArray();
        return new EndpointSet(endpoints, levels, false, HashKey.Create(hash), source.Identity) { Policy = name };
    }

    /// <summary>Picks an endpoint, or returns null when there is none (or the policy is pass-through).</summary>
    public EndpointView? Pick() => Pick(null, null, out _);

    /// <summary>
    /// For a retry with <c>retryRemoteLocalities</c>: the first endpoint not tried yet, walking the locality levels in
    /// priority order, so the retry may leave the caller's locality once its own endpoints are used up.
    /// </summary>
    public EndpointView? PickUntried(IReadOnlyCollection<EndpointView> tried)
    {
        var now = _time.GetUtcNow();
        foreach (var group in _groups)
        {
            foreach (var candidate in group.Endpoints)
            {
                if (!tried.Contains(candidate) && (_outlier is null || candidate.Health is null || candidate.Health.TryUse(now)))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    // Below minHealthPercent of endpoints usable, ejections are ignored (Envoy's panic mode); 0 disables it.
    private bool Panic(OutlierDetection outlier)
    {
        if (outlier.MinHealthPercent == 0)
        {
            return false;
        }

        var healthy = 0;
        foreach (var endpoint in Endpoints)
        {
            healthy += endpoint.Health is { IsEjected: true } ? 0 : 1;
        }

        return healthy * 100 < outlier.MinHealthPercent * Endpoints.Length;
    }

    // Locality levels in order: the first with a usable endpoint serves (so ejecting every local endpoint fails over).
    private EndpointView? PickHealthy(HttpRequestMessage? request, Uri? uri, out string? setCookie)
    {
        setCookie = null;
        var now = _time.GetUtcNow();
        foreach (var group in _groups)
        {
            var tries = group.Endpoints.Length;
            for (var i = 0; i < tries; i++)
            {
                EndpointView? candidate;
                if (i == 0 && _hashKey is not null && request is not null && group.Balancer is ConsistentHashBalancer hashing
                    && _hashKey.TryGetHash(request, uri!, _sourceKey, out var hash, out setCookie))
                {
                    candidate = hashing.PickByHash(group.Endpoints, hash);
                }
                else
                {
                    candidate = group.Balancer.Pick(group.Endpoints);
                }

                if (candidate is not null && (candidate.Health is null || candidate.Health.TryUse(now)))
                {
                    return candidate;
                }
            }

            foreach (var candidate in group.Endpoints)
            {
                if (candidate.Health is null || candidate.Health.TryUse(now))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    // Weights reduced by their greatest common divisor, the whole kept under 10,000 slots.
    private static EndpointView[] Weighted(EndpointView[] endpoints)
    {
        var divisor = endpoints.Select(e => e.Weight).Aggregate(Gcd);
        var total = endpoints.Sum(e => (long)(e.Weight / divisor));
        var scale = total > 10_000 ? 10_000.0 / total : 1.0;
        var slots = new List<(EndpointView Endpoint, double Position)>();
        foreach (var endpoint in endpoints)
        {
            // Each endpoint's slots are spread evenly over [0, 1): round robin never runs through one in a burst.
            var count = Math.Max(1, (int)Math.Round(endpoint.Weight / divisor * scale));
            for (var i = 0; i < count; i++)
            {
                slots.Add((endpoint, (i + 0.5) / count));
            }
        }

        return slots.OrderBy(s => s.Position).Select(s => s.Endpoint).ToArray();
    }

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);

    /// <summary>
    /// Picks an endpoint for <paramref name="request"/>: the first locality level (or a weighted share), then by the
    /// consistent-hash key when the request carries one. <paramref name="setCookie"/> is a cookie to hand back to the
    /// caller when the hash cookie was missing and is to be generated.
    /// </summary>
    public EndpointView? Pick(HttpRequestMessage? request, Uri? uri, out string? setCookie)
    {
        setCookie = null;
        if (_groups.Length == 0)
        {
            return null;
        }

        if (_outlier is { } outlier && !Panic(outlier))
        {
            return PickHealthy(request, uri, out setCookie);
        }

        var group = _groups[0];
        if (_weighted && _groups.Length > 1)
        {
            var roll = Random.Shared.Next(_totalWeight);
            foreach (var candidate in _groups)
            {
                group = candidate;
                roll -= candidate.Weight;
                if (roll < 0)
                {
                    break;
                }
            }
        }

        if (group.Endpoints.Length == 0)
        {
            return null;
        }

        if (_hashKey is not null && request is not null && group.Balancer is ConsistentHashBalancer hashing
            && _hashKey.TryGetHash(request, uri!, _sourceKey, out var hash, out setCookie))
        {
            return hashing.PickByHash(group.Endpoints, hash);
        }

        return group.Balancer.Pick(group.Endpoints);
    }
}

/// <summary>Where the consistent-hash key of a request comes from.</summary>
internal sealed class HashKey
{
    private readonly ConsistentHash _config;

    // What follows the value of a generated cookie, made once: "; Max-Age=60; Path=/; HttpOnly; SameSite=Lax".
    private readonly string _cookieAttributes = string.Empty;

    private HashKey(ConsistentHash config)
    {
        _config = config;
        if (config.KeyCase == ConsistentHash.KeyOneofCase.Cookie)
        {
            var cookie = config.Cookie;
            _cookieAttributes = (cookie.TtlMs > 0 ? $"; Max-Age={cookie.TtlMs / 1000}" : string.Empty)
                + (cookie.Path.Length > 0 ? $"; Path={cookie.Path}" : string.Empty) + "; HttpOnly"
                + string.Concat(cookie.Attributes.Select(a => a.Value.Length > 0 ? $"; {a.Name}={a.Value}" : $"; {a.Name}"));
        }
    }

    public static HashKey? Create(ConsistentHash? config) => config is null ? null : new HashKey(config);

    public bool TryGetHash(HttpRequestMessage request, Uri uri, string sourceKey, out ulong hash, out string? setCookie)
    {
        setCookie = null;
        string? key = _config.KeyCase switch
        {
            ConsistentHash.KeyOneofCase.HeaderName => RequestMatcher.HeaderValue(request, _config.HeaderName),
            ConsistentHash.KeyOneofCase.QueryParameterName => RequestMatcher.QueryValue(uri.Query, _config.QueryParameterName),
            ConsistentHash.KeyOneofCase.UseSourceIp => sourceKey,
            ConsistentHash.KeyOneofCase.Cookie => CookieValue(request, _config.Cookie.Name),
            _ => null,
        };

        if (key is null && _config.KeyCase == ConsistentHash.KeyOneofCase.Cookie && _config.Cookie.HasTtlMs)
        {
            // As Envoy: a missing cookie is generated, the request is placed by it, and the caller is handed it.
            key = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.NextInt64()));
            setCookie = $"{_config.Cookie.Name}=\"{key}\"{_cookieAttributes}";
        }

        hash = key is null ? 0 : ConsistentHashBalancer.Hash(key);
        return key is not null;
    }

    /// <summary>Returns the value of the request's cookie <paramref name="name"/> (quotes removed), or null.</summary>
    internal static string? CookieValue(HttpRequestMessage request, string name)
    {
        if (!request.Headers.NonValidated.TryGetValues("Cookie", out var values))
        {
            return null;
        }

        foreach (var header in values)
        {
            // Split as spans: only the value found is a string of its own.
            var text = header.AsSpan();
            foreach (var range in text.Split(';'))
            {
                var pair = text[range].Trim();
                var equals = pair.IndexOf('=');
                if (equals > 0 && pair[..equals].SequenceEqual(name))
                {
                    return pair[(equals + 1)..].Trim('"').ToString();
                }
            }
        }

        return null;
    }
}
