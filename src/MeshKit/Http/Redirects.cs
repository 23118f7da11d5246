using System.Net;

namespace MeshKit.Http;

/// <summary>
/// The redirects a client follows, as .NET's own handler decides them: which responses redirect, where to, and when the
/// method becomes GET. <see cref="MeshHandler"/> follows them above the mesh, so that each hop is routed.
/// </summary>
internal static class Redirects
{
    /// <summary>The URI a response redirects <paramref name="request"/> to; null when it does not, or must not be followed.</summary>
    public static Uri? Next(HttpRequestMessage request, HttpResponseMessage response)
    {
        if (response.StatusCode is not (HttpStatusCode.MultipleChoices or HttpStatusCode.Moved or HttpStatusCode.Found or HttpStatusCode.SeeOther
            or HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect)
            || response.Headers.Location is not { } location
            || request.RequestUri is not { IsAbsoluteUri: true } from)
        {
            return null;
        }

        if (!location.IsAbsoluteUri)
        {
            location = new Uri(from, location);
        }

        // RFC 9110 10.2.2: a location without a fragment keeps the request's.
        if (from.Fragment.Length > 0 && location.Fragment.Length == 0)
        {
            location = new UriBuilder(location) { Fragment = from.Fragment }.Uri;
        }

        // Only to http or https, and never from https down to http.
        var secure = string.Equals(from.Scheme, Uri.UriSchemeHttps, StringComparison.OrdinalIgnoreCase);
        return string.Equals(location.Scheme, Uri.UriSchemeHttps, StringComparison.OrdinalIgnoreCase)
            || (!secure && string.Equals(location.Scheme, Uri.UriSchemeHttp, StringComparison.OrdinalIgnoreCase))
            ? location
            : null;
    }

    /// <summary>Whether the redirected request is sent as a GET without a body (a POST answered 300, 301 or 302; anything but GET or HEAD answered 303).</summary>
    public static bool RequiresGet(HttpStatusCode status, HttpMethod method) => status switch
    {
        HttpStatusCode.MultipleChoices or HttpStatusCode.Moved or HttpStatusCode.Found => method == HttpMethod.Post,
        HttpStatusCode.SeeOther => method != HttpMethod.Get && method != HttpMethod.Head,
        _ => false,
    };

    /// <summary>
    /// Takes the following of redirects over from <paramref name="primary"/>: turns it off there and returns the
    /// number of redirects it would have followed (0 when it followed none, or when its settings can no longer change:
    /// a handler that already sent requests, shared with code outside the factory, is left as it is).
    /// </summary>
    public static int TakeOver(HttpMessageHandler primary)
    {
        try
        {
            switch (primary)
            {
                case SocketsHttpHandler { AllowAutoRedirect: true } sockets:
                    sockets.AllowAutoRedirect = false;
                    return sockets.MaxAutomaticRedirections;
                case HttpClientHandler { AllowAutoRedirect: true } client:
                    client.AllowAutoRedirect = false;
                    return client.MaxAutomaticRedirections;
                default:
                    return 0;
            }
        }
        catch (InvalidOperationException)
        {
            return 0;
        }
    }
}
