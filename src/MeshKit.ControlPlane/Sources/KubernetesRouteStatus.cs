using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshKit.Config.Validation;
using MeshKit.ControlPlane.Discovery;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// Writes the status of the cluster's HTTPRoutes and GRPCRoutes attached to Services (Gateway API's mesh routes,
/// GEP-1426), as Gateway API requires of every implementation and Istio writes it: for each <c>parentRefs</c> entry, the
/// conditions <c>Accepted</c> (the route is valid and its parent is a service of the mesh) and <c>ResolvedRefs</c> (every
/// backend is one), under MeshKit's controller name, at the route's generation. Written after each published state,
/// only where it differs from what the route shows (other controllers' entries are kept), with the route's resource
/// version as a precondition.
/// </summary>
internal sealed partial class KubernetesRouteStatus : BackgroundService
{
    /// <summary>The controller name MeshKit's entries carry, as Istio's carry <c>istio.io/mesh-controller</c>.</summary>
    public const string ControllerName = "meshkit.dev/mesh-controller";

    private static readonly TimeSpan RepeatWarning = TimeSpan.FromMinutes(5);

    private readonly KubernetesConfigStore _cluster;
    private readonly MeshStatePublisher _publisher;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<KubernetesRouteStatus> _logger;
    private readonly HttpClient _http;
    private (string Error, long At)? _warned;
    private long? _refusedAt;

    public KubernetesRouteStatus(KubernetesConfigStore cluster, MeshStatePublisher publisher, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<KubernetesRouteStatus> logger)
    {
        _cluster = cluster;
        _publisher = publisher;
        _options = options.Value;
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
        long version = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            MeshState state;
            try
            {
                state = await _publisher.WaitForNewerAsync(version, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            version = state.Version;
            if (_refusedAt is { } refused && _time.GetElapsedTime(refused) < RepeatWarning)
            {
                continue;
            }

            foreach (var route in _cluster.Routes())
            {
                try
                {
                    await WriteAsync(route, state, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is KubernetesApiException or HttpRequestException or IOException or JsonException or TaskCanceledException or InvalidOperationException)
                {
                    // A write that lost a race (409) is made again after the change that won it is read; a role
                    // without the status permission is one warning, and no write is tried for a few minutes.
                    if (ex is KubernetesApiException { Status: 409 })
                    {
                        continue;
                    }

                    var now = _time.GetTimestamp();
                    if (_warned is not { } last || last.Error != ex.Message || _time.GetElapsedTime(last.At, now) >= RepeatWarning)
                    {
                        _warned = (ex.Message, now);
                        Log.Failed(_logger, route.Source, ex.Message);
                    }

                    if (ex is KubernetesApiException { Status: 401 or 403 })
                    {
                        _refusedAt = now;
                        break;
                    }
                }
            }
        }
    }

    /// <summary>Writes one route's status when MeshKit's entries differ from those it shows.</summary>
    private async Task WriteAsync(ClusterObject route, MeshState state, CancellationToken cancellationToken)
    {
        if (JsonNode.Parse(route.Text) is not JsonObject entry || entry["metadata"] is not JsonObject metadata
            || metadata["name"]?.GetValue<string>() is not { } name || metadata["namespace"]?.GetValue<string>() is not { } ns)
        {
            return;
        }

        var generation = metadata["generation"]?.GetValue<long>() ?? 0;
        var shown = entry["status"]?["parents"] as JsonArray ?? [];
        var ours = Parents(entry, route, state.Mesh, ns, generation, shown);
        var others = shown.OfType<JsonObject>().Where(p => p["controllerName"]?.GetValue<string>() != ControllerName).ToList();
        var held = shown.OfType<JsonObject>().Where(p => p["controllerName"]?.GetValue<string>() == ControllerName).ToList();
        if (held.Count == ours.Count && held.Zip(ours).All(p => JsonNode.DeepEquals(p.First, p.Second)))
        {
            return;
        }

        // A merge patch replaces the list whole: the other controllers' entries go back as they were, and the route's
        // resource version makes the write fail (409) if anything changed since it was read.
        var parents = new JsonArray([.. others.Select(o => o.DeepClone()), .. ours]);
        var patch = new JsonObject
        {
            ["metadata"] = new JsonObject { ["resourceVersion"] = metadata["resourceVersion"]?.GetValue<string>() },
            ["status"] = new JsonObject { ["parents"] = parents },
        };
        var plural = route.Source.StartsWith("kubernetes/GRPCRoute/", StringComparison.Ordinal) ? "grpcroutes" : "httproutes";
        var apiVersion = entry["apiVersion"]?.GetValue<string>() ?? "gateway.networking.k8s.io/v1";
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"apis/{apiVersion}/namespaces/{Uri.EscapeDataString(ns)}/{plural}/{Uri.EscapeDataString(name)}/status")
        {
            Content = new StringContent(patch.ToJsonString(), Encoding.UTF8, new MediaTypeHeaderValue("application/merge-patch+json")),
        };
        await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        await KubernetesApi.EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
    }

    // MeshKit's entry for each parentRef to a Service (or ServiceEntry): what the route says of it, as of this state.
    private List<JsonObject> Parents(JsonObject entry, ClusterObject route, MeshKit.Config.Compilation.CompiledMesh mesh, string ns, long generation, JsonArray shown)
    {
        var refs = entry["spec"]?["parentRefs"] as JsonArray ?? [];
        var domain = mesh.Settings.ClusterDomain;
        var errors = route.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        var config = _cluster.Current;
        var unknownBackends = Backends(entry, ns, domain).Where(b => !mesh.ServiceHosts.Contains(b)).ToList();
        var result = new List<JsonObject>();
        for (var i = 0; i < refs.Count; i++)
        {
            if (refs[i] is not JsonObject parent || (parent["kind"]?.GetValue<string>() ?? "Gateway") is not ("Service" or "ServiceEntry"))
            {
                // A Gateway's entries are its controller's to write.
                continue;
            }

            var service = parent["kind"]?.GetValue<string>() == "Service" && parent["name"]?.GetValue<string>() is { } parentName
                ? $"{parentName}.{parent["namespace"]?.GetValue<string>() ?? ns}.svc.{domain}"
                : null;
            var (accepted, acceptedReason, acceptedMessage) = errors.Count > 0
                ? (false, "UnsupportedValue", $"{errors[0].Path}: {errors[0].Message}")
                : service is not null && !mesh.ServiceHosts.Contains(service)
                    ? (false, "NoMatchingParent", $"the Service '{service}' is no service of the mesh")
                    : config.VirtualServices.FirstOrDefault(v => v.Source.File == route.Source && v.Gateway?.ParentPath == $"spec.parentRefs[{i}]") is { Hosts.Count: 0 } orphan
                        ? (false, "NoMatchingParent", orphan.Gateway!.Unresolved ?? "no ServiceEntry of this name is defined in its namespace")
                        : (true, "Accepted", "the route is in force for this parent's calls");
            var (resolved, resolvedReason, resolvedMessage) = unknownBackends.Count == 0
                ? (true, "ResolvedRefs", "every backend is a service of the mesh")
                : (false, "BackendNotFound", $"{string.Join(", ", unknownBackends)} {(unknownBackends.Count == 1 ? "is" : "are")} no service of the mesh; calls routed there are answered 500");
            var before = shown.OfType<JsonObject>().FirstOrDefault(p => p["controllerName"]?.GetValue<string>() == ControllerName && JsonNode.DeepEquals(p["parentRef"], parent));
            result.Add(new JsonObject
            {
                ["parentRef"] = parent.DeepClone(),
                ["controllerName"] = ControllerName,
                ["conditions"] = new JsonArray(
                    Condition("Accepted", accepted, acceptedReason, acceptedMessage, generation, before),
                    Condition("ResolvedRefs", resolved, resolvedReason, resolvedMessage, generation, before)),
            });
        }

        return result;
    }

    // A condition; its transition time stays the one shown while its status does not change, as Kubernetes' conditions keep it.
    private JsonObject Condition(string type, bool status, string reason, string message, long generation, JsonObject? before)
    {
        var text = status ? "True" : "False";
        var shown = (before?["conditions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(c => c["type"]?.GetValue<string>() == type);
        var since = shown?["status"]?.GetValue<string>() == text && shown["lastTransitionTime"]?.GetValue<string>() is { } kept
            ? kept
            : _time.GetUtcNow().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        return new JsonObject
        {
            ["type"] = type,
            ["status"] = text,
            ["reason"] = reason,
            ["message"] = message,
            ["observedGeneration"] = generation,
            ["lastTransitionTime"] = since,
        };
    }

    // The hosts a route's backends name: a Service's (in the route's namespace unless another is named), or, as Istio
    // extends it, a ServiceEntry's host (kind Hostname).
    private static IEnumerable<string> Backends(JsonObject entry, string ns, string domain) =>
        (entry["spec"]?["rules"] as JsonArray ?? []).OfType<JsonObject>()
            .SelectMany(rule => (rule["backendRefs"] as JsonArray ?? []).OfType<JsonObject>())
            .Select(backend => (backend["kind"]?.GetValue<string>() ?? "Service") switch
            {
                "Service" when backend["name"]?.GetValue<string>() is { } service => $"{service}.{backend["namespace"]?.GetValue<string>() ?? ns}.svc.{domain}",
                "Hostname" => backend["name"]?.GetValue<string>(),
                _ => null,
            })
            .OfType<string>()
            .Distinct(StringComparer.Ordinal);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Writing the status of {Source} failed: {Error}; it is written again after the next change", EventName = "RouteStatusFailed")]
        public static partial void Failed(ILogger logger, string source, string error);
    }
}
