namespace MeshKit.Http;

/// <summary>
/// The headers a sidecar adds to calls that MeshKit adds too, by Envoy's names, and what MeshConfig's
/// <c>defaultConfig.proxyHeaders</c> turns off (<see cref="Protocol.V1.ProxyHeaders"/>).
/// </summary>
internal static class ProxyHeaderValues
{
    /// <summary>The attempt a request sent upstream is (1, then 2 for the first retry, ...): Istio includes it by default.</summary>
    public const string AttemptCount = "x-envoy-attempt-count";

    /// <summary>The time, in milliseconds, the caller gives the upstream to answer: the first attempt's deadline.</summary>
    public const string ExpectedTimeout = "x-envoy-expected-rq-timeout-ms";

    /// <summary>The path the application called, on a request whose route rewrote it.</summary>
    public const string OriginalPath = "x-envoy-original-path";

    /// <summary>The time, in milliseconds, from sending the request upstream to its response headers.</summary>
    public const string UpstreamServiceTime = "x-envoy-upstream-service-time";

    /// <summary>Every header on, as in Istio when <c>proxyHeaders</c> says nothing.</summary>
    public static readonly Protocol.V1.ProxyHeaders Defaults = new();

    // Small numbers as text, made once: attempt counts and most service times and timeouts need no string per call.
    private static readonly string?[] Numbers = new string?[1024];

    /// <summary>A non-negative number as text, shared for small ones.</summary>
    public static string Text(long value)
    {
        if ((ulong)value >= (ulong)Numbers.Length)
        {
            return value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        // A race makes two equal strings, one of which is kept: harmless.
        return Numbers[value] ??= value.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Sets a header the mesh owns on a request, replacing what the application (or an earlier attempt) set.</summary>
    public static void Set(System.Net.Http.Headers.HttpHeaders headers, string name, string value)
    {
        if (headers.NonValidated.Contains(name))
        {
            headers.Remove(name);
        }

        headers.TryAddWithoutValidation(name, value);
    }
}
