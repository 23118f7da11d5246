using MeshKit.Telemetry;

namespace MeshKit.Http;

/// <summary>
/// Who answered a call, as mutual TLS verified it: the attempt that got the response leaves it here for the caller's
/// Istio metrics and access log. One per thread, rented for the call (a request's option dictionary and a boxed pair
/// per call otherwise).
/// </summary>
internal sealed class Answer
{
    /// <summary>Gets the server's verified SPIFFE identity; null when the call did not go over mutual TLS.</summary>
    public string? Principal { get; private set; }

    /// <summary>Gets the metadata the server told about itself, when its identity backs it.</summary>
    public PeerMetadata? Metadata { get; private set; }

    /// <summary>Sets who answered: its verified identity (null over plain text) and its metadata, when known.</summary>
    public void Set(string? principal, PeerMetadata? metadata)
    {
        Principal = principal;
        Metadata = metadata;
    }

    public void Clear()
    {
        Principal = null;
        Metadata = null;
    }
}
