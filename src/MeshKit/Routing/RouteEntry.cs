using MeshKit.LoadBalancing;

namespace MeshKit.Routing;

/// <summary>
/// A compiled HTTP route: its match blocks (any may match), and what it does: weighted destinations, or a redirect, or a
/// direct response; plus header edits and rewrites. Immutable; built once per config version.
/// </summary>
internal sealed class RouteEntry
{
    public RouteEntry(string name, RequestMatcher[] matchers, RouteTarget[] targets, RouteActions actions, Resilience.RouteResilience? resilience = null, (RouteTarget Target, double Percentage)[]? mirrors = null, int unknownDestinationStatus = 503)
    {
        UnknownDestinationStatus = unknownDestinationStatus;
        Resilience = resilience;
        Mirrors = mirrors ?? [];
        Name = name;
        Matchers = matchers;
        Targets = targets;
        Actions = actions;
        TotalWeight = targets.Sum(t => t.Weight);
    }

    public string Name { get; }

    /// <summary>Gets the status of a call routed to a destination the mesh does not know (503; 500 for a Gateway API route).</summary>
    public int UnknownDestinationStatus { get; }

    /// <summary>Gets the route's strong session affinity (an HTTPRoute rule's sessionPersistence), over its destination's.</summary>
    public LoadBalancing.StickySession? Session { get; init; }

    public RequestMatcher[] Matchers { get; }

    public RouteTarget[] Targets { get; }

    public RouteActions Actions { get; }

    /// <summary>Gets the timeout, retry and fault policy (null: send once, no timeout).</summary>
    public Resilience.RouteResilience? Resilience { get; }

    /// <summary>Gets where copies of the requests go, and which share of them.</summary>
    public (RouteTarget Target, double Percentage)[] Mirrors { get; }

    public int TotalWeight { get; }

    /// <summary>Returns the match block that matched (null matcher for a route without blocks), or false.</summary>
    public bool TryMatch(HttpRequestMessage request, Uri uri, out RequestMatcher? matched) => TryMatch(new OutboundRequest(request, uri), out matched);

    public bool TryMatch<TRequest>(in TRequest request, out RequestMatcher? matched)
        where TRequest : struct, IRequestView
    {
        matched = null;
        if (Matchers.Length == 0)
        {
            return true;
        }

        foreach (var matcher in Matchers)
        {
            if (matcher.Matches(request))
            {
                matched = matcher;
                return true;
            }
        }

        return false;
    }

    /// <summary>Picks a destination by weight; destinations of weight 0 are never picked.</summary>
    public RouteTarget? PickTarget()
    {
        if (Targets.Length == 1)
        {
            return Targets[0].Weight > 0 ? Targets[0] : null;
        }

        if (TotalWeight <= 0)
        {
            return null;
        }

        var roll = Random.Shared.Next(TotalWeight);
        foreach (var target in Targets)
        {
            roll -= target.Weight;
            if (roll < 0)
            {
                return target;
            }
        }

        return Targets[^1];
    }
}

/// <summary>A route destination resolved against the clusters of the same snapshot.</summary>
/// <param name="Host">Gets the destination host.</param>
/// <param name="Subset">Gets the subset name, or empty.</param>
/// <param name="Port">Gets the destination port, or 0 to take it from the request.</param>
/// <param name="Weight">Gets the weight.</param>
/// <param name="Endpoints">Gets the endpoint set, or null when the cluster or subset does not exist.</param>
/// <param name="ServicePorts">Gets the destination service's ports.</param>
/// <param name="RequestHeaders">Gets the destination's request header edits.</param>
/// <param name="ResponseHeaders">Gets the destination's response header edits.</param>
internal sealed record RouteTarget(
    string Host, string Subset, uint Port, int Weight, EndpointSet? Endpoints, uint[] ServicePorts,
    HeaderEdits? RequestHeaders = null, HeaderEdits? ResponseHeaders = null);
