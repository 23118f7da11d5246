using System.Text.RegularExpressions;
using MeshKit.Config;
using MeshKit.Protocol.V1;

namespace MeshKit.Routing;

/// <summary>One <c>match</c> block: every condition it sets must hold.</summary>
internal sealed class RequestMatcher
{
    private readonly StringMatcher? _uri;
    private readonly StringMatcher? _method;
    private readonly StringMatcher? _authority;
    private readonly StringMatcher? _scheme;
    private readonly (string Name, StringMatcher Matcher)[] _headers;
    private readonly (string Name, StringMatcher Matcher)[] _withoutHeaders;
    private readonly (string Name, StringMatcher Matcher)[] _queryParams;
    private readonly int _port;
    private readonly int _servicePort;

    public RequestMatcher(HttpMatch match)
    {
        _uri = StringMatcher.Create(match.Uri, "uri");
        _method = StringMatcher.Create(match.Method, "method");
        _authority = StringMatcher.Create(match.Authority, "authority");
        _scheme = StringMatcher.Create(match.Scheme, "scheme");
        _headers = Compile(match.Headers, "headers");
        _withoutHeaders = Compile(match.WithoutHeaders, "withoutHeaders");
        _queryParams = Compile(match.QueryParams, "queryParams");
        _port = (int)match.Port;
        _servicePort = (int)match.ServicePort;
        UriPrefix = match.Uri?.KindCase switch
        {
            StringMatch.KindOneofCase.Prefix => match.Uri.Prefix,
            StringMatch.KindOneofCase.PathPrefix => StringMatcher.Segments(match.Uri.PathPrefix),
            _ => null,
        };
        SegmentPrefix = match.Uri?.KindCase == StringMatch.KindOneofCase.PathPrefix;
        StatPrefix = match.StatPrefix.Length > 0 ? match.StatPrefix : null;
    }

    /// <summary>Gets the block's <c>statPrefix</c>: the route's calls are counted and timed per route under it; null for none.</summary>
    public string? StatPrefix { get; }

    /// <summary>Gets the uri prefix this block matched on, which a <c>rewrite.uri</c> replaces.</summary>
    public string? UriPrefix { get; }

    /// <summary>Gets whether <see cref="UriPrefix"/> is whole segments (Gateway API's <c>PathPrefix</c>, without its trailing '/'), replaced as Gateway API replaces them.</summary>
    public bool SegmentPrefix { get; }

    public bool Matches<TRequest>(in TRequest request)
        where TRequest : struct, IRequestView
    {
        if ((_port != 0 && request.Port != _port) || (_servicePort != 0 && request.ServicePort != _servicePort))
        {
            return false;
        }

        if (_method is not null && !_method.IsMatch(request.Method))
        {
            return false;
        }

        if (_uri is not null && !_uri.IsMatch(request.Path))
        {
            return false;
        }

        if (_scheme is not null && !_scheme.IsMatch(request.Scheme))
        {
            return false;
        }

        if (_authority is not null && !_authority.IsMatch(request.Authority))
        {
            return false;
        }

        foreach (var (name, matcher) in _headers)
        {
            if (!matcher.IsMatch(request.Header(name)))
            {
                return false;
            }
        }

        foreach (var (name, matcher) in _withoutHeaders)
        {
            if (matcher.IsMatch(request.Header(name)))
            {
                return false;
            }
        }

        foreach (var (name, matcher) in _queryParams)
        {
            if (!matcher.IsMatch(QueryValue(request.Query, name)))
            {
                return false;
            }
        }

        return true;
    }

    private static (string, StringMatcher)[] Compile(Google.Protobuf.Collections.MapField<string, StringMatch> matches, string field) =>
        matches.Select(h => (h.Key, StringMatcher.Create(h.Value, $"{field}.{h.Key}") ?? StringMatcher.Presence)).ToArray();

    // Several values of one header are compared joined with ",", as Envoy does.
    internal static string? HeaderValue(HttpRequestMessage request, string name) => new OutboundRequest(request, request.RequestUri!).Header(name);

    /// <summary>The decoded value of the first query parameter named <paramref name="name"/>; empty for a bare key.</summary>
    internal static string? QueryValue(string query, string name)
    {
        var span = query.AsSpan();
        if (span.Length > 0 && span[0] == '?')
        {
            span = span[1..];
        }

        while (span.Length > 0)
        {
            var end = span.IndexOf('&');
            var pair = end < 0 ? span : span[..end];
            span = end < 0 ? default : span[(end + 1)..];
            var equals = pair.IndexOf('=');
            var key = equals < 0 ? pair : pair[..equals];
            if (key.SequenceEqual(name) || (key.Contains('%') && Uri.UnescapeDataString(key.ToString()) == name))
            {
                return equals < 0 ? string.Empty : Uri.UnescapeDataString(pair[(equals + 1)..].ToString().Replace('+', ' '));
            }
        }

        return null;
    }
}

/// <summary>A compiled <c>StringMatch</c>. A missing value (null) matches nothing, except that presence needs a value.</summary>
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

    /// <summary>Gets the matcher of presence: any value, even empty.</summary>
    public static StringMatcher Presence { get; } = new(StringMatch.KindOneofCase.Present, string.Empty, null);

    /// <summary>A PathPrefix pattern without its trailing '/' (<c>/</c> becomes empty: every path starts with it).</summary>
    public static string Segments(string prefix) => prefix.TrimEnd('/');

    public static StringMatcher? Create(StringMatch? match, string field)
    {
        if (match is null || match.KindCase == StringMatch.KindOneofCase.None)
        {
            return null;
        }

        return match.KindCase switch
        {
            StringMatch.KindOneofCase.Regex => new StringMatcher(match.KindCase, match.Regex, Patterns.TryCompileFullMatch(match.Regex, false, out var error)
                ?? throw new MeshConfigException($"{field}: invalid regular expression '{match.Regex}': {error}")),
            StringMatch.KindOneofCase.Present => Presence,
            StringMatch.KindOneofCase.Exact => new StringMatcher(match.KindCase, match.Exact, null),
            StringMatch.KindOneofCase.PathPrefix => new StringMatcher(match.KindCase, Segments(match.PathPrefix), null),
            _ => new StringMatcher(match.KindCase, match.Prefix, null),
        };
    }

    public bool IsMatch(string? value) => value is not null && _kind switch
    {
        StringMatch.KindOneofCase.Exact => string.Equals(value, _value, StringComparison.Ordinal),
        StringMatch.KindOneofCase.Prefix => value.StartsWith(_value, StringComparison.Ordinal),
        StringMatch.KindOneofCase.PathPrefix => value.StartsWith(_value, StringComparison.Ordinal) && (value.Length == _value.Length || value[_value.Length] == '/'),
        StringMatch.KindOneofCase.Present => true,
        _ => _regex!.IsMatch(value),
    };
}
