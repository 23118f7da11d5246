using System.Text;
using MeshKit.Protocol.V1;
using MeshKit.Routing;

namespace MeshKit.LoadBalancing;

/// <summary>
/// Strong session affinity, as Envoy's stateful session filter keeps it: the response names the endpoint that served
/// the call (its <c>address:port</c>, base64) in a cookie or a header; a call that sends it back goes to that endpoint
/// while it is one of the destination's and healthy, otherwise where the balancer picks, and its response names the
/// new one. Unlike a consistent hash, the session survives endpoints joining and leaving.
/// </summary>
internal sealed class StickySession
{
    private readonly string? _cookie;
    private readonly string? _header;

    // What follows a cookie's value, made once: "; Max-Age=600; Path=/; HttpOnly".
    private readonly string _cookieAttributes = string.Empty;

    private StickySession(SessionPersistence config)
    {
        if (config.KeyCase == SessionPersistence.KeyOneofCase.CookieName)
        {
            _cookie = config.CookieName;
            _cookieAttributes = (config.CookieTtlMs > 0 ? $"; Max-Age={config.CookieTtlMs / 1000}" : string.Empty)
                + (config.CookiePath.Length > 0 ? $"; Path={config.CookiePath}" : string.Empty) + "; HttpOnly";
        }
        else
        {
            _header = config.HeaderName;
        }
    }

    /// <summary>Returns the session of <paramref name="config"/>, or null when it keeps none.</summary>
    public static StickySession? Create(SessionPersistence? config) =>
        config is null || config.KeyCase == SessionPersistence.KeyOneofCase.None ? null : new StickySession(config);

    /// <summary>
    /// Returns the endpoint the request asks to go back to (its <c>address:port</c>), or null; the cookie is the
    /// request's own or, before the mesh has added the client's cookies, the one <paramref name="jar"/> keeps for
    /// <paramref name="uri"/>.
    /// </summary>
    public string? Pinned(HttpRequestMessage request, System.Net.CookieContainer? jar = null, Uri? uri = null)
    {
        var value = _cookie is null ? RequestMatcher.HeaderValue(request, _header!)
            : HashKey.CookieValue(request, _cookie) ?? (jar is { Count: > 0 } && uri is not null ? jar.GetCookies(uri)[_cookie]?.Value.Trim('"') : null);

        // An address and a port encode to well under 100 characters: anything longer is not one of ours.
        if (value is not { Length: > 0 and <= 128 })
        {
            return null;
        }

        Span<byte> bytes = stackalloc byte[96];
        return Convert.TryFromBase64String(value, bytes, out var length) ? Encoding.UTF8.GetString(bytes[..length]) : null;
    }

    /// <summary>Names <paramref name="authority"/> in the response, for the caller to send back.</summary>
    public void Name(HttpResponseMessage response, string authority)
    {
        var encoded = Convert.ToBase64String(Encoding.UTF8.GetBytes(authority));
        if (_cookie is not null)
        {
            response.Headers.TryAddWithoutValidation("Set-Cookie", $"{_cookie}=\"{encoded}\"{_cookieAttributes}");
            return;
        }

        response.Headers.Remove(_header!);
        response.Headers.TryAddWithoutValidation(_header!, encoded);
    }
}
