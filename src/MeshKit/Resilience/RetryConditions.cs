using System.Net;

namespace MeshKit.Resilience;

/// <summary>How an attempt failed, as far as retry conditions care.</summary>
internal enum AttemptFailure
{
    None,

    /// <summary>The connection could not be made: the request never reached the server.</summary>
    ConnectFailure,

    /// <summary>HTTP/2 REFUSED_STREAM: the server did not process the request.</summary>
    RefusedStream,

    /// <summary>The connection broke after the request was (or may have been) sent.</summary>
    Reset,

    /// <summary>The per-try timeout fired.</summary>
    PerTryTimeout,
}

/// <summary>
/// A route's <c>retryOn</c>, compiled: which outcomes are retried, with Envoy's meaning of each condition, and the
/// safety rule for requests that are not idempotent.
/// </summary>
internal sealed class RetryConditions
{
    private readonly bool _5xx;
    private readonly bool _gatewayError;
    private readonly bool _reset;
    private readonly bool _connectFailure;
    private readonly bool _refusedStream;
    private readonly bool _retriable4xx;
    private readonly HashSet<int> _statusCodes;
    private readonly HashSet<int> _grpcStatuses = [];
    private readonly HashSet<string> _conditions;

    public RetryConditions(IEnumerable<string> retryOn, IEnumerable<uint> statusCodes)
    {
        var conditions = _conditions = retryOn.ToHashSet(StringComparer.Ordinal);
        _5xx = conditions.Contains("5xx");
        _gatewayError = conditions.Contains("gateway-error");
        _reset = conditions.Contains("reset") || conditions.Contains("reset-before-request");
        _connectFailure = conditions.Contains("connect-failure");
        _refusedStream = conditions.Contains("refused-stream");
        _retriable4xx = conditions.Contains("retriable-4xx");
        _statusCodes = conditions.Contains("retriable-status-codes") || statusCodes.Any() ? statusCodes.Select(c => (int)c).ToHashSet() : [];
        foreach (var (name, code) in new[] { ("cancelled", 1), ("deadline-exceeded", 4), ("resource-exhausted", 8), ("internal", 13), ("unavailable", 14) })
        {
            if (conditions.Contains(name))
            {
                _grpcStatuses.Add(code);
            }
        }
    }

    /// <summary>
    /// Istio's default policy for routes without <c>retries</c> (and for a <c>retries</c> without <c>retryOn</c>). Istio
    /// releases since mid-2024 no longer list 503 among its retriable status codes (an application's 503 is not always
    /// safe to repeat), and neither does MeshKit: name it (<c>retryOn: 503</c>, <c>gateway-error</c>) to retry it.
    /// </summary>
    public static RetryConditions IstioDefault { get; } =
        new(["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"], []);

    /// <summary>
    /// These conditions and more, as Envoy merges a request's <c>x-envoy-retry-on</c> into its route's; the codes added
    /// count where <c>retriable-status-codes</c> is among the conditions (or the route named codes), as Envoy's do.
    /// </summary>
    public RetryConditions With(IEnumerable<string> retryOn, IEnumerable<uint> statusCodes)
    {
        var conditions = _conditions.Concat(retryOn).ToArray();
        var codesCount = _statusCodes.Count > 0 || conditions.Contains("retriable-status-codes", StringComparer.Ordinal);
        return new RetryConditions(conditions, codesCount ? _statusCodes.Select(c => (uint)c).Concat(statusCodes) : []);
    }

    public bool ShouldRetry(HttpResponseMessage? response, AttemptFailure failure, bool idempotent)
    {
        // A request that is not idempotent may already have had its effect, unless it never reached the server.
        if (!idempotent && failure is not (AttemptFailure.ConnectFailure or AttemptFailure.RefusedStream))
        {
            return false;
        }

        switch (failure)
        {
            case AttemptFailure.ConnectFailure:
                return _connectFailure || _5xx || _gatewayError;
            case AttemptFailure.RefusedStream:
                return _refusedStream || _5xx;
            case AttemptFailure.Reset:
                return _reset || _5xx;
            case AttemptFailure.PerTryTimeout:
                return _5xx || _gatewayError;
        }

        if (response is null)
        {
            return false;
        }

        var status = (int)response.StatusCode;
        if ((_5xx && status >= 500) || (_gatewayError && status is 502 or 503 or 504) || (_retriable4xx && status == 409) || _statusCodes.Contains(status))
        {
            return true;
        }

        return _grpcStatuses.Count > 0 && GrpcStatus(response) is { } grpc && _grpcStatuses.Contains(grpc);
    }

    // gRPC status of a trailers-only response (the status is in the headers), as Envoy's retry policy reads it.
    private static int? GrpcStatus(HttpResponseMessage response) =>
        response.Headers.NonValidated.TryGetValues("grpc-status", out var values) && int.TryParse(values.ToString(), out var code) ? code : null;

    public static bool IsIdempotent(HttpMethod method) =>
        method == HttpMethod.Get || method == HttpMethod.Head || method == HttpMethod.Options || method == HttpMethod.Trace
        || method == HttpMethod.Put || method == HttpMethod.Delete;

    public static AttemptFailure Classify(Exception exception) => exception switch
    {
        HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError } => AttemptFailure.ConnectFailure,
        HttpRequestException { InnerException: HttpProtocolException { ErrorCode: 0x7 } } => AttemptFailure.RefusedStream,
        HttpProtocolException { ErrorCode: 0x7 } => AttemptFailure.RefusedStream,
        HttpRequestException or IOException => AttemptFailure.Reset,
        Polly.Timeout.TimeoutRejectedException => AttemptFailure.PerTryTimeout,
        _ => AttemptFailure.None,
    };

    /// <summary>
    /// The longest wait a server's <c>Retry-After</c> or <c>grpc-retry-pushback-ms</c> is taken for: Envoy's default
    /// <c>max_interval</c> of its rate-limited backoff. A longer one is discarded, as Envoy discards it, and the retry
    /// waits the usual backoff: a server cannot park a call for an hour (on a route without a timeout, Istio's
    /// default, nothing else would end it).
    /// </summary>
    internal static readonly TimeSpan MaxPushback = TimeSpan.FromSeconds(300);

    /// <summary>
    /// The delay a server asked for: <c>Retry-After</c> (seconds or date) or <c>grpc-retry-pushback-ms</c>; null when it
    /// asked for none, or for more than <see cref="MaxPushback"/>.
    /// </summary>
    public static TimeSpan? Pushback(HttpResponseMessage? response, TimeProvider time)
    {
        if (response is null)
        {
            return null;
        }

        TimeSpan? asked = null;
        if (response.Headers.RetryAfter is { } retryAfter)
        {
            if (retryAfter.Delta is { } delta)
            {
                asked = delta;
            }
            else if (retryAfter.Date is { } date)
            {
                var wait = date - time.GetUtcNow();
                asked = wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
            }
        }

        if (asked is null && response.Headers.NonValidated.TryGetValues(GrpcPushbackHeader, out var values)
            && long.TryParse(values.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ms))
        {
            asked = TimeSpan.FromMilliseconds(Math.Min(ms, (long)MaxPushback.TotalMilliseconds + 1));
        }

        return asked <= MaxPushback ? asked : null;
    }

    /// <summary>
    /// Whether the server said not to retry: a <c>grpc-retry-pushback-ms</c> that is negative or not a number, which
    /// gRPC's retry design (A6) defines as "do not retry". Read only for an outcome the conditions would retry.
    /// </summary>
    public static bool ServerRefusesRetry(HttpResponseMessage? response) =>
        response is not null && response.Headers.NonValidated.TryGetValues(GrpcPushbackHeader, out var values)
        && !long.TryParse(values.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _);

    private const string GrpcPushbackHeader = "grpc-retry-pushback-ms";

    internal static bool HasGrpcContent(HttpRequestMessage request) =>
        request.Content?.Headers.ContentType?.MediaType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    internal static HttpStatusCode? Status(HttpResponseMessage? response) => response?.StatusCode;
}
