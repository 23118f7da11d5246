namespace MeshKit.Config.Model;

/// <summary>
/// Gateway API's <c>HTTPRoute</c> or <c>GRPCRoute</c> (<c>gateway.networking.k8s.io</c>, <see cref="ConfigResource.Kind"/>)
/// attached to Services: Gateway API for the mesh (GEP-1426, "GAMMA"), Istio's other way to route the mesh's calls.
/// Its rules are read into the routes of the VirtualService model, one per match, each with the precedence Gateway API
/// gives it among every route of the Service.
/// </summary>
public sealed record GatewayRouteResource : ConfigResource
{
    /// <summary>Gets the Services the route is attached to (<c>spec.parentRefs</c> of kind <c>Service</c>).</summary>
    public IReadOnlyList<ServiceParentRef> Parents { get; init; } = [];

    /// <summary>Gets the rules' matches, in the order written (rule by rule, match by match).</summary>
    public IReadOnlyList<GatewayRouteRule> Rules { get; init; } = [];

    /// <summary>Gets <c>metadata.creationTimestamp</c>: of two routes' equally specific matches, the older route's comes first.</summary>
    public DateTimeOffset? CreationTimestamp { get; init; }
}

/// <summary>
/// A <c>parentRefs</c> entry naming a Service, or an Istio ServiceEntry (Istio's extension of GEP-1426, for hosts
/// outside the cluster): the calls to it (to one of its ports) the route takes.
/// </summary>
/// <param name="Name">Gets the Service's (or ServiceEntry's) name.</param>
/// <param name="Namespace">Gets its namespace (the route's when not given).</param>
/// <param name="Port">Gets <c>port</c>: the route takes calls to that port only; null for every port.</param>
/// <param name="Path">Gets the entry's field path (<c>spec.parentRefs[0]</c>), for findings.</param>
public sealed record ServiceParentRef(string Name, string Namespace, uint? Port, string Path)
{
    /// <summary>Gets whether the parent is a ServiceEntry (the route takes the calls to its hosts), not a Service.</summary>
    public bool IsServiceEntry { get; init; }

    /// <summary>
    /// Gets <c>sectionName</c>: the name of the Service's (or ServiceEntry's) port whose calls the route takes, as
    /// Gateway API reads it for a Service; null when not given. With <see cref="Port"/>, both must name one port.
    /// </summary>
    public string? SectionName { get; init; }
}

/// <summary>One match of one rule of an HTTPRoute, as a route of the VirtualService model.</summary>
/// <param name="Route">Gets the route: the match, the rule's filters, backends and timeouts.</param>
/// <param name="Precedence">Gets how specific the match is (Gateway API orders matches by it before anything else).</param>
/// <param name="Rule">Gets the rule's index in <c>spec.rules</c> (the last tie-break, within one route).</param>
public sealed record GatewayRouteRule(HttpRouteSpec Route, MatchPrecedence Precedence, int Rule);

/// <summary>
/// How specific a route's match is, as Gateway API orders them across every route of a Service. An HTTPRoute's: an
/// exact path, then a regular expression, then a path prefix, the longer path first; then a method match; then more
/// header matches; then more query parameter matches. A GRPCRoute's: the longer service, then the longer method, then
/// more header matches. Lower sorts first.
/// </summary>
/// <param name="PathKind">Gets 0 for an exact path (and every GRPCRoute match), 1 for a regular expression, 2 for a prefix.</param>
/// <param name="PathLength">Gets the length of the path value (a GRPCRoute's: of the service).</param>
/// <param name="MethodLength">Gets the length of a GRPCRoute's method; 0 for an HTTPRoute's match.</param>
/// <param name="Method">Gets whether an HTTPRoute's match names a method.</param>
/// <param name="Headers">Gets the number of header matches.</param>
/// <param name="QueryParams">Gets the number of query parameter matches.</param>
public readonly record struct MatchPrecedence(int PathKind, int PathLength, int MethodLength, bool Method, int Headers, int QueryParams) : IComparable<MatchPrecedence>
{
    /// <inheritdoc/>
    public int CompareTo(MatchPrecedence other)
    {
        var c = PathKind.CompareTo(other.PathKind);
        c = c != 0 ? c : other.PathLength.CompareTo(PathLength);
        c = c != 0 ? c : other.MethodLength.CompareTo(MethodLength);
        c = c != 0 ? c : other.Method.CompareTo(Method);
        c = c != 0 ? c : other.Headers.CompareTo(Headers);
        return c != 0 ? c : other.QueryParams.CompareTo(QueryParams);
    }
}

/// <summary>Where a VirtualService of the model came from when an HTTPRoute made it (one per route and Service).</summary>
/// <param name="Producer">Gets whether the route is in the Service's namespace (it applies to every caller); otherwise it is a consumer route, for its own namespace's callers only, which it routes instead of the producer's.</param>
/// <param name="Created">Gets the route's creation time, when known.</param>
/// <param name="Precedence">Gets each route's precedence (<see cref="VirtualService.Http"/>, in order).</param>
/// <param name="Rules">Gets each route's rule index (<see cref="VirtualService.Http"/>, in order).</param>
/// <param name="ParentPath">Gets the <c>parentRefs</c> entry's field path.</param>
/// <param name="ParentPort">Gets the parent's <c>port</c>: the Service port whose calls the route takes; null for every port.</param>
public sealed record GatewayRouteOrigin(bool Producer, DateTimeOffset? Created, IReadOnlyList<MatchPrecedence> Precedence, IReadOnlyList<int> Rules, string ParentPath, uint? ParentPort)
{
    /// <summary>Gets why the parent takes no calls though it exists (a <c>sectionName</c> that names none of its ports); null when it does.</summary>
    public string? Unresolved { get; init; }
}
