using MeshKit.Telemetry;

namespace MeshKit.Http;

/// <summary>
/// Who answered a call, as mutual TLS verified it: the attempt that got the response leaves it here for the caller's
/// Istio metrics and access log (and routing, the route's <c>statPrefix</c> for its per-route metrics). One per thread, rented for the call (a request's option dictionary and a boxed pair
/// per call otherwise).
/// </summary>
internal sealed class Answer
{
    /// <summary>Gets the server's verified SPIFFE identity; null when the call did not go over mutual TLS.</summary>
    public string? Principal { get; private set; }

    /// <summary>Gets the metadata the server told about itself, when its identity backs it.</summary>
    public PeerMetadata? Metadata { get; private set; }

    /// <summary>
    /// Gets the service the call was routed to (a route's destination host), which Istio reports as the destination
    /// service (the upstream cluster's), though the application called another host.
    /// </summary>
    public string? RoutedTo { get; private set; }

    /// <summary>Gets the matched block's <c>statPrefix</c> when the call's route has one and per-route metrics are listened to.</summary>
    public string? StatPrefix { get; set; }

    /// <summary>Sets who answered: its verified identity (null over plain text), its metadata when known, and the service routed to.</summary>
    public void Set(string? principal, PeerMetadata? metadata, string routedTo)
    {
        Principal = principal;
        Metadata = metadata;
        RoutedTo = routedTo;
    }

    public void Clear()
    {
        Principal = null;
        Metadata = null;
        RoutedTo = null;
        StatPrefix = null;
    }
}
