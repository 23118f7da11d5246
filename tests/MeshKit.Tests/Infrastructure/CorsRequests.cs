namespace MeshKit.Tests.Infrastructure;

/// <summary>Cross-origin requests as a browser sends them: a preflight asks for a method (and headers) before the call.</summary>
internal static class CorsRequests
{
    /// <summary>Sends <paramref name="method"/> to <paramref name="url"/> from <paramref name="origin"/>; a preflight when <paramref name="requestMethod"/> is given.</summary>
    public static async Task<HttpResponseMessage> SendAsync(HttpClient http, string url, HttpMethod method, string origin, string? requestMethod = null, string? requestHeaders = null)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.Add("Origin", origin);
        if (requestMethod is not null)
        {
            request.Headers.Add("Access-Control-Request-Method", requestMethod);
        }

        if (requestHeaders is not null)
        {
            request.Headers.Add("Access-Control-Request-Headers", requestHeaders);
        }

        return await http.SendAsync(request);
    }
}
