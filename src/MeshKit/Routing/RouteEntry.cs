using System.Text.RegularExpressions;
using MeshKit.Config;
using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;

namespace MeshKit.Routing;

/// <summary>A compiled HTTP route: its match blocks (any may match) and its weighted destinations.</summary>
internal sealed class RouteEntry(string name, RequestMatcher[] matchers, RouteTarget[] targets, int totalWeight)
{
    public string Name { get; } = name;

    public RequestMatcher[] Matchers { get; } = matchers;

    public RouteTarget[] Targets { get; } = targets;

    public int TotalWeight { get; } = totalWeight;

    public bool Matches(HttpRequestMessage request, Uri uri)
    {
        if (Matchers.Length == 0)
        {
            return true;
        }

        foreach (var matcher in Matchers)
        {
            if (matcher.Matches(request, uri))
            {
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
internal sealed record RouteTarget(string Host, string Subset, uint Port, int Weight, EndpointSet? Endpoints, uint[] ServicePorts);

/// <summary>One <c>match</c> block: every condition it sets must hold.</summary>
internal sealed class RequestMatcher
{
    private readonly StringMatcher? _uri;
    private readonly StringMatcher? _method;
    private readonly StringMatcher? _authority;
    private readonly StringMatcher? _scheme;
    private readonly (string Name, StringMatcher Matcher)[] _headers;
    private readonly int _port;

    public RequestMatcher(HttpMatch match)
    {
        _uri = StringMatcher.Create(match.Uri, "uri");
        _method = StringMatcher.Create(match.Method, "method");
        _authority = StringMatcher.Create(match.Authority, "authority");
        _scheme = StringMatcher.Create(match.Scheme, "scheme");
        _headers = match.Headers.Select(h => (h.Key, StringMatcher.Create(h.Value, "headers." + h.Key)!)).ToArray();
        _port = (int)match.Port;
    }

    public bool Matches(HttpRequestMessage request, Uri uri)
    {
        if (_port != 0 && uri.Port != _port)
        {
            return false;
        }

        if (_method is not null && !_method.IsMatch(request.Method.Method))
        {
            return false;
        }

        if (_uri is not null && !_uri.IsMatch(uri.AbsolutePath))
        {
            return false;
        }

        if (_scheme is not null && !_scheme.IsMatch(uri.Scheme))
        {
            return false;
        }

        if (_authority is not null && !_authority.IsMatch(request.Headers.Host ?? uri.Authority))
        {
            return false;
        }

        foreach (var (name, matcher) in _headers)
        {
            var value = HeaderValue(request, name);
            if (value is null || !matcher.IsMatch(value))
            {
                return false;
            }
        }

        return true;
    }

    // Several values of one header are compared joined with ",", as Envoy does.
    private static string? HeaderValue(HttpRequestMessage request, string name)
    {
        if (request.Headers.NonValidated.TryGetValues(name, out var values))
        {
            return values.ToString();
        }

        if (request.Content is not null && request.Content.Headers.NonValidated.TryGetValues(name, out values))
        {
            return values.ToString();
        }

        return null;
    }
}

/// <summary>A compiled <c>StringMatch</c>.</summary>
internal sealed class StringMatcher
{
    private readonly StringMatch.KindOneofCase _kind;
    private readonly string _value;
    private readonly Regex? _regex;

    private StringMatcher(StringMatch.KindOneofCase kind, string value, Regex? regex)
    {
        _kind = kind;
        _value = value;
        _regex = regex;
    }

    public static StringMatcher? Create(StringMatch? match, string field)
    {
        if (match is null || match.KindCase == StringMatch.KindOneofCase.None)
        {
            return null;
        }

        if (match.KindCase == StringMatch.KindOneofCase.Regex)
        {
            var regex = Patterns.TryCompileFullMatch(match.Regex, false, out var error)
                ?? throw new MeshConfigException($"{field}: invalid regular expression '{match.Regex}': {error}");
            return new StringMatcher(match.KindCase, match.Regex, regex);
        }

        return new StringMatcher(match.KindCase, match.KindCase == StringMatch.KindOneofCase.Exact ? match.Exact : match.Prefix, null);
    }

    public bool IsMatch(string value) => _kind switch
    {
        StringMatch.KindOneofCase.Exact => string.Equals(value, _value, StringComparison.Ordinal),
        StringMatch.KindOneofCase.Prefix => value.StartsWith(_value, StringComparison.Ordinal),
        _ => _regex!.IsMatch(value),
    };
}
