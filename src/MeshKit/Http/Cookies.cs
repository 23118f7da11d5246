using System.Net;

namespace MeshKit.Http;

/// <summary>
/// The client's cookie container, kept by the mesh. Through a sidecar an application's client keeps cookies by the
/// host it called; in MeshKit the client's primary handler saw the endpoint's address instead (a cookie set by one
/// service went to every service at that address: cookies ignore ports) and, under mutual TLS, no call at all. So the
/// mesh takes the container over: it sends and stores cookies by the URL the application called, and the primary
/// handler no longer does.
/// </summary>
internal static class Cookies
{
    private static readonly string[] Header = ["Cookie"];

    /// <summary>
    /// Takes the cookie container over from <paramref name="primary"/>: turns its use off there and returns it (null
    /// when it used none, or when its settings can no longer change).
    /// </summary>
    public static CookieContainer? TakeOver(HttpMessageHandler primary)
    {
        try
        {
            switch (primary)
            {
                case SocketsHttpHandler { UseCookies: true } sockets:
                    var jar = sockets.CookieContainer;
                    sockets.UseCookies = false;
                    return jar;
                case HttpClientHandler { UseCookies: true } client:
                    var clientJar = client.CookieContainer;
                    client.UseCookies = false;
                    return clientJar;
                default:
                    return null;
            }
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// Adds the container's cookies for <paramref name="uri"/> to the request, before any the application set itself
    /// (as .NET's handler writes them); the header as it was is saved in <paramref name="restore"/> (made when needed).
    /// </summary>
    public static void Send(CookieContainer jar, HttpRequestMessage request, Uri uri, ref Routing.HeaderRestore? restore)
    {
        // Count is a field: an empty jar, the usual case, costs nothing more.
        if (jar.Count == 0 || jar.GetCookieHeader(uri) is not { Length: > 0 } cookies)
        {
            return;
        }

        restore ??= new Routing.HeaderRestore();
        restore.Save(request, Header);
        var own = request.Headers.NonValidated.TryGetValues("Cookie", out var values) ? values.ToString() : null;
        request.Headers.Remove("Cookie");
        request.Headers.TryAddWithoutValidation("Cookie", own is null ? cookies : cookies + "; " + own);
    }

    /// <summary>Stores the cookies a response sets, by the URL the application called; one the container refuses is skipped.</summary>
    public static void Store(CookieContainer jar, Uri uri, HttpResponseMessage response)
    {
        if (!response.Headers.NonValidated.TryGetValues("Set-Cookie", out var values))
        {
            return;
        }

        foreach (var value in values)
        {
            try
            {
                jar.SetCookies(uri, value);
            }
            catch (CookieException)
            {
                // As .NET's handler does: a malformed cookie is not kept, the response still goes on.
            }
        }
    }
}
