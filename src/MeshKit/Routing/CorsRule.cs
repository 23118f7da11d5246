using MeshKit.Protocol.V1;

namespace MeshKit.Routing;

/// <summary>
/// A compiled <c>corsPolicy</c>, applied where Envoy applies it: at the destination, by the inbound middleware, for the
/// route the request matches there. Header values are joined once here, not per request.
/// </summary>
internal sealed class CorsRule
{
    private readonly StringMatcher[] _origins;

    private CorsRule(CorsPolicy policy)
    {
        _origins = policy.AllowOrigins.Select((o, i) => StringMatcher.Create(o, $"corsPolicy.allowOrigins[{i}]")!).ToArray();
        AllowMethods = Join(policy.AllowMethods);
        AllowHeaders = Join(policy.AllowHeaders);
        ExposeHeaders = Join(policy.ExposeHeaders);
        MaxAge = policy.MaxAgeSeconds > 0 ? policy.MaxAgeSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
        AllowCredentials = policy.AllowCredentials;
        IgnoreUnmatchedPreflights = policy.IgnoreUnmatchedPreflights;
        var echo = policy.EchoWildcards && policy.AllowCredentials;
        EchoMethod = echo && AllowMethods == "*";
        EchoHeaders = echo && AllowHeaders == "*";
        ExposeResponseHeaders = echo && ExposeHeaders == "*";
    }

    /// <summary>Gets whether a preflight is answered with the method it asks for (a <c>*</c> with credentials).</summary>
    public bool EchoMethod { get; }

    /// <summary>Gets whether a preflight is answered with the headers it asks for (a <c>*</c> with credentials).</summary>
    public bool EchoHeaders { get; }

    /// <summary>Gets whether the response's own header names are exposed (a <c>*</c> with credentials).</summary>
    public bool ExposeResponseHeaders { get; }

    public string? AllowMethods { get; }

    public string? AllowHeaders { get; }

    public string? ExposeHeaders { get; }

    public string? MaxAge { get; }

    public bool AllowCredentials { get; }

    public bool IgnoreUnmatchedPreflights { get; }

    public static CorsRule? Create(CorsPolicy? policy) => policy is null ? null : new CorsRule(policy);

    public bool AllowsOrigin(string origin)
    {
        foreach (var matcher in _origins)
        {
            if (matcher.IsMatch(origin))
            {
                return true;
            }
        }

        return false;
    }

    private static string? Join(IReadOnlyCollection<string> values) => values.Count == 0 ? null : string.Join(',', values);
}
