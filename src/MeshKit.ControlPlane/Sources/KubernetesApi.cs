using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// How the control plane talks to the Kubernetes API server: with its own service-account token (read at each request:
/// the kubelet rotates it), trusting only the cluster's CA when its file is there.
/// </summary>
internal static class KubernetesApi
{
    /// <summary>The value of <see cref="ControlPlaneOptions.KubernetesApiServer"/> that means "the cluster this pod runs in".</summary>
    public const string InCluster = "in-cluster";

    /// <summary>
    /// The API server's base URL: <see cref="ControlPlaneOptions.KubernetesApiServer"/>, or for <see cref="InCluster"/>
    /// the address Kubernetes gives every pod (<c>KUBERNETES_SERVICE_HOST</c>, <c>KUBERNETES_SERVICE_PORT</c>); null
    /// when reading the cluster is off. Throws when the setting is neither.
    /// </summary>
    public static Uri? Server(ControlPlaneOptions options)
    {
        var setting = options.KubernetesApiServer;
        if (string.IsNullOrWhiteSpace(setting))
        {
            return null;
        }

        if (string.Equals(setting, InCluster, StringComparison.OrdinalIgnoreCase))
        {
            var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
            var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
            if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port))
            {
                throw new InvalidOperationException("ControlPlane:KubernetesApiServer is 'in-cluster', but KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: the control plane does not run in a Kubernetes pod. Give the API server's URL instead");
            }

            return new Uri($"https://{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{port}/");
        }

        return Uri.TryCreate(setting.EndsWith('/') ? setting : setting + "/", UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp)
            ? uri
            : throw new InvalidOperationException($"ControlPlane:KubernetesApiServer '{setting}' is not an http:// or https:// URL, nor '{InCluster}'");
    }

    /// <summary>A handler for the API server: no redirects, and only the cluster's CA vouches for it when its file is there.</summary>
    public static SocketsHttpHandler CreateHandler(ControlPlaneOptions options)
    {
        var handler = new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = TimeSpan.FromSeconds(5) };
        if (File.Exists(options.KubernetesApiCaFile))
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(options.KubernetesApiCaFile);
            handler.SslOptions.CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            handler.SslOptions.CertificateChainPolicy.CustomTrustStore.AddRange(roots);
        }

        return handler;
    }

    /// <summary>Adds the control plane's own token to a request, read afresh (the kubelet rotates it), when its file is there.</summary>
    public static async Task AuthorizeAsync(HttpRequestMessage request, ControlPlaneOptions options, CancellationToken cancellationToken)
    {
        if (File.Exists(options.KubernetesApiTokenFile))
        {
            request.Headers.Authorization = new("Bearer", (await File.ReadAllTextAsync(options.KubernetesApiTokenFile, cancellationToken).ConfigureAwait(false)).Trim());
        }
    }

    /// <summary>Throws a <see cref="KubernetesApiException"/> for a response that is not a success, with the server's explanation.</summary>
    public static async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        // The API server explains itself in a Status object (a 403 names the verb and resource the role lacks).
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        string? message = null;
        try
        {
            message = JsonNode.Parse(body)?["message"]?.GetValue<string>();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
        }

        throw new KubernetesApiException((int)response.StatusCode, message ?? $"{(int)response.StatusCode} {response.ReasonPhrase}");
    }
}
