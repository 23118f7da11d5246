using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// Keeps the mesh's roots in a ConfigMap (<see cref="ControlPlaneOptions.KubernetesRootCertConfigMap"/>, key
/// <c>root-cert.pem</c>) in every namespace the control plane reads, as istiod keeps <c>istio-ca-root-cert</c>: what a
/// pod mounts as <c>Mesh:RootCertificateFile</c> to trust the control plane before it sends its service-account token.
/// Every <see cref="ControlPlaneOptions.KubernetesRootCertResync"/> it lists the namespaces and the ConfigMaps of that
/// name, and writes (server-side apply) only where one is missing or differs: a new namespace, a deleted or edited
/// ConfigMap, is set right within that period. Kubernetes' own namespaces are left alone, and so are those MeshConfig's
/// <c>discoverySelectors</c> leave out.
/// </summary>
internal sealed partial class KubernetesRootPublisher : BackgroundService
{
    /// <summary>The ConfigMap's key, as <c>meshctl ca root -o configmap</c> writes it.</summary>
    public const string Key = "root-cert.pem";

    private const string FieldManager = "meshkit-controlplane";

    // Kubernetes' own namespaces, as Istio leaves them out.
    private static readonly HashSet<string> SystemNamespaces = new(StringComparer.Ordinal) { "kube-system", "kube-public", "kube-node-lease" };

    private readonly ControlPlaneOptions _options;
    private readonly string _roots;
    private readonly TimeProvider _time;
    private readonly ILogger<KubernetesRootPublisher> _logger;
    private readonly HttpClient _http;
    private readonly KubernetesConfigStore _cluster;

    public KubernetesRootPublisher(IOptions<ControlPlaneOptions> options, Ca.CertificateAuthority ca, KubernetesConfigStore cluster, TimeProvider time, ILogger<KubernetesRootPublisher> logger)
    {
        _cluster = cluster;
        _options = options.Value;
        _roots = string.Concat(ca.Bundle.Roots.Select(root => root.ExportCertificatePem() + "\n"));
        _time = time;
        _logger = logger;
        _http = new HttpClient(KubernetesApi.CreateHandler(_options)) { BaseAddress = KubernetesApi.Server(_options), Timeout = TimeSpan.FromSeconds(30) };
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await PublishAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is KubernetesApiException or HttpRequestException or IOException or JsonException or TaskCanceledException or InvalidOperationException)
            {
                Log.Failed(_logger, _options.KubernetesRootCertConfigMap, ex.Message, _options.KubernetesRootCertResync);
            }

            try
            {
                await Task.Delay(_options.KubernetesRootCertResync, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Writes the ConfigMap where it is missing or differs; a namespace that refuses it does not stop the others.</summary>
    private async Task PublishAsync(CancellationToken cancellationToken)
    {
        var name = _options.KubernetesRootCertConfigMap;
        IEnumerable<string> namespaces = _options.KubernetesNamespaces.Count > 0
            ? _options.KubernetesNamespaces
            : (await ListAsync("api/v1/namespaces", cancellationToken).ConfigureAwait(false)).Select(n => n["metadata"]?["name"]?.GetValue<string>()).OfType<string>();

        // What is there: one list of the ConfigMaps of that name (per namespace when only some are read).
        var current = new Dictionary<string, string?>(StringComparer.Ordinal);
        var selector = "fieldSelector=" + Uri.EscapeDataString($"metadata.name={name}");
        var lists = _options.KubernetesNamespaces.Count > 0
            ? _options.KubernetesNamespaces.Select(ns => $"api/v1/namespaces/{Uri.EscapeDataString(ns)}/configmaps?{selector}")
            : [$"api/v1/configmaps?{selector}"];
        foreach (var list in lists)
        {
            foreach (var map in await ListAsync(list, cancellationToken).ConfigureAwait(false))
            {
                if (map["metadata"]?["name"]?.GetValue<string>() == name && map["metadata"]?["namespace"]?.GetValue<string>() is { } ns)
                {
                    current[ns] = map["data"]?[Key]?.GetValue<string>();
                }
            }
        }

        // As istiod, only in the namespaces MeshConfig's discoverySelectors pick (every one without them).
        foreach (var ns in namespaces.Where(n => !SystemNamespaces.Contains(n) && _cluster.Selects(n)).Distinct(StringComparer.Ordinal))
        {
            if (current.TryGetValue(ns, out var data) && data == _roots)
            {
                continue;
            }

            try
            {
                await ApplyAsync(ns, name, cancellationToken).ConfigureAwait(false);
                Log.Written(_logger, name, ns);
            }
            catch (Exception ex) when (ex is KubernetesApiException or HttpRequestException)
            {
                Log.NamespaceFailed(_logger, name, ns, ex.Message);
            }
        }
    }

    private async Task<IEnumerable<JsonNode>> ListAsync(string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        await KubernetesApi.EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        var list = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
        return list?["items"]?.AsArray().OfType<JsonNode>().ToArray() ?? [];
    }

    // Server-side apply: creates the ConfigMap or sets its key, one request either way, owning only what it writes.
    private async Task ApplyAsync(string ns, string name, CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "ConfigMap",
            ["metadata"] = new JsonObject
            {
                ["name"] = name,
                ["namespace"] = ns,
                ["labels"] = new JsonObject { ["app.kubernetes.io/managed-by"] = FieldManager },
            },
            ["data"] = new JsonObject { [Key] = _roots },
        };
        var path = $"api/v1/namespaces/{Uri.EscapeDataString(ns)}/configmaps/{Uri.EscapeDataString(name)}?fieldManager={FieldManager}&force=true";
        using var request = new HttpRequestMessage(HttpMethod.Patch, path)
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/apply-patch+yaml");
        await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        await KubernetesApi.EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Wrote the mesh's roots to ConfigMap {Name} in namespace {Namespace}", EventName = "RootConfigMapWritten")]
        public static partial void Written(ILogger logger, string name, string @namespace);

        [LoggerMessage(2, LogLevel.Warning, "Writing ConfigMap {Name} in namespace {Namespace} failed: {Error}; retrying at the next resync", EventName = "RootConfigMapFailed")]
        public static partial void NamespaceFailed(ILogger logger, string name, string @namespace, string error);

        [LoggerMessage(3, LogLevel.Warning, "Keeping ConfigMap {Name} in the cluster's namespaces failed: {Error}; retrying in {Delay}", EventName = "RootConfigMapsFailed")]
        public static partial void Failed(ILogger logger, string name, string error, TimeSpan delay);
    }
}
