using System.Text.Json;

namespace MeshKit.Cli;

/// <summary>
/// <c>meshctl token create</c>: asks the control plane's admin port for a join token, the credential a workload
/// presents for its first certificate.
/// </summary>
internal static class TokenCommand
{
    public static int Create(Uri admin, string? adminToken, string ns, string serviceAccount, string ttl, string format, TextWriter output, TextWriter error)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        if (!string.IsNullOrEmpty(adminToken))
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", adminToken);
        }

        var uri = new Uri(admin, $"/tokens?namespace={Uri.EscapeDataString(ns)}&serviceAccount={Uri.EscapeDataString(serviceAccount)}&ttl={Uri.EscapeDataString(ttl)}");
        HttpResponseMessage response;
        try
        {
            response = http.PostAsync(uri, content: null).GetAwaiter().GetResult();
        }
        catch (HttpRequestException ex)
        {
            error.WriteLine($"meshctl: cannot reach the control plane's admin port at {admin}: {ex.Message}");
            return MeshCtl.UsageError;
        }

        using (response)
        {
            var body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            if (!response.IsSuccessStatusCode)
            {
                var message = TryRead(body, "error") ?? body;
                error.WriteLine($"meshctl: the control plane refused: {message}");
                return MeshCtl.UsageError;
            }

            if (format == "json")
            {
                output.WriteLine(body);
            }
            else
            {
                // The token alone, so that it can be piped into a secret.
                output.WriteLine(TryRead(body, "token"));
                error.WriteLine($"join token for {TryRead(body, "identity")}, valid until {TryRead(body, "expiresAt")}");
            }

            return MeshCtl.Ok;
        }
    }

    private static string? TryRead(string json, string property)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.TryGetProperty(property, out var value) ? value.ToString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
