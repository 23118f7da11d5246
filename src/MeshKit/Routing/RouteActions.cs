using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using MeshKit.Config;
using MeshKit.Protocol.V1;

namespace MeshKit.Routing;

/// <summary>What a route does besides choosing a destination: header edits, rewrites, or answering itself.</summary>
internal sealed class RouteActions
{
    public static RouteActions None { get; } = new(null, null, null, null, null, null, null, null);

    public RouteActions(HeaderEdits? requestHeaders, HeaderEdits? responseHeaders, string? rewriteUri, string? rewriteAuthority, (Regex Match, string Replacement)? rewriteRegex, Redirect? redirect, DirectResponse? direct, CorsRule? cors)
    {
        Cors = cors;
        RequestHeaders = requestHeaders;
        ResponseHeaders = responseHeaders;
        RewriteUri = rewriteUri;
        RewriteAuthority = rewriteAuthority;
        RewriteRegex = rewriteRegex;
        Redirect = redirect;
        DirectResponse = direct;
    }

    public HeaderEdits? RequestHeaders { get; }

    public HeaderEdits? ResponseHeaders { get; }

    public string? RewriteUri { get; }

    public string? RewriteAuthority { get; }

    public (Regex Match, string Replacement)? RewriteRegex { get; }

    public Redirect? Redirect { get; }

    public DirectResponse? DirectResponse { get; }

    /// <summary>Gets the CORS policy the destination applies to requests matching this route.</summary>
    public CorsRule? Cors { get; }

    public bool RewritesPath => RewriteUri is not null || RewriteRegex is not null;

    public static RouteActions Create(HttpRoute route, string host)
    {
        (Regex, string)? regex = null;
        if (route.Rewrite?.UriRegex is { } uriRegex)
        {
            regex = (Patterns.TryCompile(uriRegex.Match, false, out var error)
                ?? throw new MeshConfigException($"{host}: route '{route.Name}': invalid uriRegexRewrite.match: {error}"), Patterns.ToDotNetReplacement(uriRegex.Rewrite));
        }

        var rewrite = route.Rewrite;
        if (regex is null && route.RequestHeaders is null && route.ResponseHeaders is null && string.IsNullOrEmpty(rewrite?.Uri)
            && string.IsNullOrEmpty(rewrite?.Authority) && route.Redirect is null && route.DirectResponse is null && route.Cors is null)
        {
            // Most routes only route: they share the empty action set.
            return None;
        }

        return new RouteActions(
            HeaderEdits.Create(route.RequestHeaders),
            HeaderEdits.Create(route.ResponseHeaders),
            string.IsNullOrEmpty(rewrite?.Uri) ? null : rewrite.Uri,
            string.IsNullOrEmpty(rewrite?.Authority) ? null : rewrite.Authority,
            regex,
            route.Redirect,
            route.DirectResponse,
            CorsRule.Create(route.Cors));
    }

    /// <summary>The path after <c>rewrite</c>: a prefix match has its prefix replaced, any other match its whole path.</summary>
    public string RewritePath(string path, RequestMatcher? matched)
    {
        if (RewriteRegex is { } regex)
        {
            return regex.Match.Replace(path, regex.Replacement);
        }

        if (RewriteUri is null)
        {
            return path;
        }

        return ReplacePath(path, matched, RewriteUri);
    }

    // A prefix match has its prefix replaced (whole segments, as Gateway API defines it, for a PathPrefix match:
    // "/api" → "/v2/" makes "/api/users" "/v2/users", "/api" → "/" makes it "/users"), any other match its whole path.
    private static string ReplacePath(string path, RequestMatcher? matched, string replacement)
    {
        if (matched?.UriPrefix is not { } prefix || !path.StartsWith(prefix, StringComparison.Ordinal))
        {
            return replacement;
        }

        if (!matched.SegmentPrefix)
        {
            return replacement + path[prefix.Length..];
        }

        var rest = path.AsSpan(prefix.Length); // empty, or from a '/'
        return rest.IsEmpty ? replacement : string.Concat(replacement.AsSpan().TrimEnd('/'), rest);
    }

    /// <summary>The redirect response: path, authority, port and scheme replaced as configured, the query kept.</summary>
    public HttpResponseMessage RedirectResponse(HttpRequestMessage request, Uri uri, RequestMatcher? matched)
    {
        var redirect = Redirect!;
        var scheme = redirect.Scheme.Length > 0 ? redirect.Scheme : uri.Scheme;
        var host = redirect.Authority.Length > 0 ? redirect.Authority : uri.Host;
        var port = redirect.Port != 0 ? (int)redirect.Port
            : redirect.PortFromRequest ? uri.Port
            : redirect.Authority.Length > 0 || scheme != uri.Scheme ? -1
            : uri.IsDefaultPort ? -1 : uri.Port;
        var path = redirect.Uri.Length == 0 ? uri.AbsolutePath
            : redirect.UriReplacesPrefix ? ReplacePath(uri.AbsolutePath, matched, redirect.Uri)
            : redirect.Uri;
        var builder = new UriBuilder(scheme, host, port, path) { Query = uri.Query };
        var response = new HttpResponseMessage((HttpStatusCode)(redirect.RedirectCode == 0 ? 301 : redirect.RedirectCode)) { RequestMessage = request, Version = request.Version };
        response.Headers.Location = builder.Uri;
        return response;
    }

    public HttpResponseMessage DirectResponseMessage(HttpRequestMessage request)
    {
        var direct = DirectResponse!;
        var response = new HttpResponseMessage((HttpStatusCode)direct.Status) { RequestMessage = request, Version = request.Version };
        if (!direct.Body.IsEmpty)
        {
            response.Content = new ByteArrayContent(direct.Body.ToByteArray());
        }

        return response;
    }
}

/// <summary>Compiled <c>HeaderOperations</c>: remove, then set (replace), then add (append).</summary>
internal sealed class HeaderEdits
{
    private readonly string[] _remove;
    private readonly (string Name, string Value)[] _set;
    private readonly (string Name, string Value)[] _add;

    private HeaderEdits(string[] remove, (string, string)[] set, (string, string)[] add)
    {
        _remove = remove;
        _set = set;
        _add = add;
        Names = remove.Concat(set.Select(s => s.Item1)).Concat(add.Select(a => a.Item1)).Distinct(StringComparer.OrdinalIgnoreCase).ToArray();
    }

    /// <summary>Gets every header name the edits touch.</summary>
    public string[] Names { get; }

    public static HeaderEdits? Create(HeaderOperations? operations) =>
        operations is null || (operations.Remove.Count == 0 && operations.Set.Count == 0 && operations.Add.Count == 0)
            ? null
            : new HeaderEdits(operations.Remove.ToArray(), operations.Set.Select(s => (s.Key, s.Value)).ToArray(), operations.Add.Select(a => (a.Key, a.Value)).ToArray());

    public void Apply(HttpHeaders headers, HttpContentHeaders? content)
    {
        foreach (var name in _remove)
        {
            Remove(headers, content, name);
        }

        foreach (var (name, value) in _set)
        {
            Remove(headers, content, name);
            Add(headers, content, name, value);
        }

        foreach (var (name, value) in _add)
        {
            Add(headers, content, name, value);
        }
    }

    // Remove throws for a name that belongs to the other collection (content-type on a message); look first.
    internal static void Remove(HttpHeaders headers, HttpContentHeaders? content, string name)
    {
        if (headers.NonValidated.Contains(name))
        {
            headers.Remove(name);
        }

        if (content is not null && content.NonValidated.Contains(name))
        {
            content.Remove(name);
        }
    }

    private static void Add(HttpHeaders headers, HttpContentHeaders? content, string name, string value)
    {
        // Content headers (content-type, ...) are refused by the message's own collection.
        if (!headers.TryAddWithoutValidation(name, value))
        {
            content?.TryAddWithoutValidation(name, value);
        }
    }
}

/// <summary>
/// Remembers request headers before edits so the request can be restored after the send: handlers above the mesh
/// (retries) may send the same message again and must not see the edits twice.
/// </summary>
internal sealed class HeaderRestore
{
    private readonly List<(string Name, string[]? Values, bool Content)> _saved = [];

    public void Save(HttpRequestMessage request, string[] names)
    {
        foreach (var name in names)
        {
            if (_saved.Exists(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }

            _saved.Add(request.Headers.NonValidated.TryGetValues(name, out var values)
                ? (name, values.ToArray(), false)
                : request.Content is not null && request.Content.Headers.NonValidated.TryGetValues(name, out values)
                    ? (name, values.ToArray(), true)
                    : (name, null, false));
        }
    }

    public void Restore(HttpRequestMessage request)
    {
        foreach (var (name, values, content) in _saved)
        {
            HeaderEdits.Remove(request.Headers, request.Content?.Headers, name);
            if (values is not null)
            {
                HttpHeaders target = content ? request.Content!.Headers : request.Headers;
                target.TryAddWithoutValidation(name, values);
            }
        }
    }
}
