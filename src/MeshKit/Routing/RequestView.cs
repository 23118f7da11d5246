using Microsoft.AspNetCore.Http;

namespace MeshKit.Routing;

/// <summary>
/// What route matching reads of a request. Implemented by structs over an outbound <see cref="HttpRequestMessage"/>
/// and an inbound <see cref="HttpRequest"/>, so the same compiled matchers serve both sides without boxing.
/// </summary>
internal interface IRequestView
{
    string Method { get; }

    /// <summary>Gets the path without the query.</summary>
    string Path { get; }

    string Scheme { get; }

    string Authority { get; }

    int Port { get; }

    /// <summary>Gets the port of the service the call goes to (outbound: the URL's when the service has it, else its only one).</summary>
    int ServicePort { get; }

    /// <summary>Gets the query string with its leading <c>?</c>, or empty.</summary>
    string Query { get; }

    /// <summary>Returns the header's value (several values joined with ","), or null.</summary>
    string? Header(string name);
}

internal readonly struct OutboundRequest(HttpRequestMessage request, Uri uri, int servicePort = 0) : IRequestView
{
    // The path is cut from the path and query the send needs anyway: Uri.AbsolutePath would build a string and the
    // Uri's extra-info object of its own. The same text either way (both escaped as the URI has them).
    private readonly string _path = PathOf(uri.PathAndQuery);

    public string Method => request.Method.Method;

    public string Path => _path;

    public string Scheme => uri.Scheme;

    public string Authority => request.Headers.Host ?? uri.Authority;

    public int Port => uri.Port;

    public int ServicePort => servicePort != 0 ? servicePort : uri.Port;

    public string Query => uri.Query;

    /// <summary>The path part of a path and query: the same string when there is no query.</summary>
    internal static string PathOf(string pathAndQuery) =>
        pathAndQuery.IndexOf('?') is var q and >= 0 ? pathAndQuery[..q] : pathAndQuery;

    public string? Header(string name)
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

internal readonly struct InboundRequest(HttpRequest request) : IRequestView
{
    public string Method => request.Method;

    public string Path => request.Path.Value ?? "/";

    public string Scheme => request.Scheme;

    public string Authority => request.Host.Value ?? string.Empty;

    public int Port => request.Host.Port ?? (request.IsHttps ? 443 : 80);

    public int ServicePort => Port;

    public string Query => request.QueryString.Value ?? string.Empty;

    public string? Header(string name) => request.Headers.TryGetValue(name, out var values) ? values.ToString() : null;
}
