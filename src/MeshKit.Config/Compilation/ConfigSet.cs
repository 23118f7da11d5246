using MeshKit.Config.Model;

namespace MeshKit.Config.Compilation;

/// <summary>An immutable set of validated configuration resources: the input of compilation.</summary>
public sealed class ConfigSet
{
    /// <summary>Gets an empty set.</summary>
    public static ConfigSet Empty { get; } = new([]);

    /// <summary>Initializes a new instance of the <see cref="ConfigSet"/> class.</summary>
    /// <param name="resources">The resources; later duplicates of one key replace earlier ones.</param>
    public ConfigSet(IEnumerable<ConfigResource> resources)
    {
        ArgumentNullException.ThrowIfNull(resources);
        var byKey = new Dictionary<string, ConfigResource>(StringComparer.Ordinal);
        foreach (var resource in resources)
        {
            byKey[resource.Key] = resource;
        }

        Resources = byKey.Values.OrderBy(r => r.Kind, StringComparer.Ordinal)
            .ThenBy(r => r.Namespace, StringComparer.Ordinal)
            .ThenBy(r => r.Name, StringComparer.Ordinal)
            .ToArray();
        ServiceEntries = Resources.OfType<ServiceEntry>().ToArray();
        KubernetesServices = Resources.OfType<KubernetesService>().ToArray();
        KubernetesEndpoints = Resources.OfType<KubernetesEndpoints>().ToArray();
        KubernetesPods = Resources.OfType<KubernetesPod>().ToArray();
        GatewayApiRoutes = Resources.OfType<GatewayRouteResource>().ToArray();
        MeshConfig = Resources.OfType<MeshConfigResource>().FirstOrDefault();
        VirtualServices = [.. Resources.OfType<VirtualService>(), .. GatewayRoutes.ToVirtualServices(GatewayApiRoutes, ServiceEntries, KubernetesServices, MeshConfig?.ClusterDomain ?? MeshCompiler.DefaultClusterDomain)];
        DestinationRules = Resources.OfType<DestinationRule>().ToArray();
        PeerAuthentications = Resources.OfType<PeerAuthentication>().ToArray();
        AuthorizationPolicies = Resources.OfType<AuthorizationPolicy>().ToArray();
        RequestAuthentications = Resources.OfType<RequestAuthentication>().ToArray();
        Telemetries = Resources.OfType<TelemetryResource>().ToArray();
        Sidecars = Resources.OfType<SidecarResource>().ToArray();
        WorkloadEntries = Resources.OfType<WorkloadEntryResource>().ToArray();
    }

    /// <summary>Gets the WorkloadEntries, ordered by namespace and name.</summary>
    public IReadOnlyList<WorkloadEntryResource> WorkloadEntries { get; }

    /// <summary>Gets the Sidecars, ordered by namespace and name.</summary>
    public IReadOnlyList<SidecarResource> Sidecars { get; }

    /// <summary>Gets every resource, ordered by kind, namespace and name.</summary>
    public IReadOnlyList<ConfigResource> Resources { get; }

    /// <summary>Gets the VirtualServices, and those the HTTPRoutes make (one per route and Service: <see cref="VirtualService.Gateway"/>).</summary>
    public IReadOnlyList<VirtualService> VirtualServices { get; }

    /// <summary>Gets the HTTPRoutes and GRPCRoutes attached to Services (Gateway API for the mesh), ordered by kind, namespace and name.</summary>
    public IReadOnlyList<GatewayRouteResource> GatewayApiRoutes { get; }

    /// <summary>Gets the DestinationRules.</summary>
    public IReadOnlyList<DestinationRule> DestinationRules { get; }

    /// <summary>Gets the ServiceEntries.</summary>
    public IReadOnlyList<ServiceEntry> ServiceEntries { get; }

    /// <summary>Gets the Kubernetes Services, ordered by namespace and name.</summary>
    public IReadOnlyList<KubernetesService> KubernetesServices { get; }

    /// <summary>Gets the Kubernetes Services' EndpointSlices and Endpoints, ordered by kind, namespace and name.</summary>
    public IReadOnlyList<KubernetesEndpoints> KubernetesEndpoints { get; }

    /// <summary>Gets the cluster's pods (read from the API server): the labels of the endpoints that run no MeshKit.</summary>
    public IReadOnlyList<KubernetesPod> KubernetesPods { get; }

    /// <summary>Gets the PeerAuthentications, ordered by namespace and name.</summary>
    public IReadOnlyList<PeerAuthentication> PeerAuthentications { get; }

    /// <summary>Gets the AuthorizationPolicies, ordered by namespace and name.</summary>
    public IReadOnlyList<AuthorizationPolicy> AuthorizationPolicies { get; }

    /// <summary>Gets the RequestAuthentications, ordered by namespace and name.</summary>
    public IReadOnlyList<RequestAuthentication> RequestAuthentications { get; }

    /// <summary>Gets every <c>jwksUri</c> of the RequestAuthentications: what the control plane fetches.</summary>
    public IEnumerable<string> JwksUris => RequestAuthentications.SelectMany(r => r.JwtRules).Select(j => j.JwksUri).OfType<string>().Distinct(StringComparer.Ordinal);

    /// <summary>Returns how long to wait for <paramref name="jwksUri"/>: the longest <c>timeout</c> of the rules naming it, or <paramref name="fallback"/>.</summary>
    public TimeSpan JwksTimeout(string jwksUri, TimeSpan fallback) =>
        RequestAuthentications.SelectMany(r => r.JwtRules).Where(j => j.JwksUri == jwksUri).Select(j => j.Timeout).OfType<TimeSpan>().DefaultIfEmpty(fallback).Max();

    /// <summary>Gets the Telemetry resources, ordered by namespace and name.</summary>
    public IReadOnlyList<TelemetryResource> Telemetries { get; }

    /// <summary>Gets the mesh settings document, if any.</summary>
    public MeshConfigResource? MeshConfig { get; }
}
