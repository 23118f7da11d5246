namespace MeshKit.Config.Model;

/// <summary>Istio's <c>HTTPRetry</c>.</summary>
/// <param name="Attempts">Gets <c>attempts</c>: retries after the first try.</param>
/// <param name="PerTryTimeout">Gets <c>perTryTimeout</c>.</param>
/// <param name="RetryOn">Gets <c>retryOn</c>, split at commas.</param>
/// <param name="RetryRemoteLocalities">Gets <c>retryRemoteLocalities</c>.</param>
public sealed record RetrySpec(int Attempts, TimeSpan? PerTryTimeout, IReadOnlyList<string> RetryOn, bool? RetryRemoteLocalities)
{
    /// <summary>Gets <c>backoff</c>: the base interval of the retries' exponential backoff (Envoy's default: 25 ms).</summary>
    public TimeSpan? Backoff { get; init; }

    /// <summary>Gets <c>retryIgnorePreviousHosts</c>: whether retries avoid the endpoints already tried (default: they do).</summary>
    public bool? RetryIgnorePreviousHosts { get; init; }
}

/// <summary>Istio's <c>HTTPFaultInjection</c>.</summary>
/// <param name="Delay">Gets <c>delay</c>.</param>
/// <param name="Abort">Gets <c>abort</c>.</param>
public sealed record FaultSpec(FaultDelaySpec? Delay, FaultAbortSpec? Abort);

/// <summary><c>fault.delay</c>.</summary>
/// <param name="FixedDelay">Gets <c>fixedDelay</c>.</param>
/// <param name="Percentage">Gets <c>percentage.value</c> (0–100; 100 when absent).</param>
public sealed record FaultDelaySpec(TimeSpan FixedDelay, double Percentage);

/// <summary><c>fault.abort</c>.</summary>
/// <param name="HttpStatus">Gets <c>httpStatus</c>.</param>
/// <param name="GrpcStatus">Gets <c>grpcStatus</c>.</param>
/// <param name="Percentage">Gets <c>percentage.value</c> (0–100; 100 when absent).</param>
public sealed record FaultAbortSpec(int? HttpStatus, string? GrpcStatus, double Percentage);

/// <summary>A mirror target (<c>mirror</c> + <c>mirrorPercentage</c>, or an entry of <c>mirrors</c>).</summary>
/// <param name="Destination">Gets the destination.</param>
/// <param name="Percentage">Gets the share of requests mirrored (0–100; 100 when absent).</param>
public sealed record MirrorSpec(Destination Destination, double Percentage);

/// <summary>Istio's <c>CorsPolicy</c>.</summary>
public sealed record CorsPolicySpec
{
    /// <summary>Gets <c>allowOrigins</c> (and the deprecated <c>allowOrigin</c> as exact matches).</summary>
    public IReadOnlyList<StringMatchSpec> AllowOrigins { get; init; } = [];

    /// <summary>Gets <c>allowMethods</c>.</summary>
    public IReadOnlyList<string> AllowMethods { get; init; } = [];

    /// <summary>Gets <c>allowHeaders</c>.</summary>
    public IReadOnlyList<string> AllowHeaders { get; init; } = [];

    /// <summary>Gets <c>exposeHeaders</c>.</summary>
    public IReadOnlyList<string> ExposeHeaders { get; init; } = [];

    /// <summary>Gets <c>maxAge</c>.</summary>
    public TimeSpan? MaxAge { get; init; }

    /// <summary>Gets <c>allowCredentials</c>.</summary>
    public bool? AllowCredentials { get; init; }

    /// <summary>Gets <c>unmatchedPreflights</c>: FORWARD (default) or IGNORE.</summary>
    public string? UnmatchedPreflights { get; init; }

    /// <summary>
    /// Gets whether, with credentials allowed, a <c>*</c> among the methods or headers answers a preflight with what
    /// it asks for, and a <c>*</c> among the exposed headers exposes the response's own (Gateway API's CORS filter, as
    /// browsers take <c>*</c> literally when credentials are allowed); a VirtualService's lists are sent as written,
    /// as Envoy sends them.
    /// </summary>
    public bool EchoWildcards { get; init; }
}

/// <summary>Istio's <c>ConnectionPoolSettings</c>.</summary>
/// <param name="Tcp">Gets <c>tcp</c>.</param>
/// <param name="Http">Gets <c>http</c>.</param>
public sealed record ConnectionPoolSpec(TcpPoolSpec? Tcp, HttpPoolSpec? Http);

/// <summary><c>connectionPool.tcp</c>.</summary>
public sealed record TcpPoolSpec
{
    /// <summary>Gets <c>maxConnections</c>.</summary>
    public int? MaxConnections { get; init; }

    /// <summary>Gets <c>connectTimeout</c>.</summary>
    public TimeSpan? ConnectTimeout { get; init; }

    /// <summary>Gets <c>tcpKeepalive.time</c>.</summary>
    public TimeSpan? KeepaliveTime { get; init; }

    /// <summary>Gets <c>tcpKeepalive.interval</c>.</summary>
    public TimeSpan? KeepaliveInterval { get; init; }

    /// <summary>Gets <c>tcpKeepalive.probes</c>.</summary>
    public int? KeepaliveProbes { get; init; }

    /// <summary>Gets <c>maxConnectionDuration</c>.</summary>
    public TimeSpan? MaxConnectionDuration { get; init; }

    /// <summary>Gets <c>idleTimeout</c>.</summary>
    public TimeSpan? IdleTimeout { get; init; }
}

/// <summary><c>connectionPool.http</c>.</summary>
public sealed record HttpPoolSpec
{
    /// <summary>Gets <c>http1MaxPendingRequests</c>.</summary>
    public int? Http1MaxPendingRequests { get; init; }

    /// <summary>Gets <c>http2MaxRequests</c>.</summary>
    public int? Http2MaxRequests { get; init; }

    /// <summary>Gets <c>maxRequestsPerConnection</c>.</summary>
    public int? MaxRequestsPerConnection { get; init; }

    /// <summary>Gets <c>maxRetries</c>.</summary>
    public int? MaxRetries { get; init; }

    /// <summary>Gets <c>idleTimeout</c>.</summary>
    public TimeSpan? IdleTimeout { get; init; }

    /// <summary>Gets <c>h2UpgradePolicy</c>: DEFAULT, DO_NOT_UPGRADE or UPGRADE.</summary>
    public string? H2UpgradePolicy { get; init; }

    /// <summary>Gets <c>useClientProtocol</c>.</summary>
    public bool? UseClientProtocol { get; init; }

    /// <summary>Gets <c>maxConcurrentStreams</c>.</summary>
    public int? MaxConcurrentStreams { get; init; }
}

/// <summary>Istio's <c>OutlierDetection</c>.</summary>
public sealed record OutlierDetectionSpec
{
    /// <summary>Gets <c>consecutive5xxErrors</c> (or the deprecated <c>consecutiveErrors</c>).</summary>
    public int? Consecutive5xxErrors { get; init; }

    /// <summary>Gets <c>consecutiveGatewayErrors</c>.</summary>
    public int? ConsecutiveGatewayErrors { get; init; }

    /// <summary>Gets <c>consecutiveLocalOriginFailures</c>.</summary>
    public int? ConsecutiveLocalOriginFailures { get; init; }

    /// <summary>Gets <c>splitExternalLocalOriginErrors</c>.</summary>
    public bool SplitExternalLocalOriginErrors { get; init; }

    /// <summary>Gets <c>interval</c>.</summary>
    public TimeSpan? Interval { get; init; }

    /// <summary>Gets <c>baseEjectionTime</c>.</summary>
    public TimeSpan? BaseEjectionTime { get; init; }

    /// <summary>Gets <c>maxEjectionPercent</c>.</summary>
    public int? MaxEjectionPercent { get; init; }

    /// <summary>Gets <c>minHealthPercent</c>.</summary>
    public int? MinHealthPercent { get; init; }
}

/// <summary>Istio's <c>ClientTLSSettings</c>.</summary>
public sealed record ClientTlsSpec
{
    /// <summary>Gets <c>mode</c>: DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL.</summary>
    public string Mode { get; init; } = "DISABLE";

    /// <summary>Gets <c>clientCertificate</c>.</summary>
    public string? ClientCertificate { get; init; }

    /// <summary>Gets <c>privateKey</c>.</summary>
    public string? PrivateKey { get; init; }

    /// <summary>Gets <c>caCertificates</c>.</summary>
    public string? CaCertificates { get; init; }

    /// <summary>Gets <c>caCrl</c>: the revocation lists the server's chain is checked against.</summary>
    public string? CaCrl { get; init; }

    /// <summary>Gets <c>credentialName</c>.</summary>
    public string? CredentialName { get; init; }

    /// <summary>Gets <c>subjectAltNames</c>.</summary>
    public IReadOnlyList<string> SubjectAltNames { get; init; } = [];

    /// <summary>Gets <c>sni</c>.</summary>
    public string? Sni { get; init; }

    /// <summary>Gets <c>insecureSkipVerify</c>.</summary>
    public bool? InsecureSkipVerify { get; init; }
}

/// <summary>Istio's <c>RetryBudget</c>.</summary>
/// <param name="Percent">Gets <c>percent</c> of active requests that may be retries.</param>
/// <param name="MinRetryConcurrency">Gets <c>minRetryConcurrency</c>.</param>
public sealed record RetryBudgetSpec(double? Percent, int? MinRetryConcurrency);

/// <summary>One entry of <c>portLevelSettings</c>: a traffic policy for one destination port.</summary>
/// <param name="Port">Gets <c>port.number</c>.</param>
/// <param name="Policy">Gets the policy for that port.</param>
public sealed record PortTrafficPolicy(uint Port, TrafficPolicy Policy);
