using MeshKit.Protocol.V1;

namespace MeshKit.LoadBalancing;

/// <summary>
/// One destination of a service, a subset and port as a DestinationRule's policy resolves them (an Envoy cluster):
/// the limits on requests in flight to it and their counters, its connection pool, and how it speaks TLS. Built once
/// per snapshot; the counters and the pool outlive snapshots while the destination exists.
/// </summary>
/// <param name="Counters">Gets the requests and retries in flight to the destination; null when it has no limits to count them against.</param>
/// <param name="Limits">Gets the request and retry limits (connectionPool, retryBudget), if any.</param>
/// <param name="Transport">Gets the destination's own connection pool, when its policy sets connection settings or TLS origination.</param>
/// <param name="TlsMode">Gets <c>tls.mode</c>: empty (automatic mutual TLS), ISTIO_MUTUAL, DISABLE, SIMPLE or MUTUAL.</param>
internal sealed record Upstream(ClusterRuntime? Counters, ConnectionLimits? Limits = null, Http.ClusterTransports.Transport? Transport = null, string TlsMode = "")
{
    /// <summary>Gets the destination of a service no DestinationRule sets a policy for: automatic mutual TLS, no limits, the client's pool.</summary>
    public static Upstream None { get; } = new(Counters: null);
}
