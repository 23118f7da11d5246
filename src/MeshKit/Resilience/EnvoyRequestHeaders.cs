using System.Globalization;
using System.Net.Http.Headers;

namespace MeshKit.Resilience;

/// <summary>
/// What a request's own <c>x-envoy-*</c> headers change of its route's timeout and retries, as Envoy's router reads
/// them from the application behind a sidecar (Istio documents <c>x-envoy-upstream-rq-timeout-ms</c> as the per-request
/// override of a route's timeout). A value Envoy would not parse is ignored, as Envoy ignores it.
/// </summary>
internal readonly record struct ResilienceOverrides
{
    /// <summary>Gets the route timeout the request asks for (<c>x-envoy-upstream-rq-timeout-ms</c>); zero turns it off, null keeps the route's.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Gets the per-try timeout (<c>x-envoy-upstream-rq-per-try-timeout-ms</c>); zero turns it off, null keeps the route's.</summary>
    public TimeSpan? PerTryTimeout { get; init; }

    /// <summary>Gets the number of retries (<c>x-envoy-max-retries</c>); it counts only where something is retried.</summary>
    public int? MaxRetries { get; init; }

    /// <summary>Gets the retry conditions added to the route's (<c>x-envoy-retry-on</c> and <c>x-envoy-retry-grpc-on</c>, the ones Envoy knows).</summary>
    public string[]? RetryOn { get; init; }

    /// <summary>Gets the status codes added to the route's retriable ones (<c>x-envoy-retriable-status-codes</c>).</summary>
    public uint[]? RetriableStatusCodes { get; init; }

    /// <summary>Gets whether the retries change (conditions, count or per-try timeout), not only the route timeout.</summary>
    public bool ChangesRetries => PerTryTimeout is not null || MaxRetries is not null || RetryOn is not null || RetriableStatusCodes is not null;
}

/// <summary>Reads and consumes the <c>x-envoy-*</c> request headers Envoy's router acts on.</summary>
internal static class EnvoyRequestHeaders
{
    public const string Timeout = "x-envoy-upstream-rq-timeout-ms";
    public const string PerTryTimeout = "x-envoy-upstream-rq-per-try-timeout-ms";
    public const string MaxRetries = "x-envoy-max-retries";
    public const string RetryOn = "x-envoy-retry-on";
    public const string RetryGrpcOn = "x-envoy-retry-grpc-on";
    public const string RetriableStatusCodes = "x-envoy-retriable-status-codes";

    private const string Prefix = "x-envoy-";

    /// <summary>The headers consumed: they configure this hop and are not sent on (Envoy removes them too).</summary>
    public static readonly string[] Consumed = [Timeout, PerTryTimeout, MaxRetries, RetryOn, RetryGrpcOn, RetriableStatusCodes];

    // Envoy's conditions of each header (its parseRetryOn and parseRetryGrpcOn); other words are ignored, as there.
    private static readonly HashSet<string> HttpConditions = new(StringComparer.Ordinal)
    {
        "5xx", "gateway-error", "connect-failure", "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
        "retriable-headers", "reset", "reset-before-request", "http3-post-connect-failure",
    };

    private static readonly HashSet<string> GrpcConditions = new(StringComparer.Ordinal)
    {
        "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
    };

    /// <summary>
    /// Reads the overrides of a request; false when it carries none of the headers. One pass over the request's
    /// headers without parsing them, allocating nothing unless one of them is there.
    /// </summary>
    public static bool TryRead(HttpRequestHeaders headers, out ResilienceOverrides overrides)
    {
        overrides = default;
        var found = false;
        foreach (var header in headers.NonValidated)
        {
            var name = header.Key;
            if (!name.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var value = header.Value.ToString();
            if (Is(name, Timeout))
            {
                found = true;
                overrides = overrides with { Timeout = Milliseconds(value) ?? overrides.Timeout };
            }
            else if (Is(name, PerTryTimeout))
            {
                found = true;
                overrides = overrides with { PerTryTimeout = Milliseconds(value) ?? overrides.PerTryTimeout };
            }
            else if (Is(name, MaxRetries))
            {
                found = true;
                overrides = overrides with { MaxRetries = Number(value) is { } retries ? (int)Math.Min(retries, int.MaxValue) : overrides.MaxRetries };
            }
            else if (Is(name, RetryOn) || Is(name, RetryGrpcOn))
            {
                found = true;
                var known = Is(name, RetryOn) ? HttpConditions : GrpcConditions;
                var conditions = Tokens(value).Where(known.Contains).ToArray();
                if (conditions.Length > 0)
                {
                    overrides = overrides with { RetryOn = [.. overrides.RetryOn ?? [], .. conditions] };
                }
            }
            else if (Is(name, RetriableStatusCodes))
            {
                found = true;
                var codes = Tokens(value).Select(t => uint.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var code) ? code : 0).Where(c => c > 0).ToArray();
                if (codes.Length > 0)
                {
                    overrides = overrides with { RetriableStatusCodes = [.. overrides.RetriableStatusCodes ?? [], .. codes] };
                }
            }
        }

        return found;
    }

    /// <summary>Removes the consumed headers from a request.</summary>
    public static void RemoveFrom(HttpRequestHeaders headers)
    {
        foreach (var name in Consumed)
        {
            headers.Remove(name);
        }
    }

    private static bool Is(string name, string header) => string.Equals(name, header, StringComparison.OrdinalIgnoreCase);

    private static IEnumerable<string> Tokens(string value) => value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    // An unsigned decimal, surrounding spaces allowed (absl::SimpleAtoi, as Envoy parses these headers).
    private static ulong? Number(string value) =>
        ulong.TryParse(value.AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var number) ? number : null;

    private static TimeSpan? Milliseconds(string value) =>
        Number(value) is { } ms ? TimeSpan.FromMilliseconds(Math.Min(ms, (ulong)TimeSpan.FromDays(3650).TotalMilliseconds)) : null;
}
