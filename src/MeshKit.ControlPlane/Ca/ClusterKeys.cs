using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Ca;

/// <summary>
/// The Kubernetes cluster's service-account signing keys (a JSON Web Key Set), which verify the tokens pods present for
/// their first certificate: read from <see cref="ControlPlaneOptions.KubernetesTokenJwksFile"/> at each use, or fetched
/// from <see cref="ControlPlaneOptions.KubernetesTokenJwksUri"/> (the API server's <c>/openid/v1/jwks</c>) with the
/// control plane's own service-account token, trusting only the cluster's CA. Fetched keys are kept for five minutes; a
/// token signed by a key they do not hold (the cluster rotated its key) fetches them again, at most every 30 seconds.
/// </summary>
internal sealed class ClusterKeys : IDisposable
{
    private const int MaxJwksBytes = 1024 * 1024;
    private static readonly TimeSpan Fresh = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan MinRefetch = TimeSpan.FromSeconds(30);

    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _fetching = new(1, 1);
    private HttpClient? _http;
    private (string Jwks, HashSet<string> KeyIds, DateTimeOffset At)? _fetched;

    public ClusterKeys(IOptions<ControlPlaneOptions> options, TimeProvider time)
    {
        _options = options.Value;
        _time = time;
    }

    /// <summary>Returns the key set that should hold <paramref name="keyId"/> (the token's <c>kid</c>), or why there is none.</summary>
    public async Task<(string? Jwks, string? Error)> GetAsync(string? keyId, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(_options.KubernetesTokenJwksUri))
        {
            try
            {
                return (await File.ReadAllTextAsync(_options.KubernetesTokenJwksFile, cancellationToken).ConfigureAwait(false), null);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return (null, $"the cluster's keys cannot be read from '{_options.KubernetesTokenJwksFile}': {ex.Message}");
            }
        }

        await _fetching.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var now = _time.GetUtcNow();
            if (_fetched is { } kept && (now - kept.At < Fresh) && (keyId is null || kept.KeyIds.Contains(keyId) || now - kept.At < MinRefetch))
            {
                return (kept.Jwks, null);
            }

            try
            {
                var jwks = await FetchAsync(cancellationToken).ConfigureAwait(false);
                _fetched = (jwks, KeyIds(jwks), now);
                return (jwks, null);
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or UnauthorizedAccessException or TaskCanceledException or InvalidOperationException or System.Text.Json.JsonException)
            {
                // The last good keys stay in use while the API server cannot be reached.
                return _fetched is { } last ? (last.Jwks, null) : (null, $"the cluster's keys cannot be fetched from {_options.KubernetesTokenJwksUri}: {ex.Message}");
            }
        }
        finally
        {
            _fetching.Release();
        }
    }

    public void Dispose()
    {
        _http?.Dispose();
        _fetching.Dispose();
    }

    private async Task<string> FetchAsync(CancellationToken cancellationToken)
    {
        _http ??= CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, _options.KubernetesTokenJwksUri);

        await Sources.KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);

        // The body is buffered by the client, which refuses one past MaxResponseContentBufferSize (1 MiB).
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"the API server answered {(int)response.StatusCode} {response.ReasonPhrase}");
        }

        return await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
    }

    // The key ids a set holds; a set that is not one fails here, and the last good set stays.
    private static HashSet<string> KeyIds(string jwks)
    {
        using var document = System.Text.Json.JsonDocument.Parse(jwks);
        return document.RootElement.GetProperty("keys").EnumerateArray()
            .Select(k => k.TryGetProperty("kid", out var kid) ? kid.GetString() : null).OfType<string>().ToHashSet(StringComparer.Ordinal);
    }

    // Only the cluster's CA vouches for the API server (not the machine's roots), when its file is there.
    private HttpClient CreateClient()
    {
        var handler = Sources.KubernetesApi.CreateHandler(_options);
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10), MaxResponseContentBufferSize = MaxJwksBytes };
    }
}
