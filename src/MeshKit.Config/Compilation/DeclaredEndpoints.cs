using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>
/// The endpoints Kubernetes Services' EndpointSlices and Endpoints list, read as Istio reads them: a Service without a
/// selector has the endpoints they list (ready and not terminating, unless it publishes not-ready addresses); a slice
/// someone other than Kubernetes' controller writes adds to a Service with one (the Endpoints of such a Service are
/// the controller's, and are not read). An address that is a live workload's (its address, and a port it listens on)
/// is that workload, with its identity, labels and locality, so automatic mutual TLS reaches it as Istio's sidecars
/// reach the pod a slice points at; any other address is a plain-text endpoint outside the mesh's identities.
/// </summary>
internal sealed class DeclaredEndpoints(ConfigSet config, IReadOnlyCollection<WorkloadAnnouncement> workloads, MeshSettings settings, List<ConfigDiagnostic> diagnostics)
{
    private readonly ILookup<(string Namespace, string Service), KubernetesEndpoints> _byService =
        config.KubernetesEndpoints.ToLookup(e => (e.Namespace, e.ServiceName));

    private readonly HashSet<KubernetesEndpoints> _claimed = [];

    // The cluster's pods by namespace and address: an endpoint that runs no MeshKit has its pod's labels (Istio's too).
    private readonly Dictionary<(string Namespace, string Address), KubernetesPod> _pods = config.KubernetesPods
        .SelectMany(pod => pod.Addresses.Select(address => (Key: (pod.Namespace, address.ToLowerInvariant()), Pod: pod)))
        .DistinctBy(p => p.Key)
        .ToDictionary(p => p.Key, p => p.Pod);

    // The live workloads by what a slice names (an address and a port it listens on); built when a slice needs it.
    private Dictionary<(string Address, uint Port), WorkloadAnnouncement>? _byAddress;

    /// <summary>Adds the endpoints of <paramref name="kubernetesService"/>'s slices (or Endpoints) to its host.</summary>
    public void AddTo(ServiceInfo service, KubernetesService kubernetesService)
    {
        // By workload instance, or address: the workloads a selector picked are there already (the first of each, when
        // two resources declaring the host picked one twice).
        var endpoints = new Dictionary<string, Endpoint>(StringComparer.OrdinalIgnoreCase);
        foreach (var picked in service.Endpoints.Where(e => EndpointOrigins.IsRegistered(e.Origin)))
        {
            endpoints.TryAdd(picked.Origin, picked);
        }

        foreach (var source in _byService[(kubernetesService.Namespace, kubernetesService.Name)])
        {
            _claimed.Add(source);

            // Kubernetes' endpoints controller writes a selector's pods into a Service's Endpoints (over whatever was
            // there): the selected workloads are that Service's endpoints already.
            if (source.Kind == "EndpointSlice" || kubernetesService.Selector is null)
            {
                AddFrom(source, service, kubernetesService, endpoints);
            }
        }
    }

    /// <summary>Reports the slices and Endpoints whose Service the configuration does not have.</summary>
    public void ReportUnclaimed()
    {
        foreach (var source in config.KubernetesEndpoints.Where(e => !_claimed.Contains(e)))
        {
            var path = source.Kind == "EndpointSlice" ? $"metadata.labels.{Parsing.ConfigParser.ServiceNameLabel}" : "metadata.name";
            var alias = config.KubernetesServices.Any(k => k.Namespace == source.Namespace && k.Name == source.ServiceName && k.ExternalName is not null);
            diagnostics.Add(source.Finding(DiagnosticSeverity.Warning, path, alias
                ? $"Service {source.Namespace}/{source.ServiceName} is an ExternalName alias, which has no endpoints of its own: these are ignored"
                : $"names Service {source.Namespace}/{source.ServiceName}, which the configuration does not have: its endpoints serve no host of the mesh until it does"));
        }
    }

    private void AddFrom(KubernetesEndpoints source, ServiceInfo service, KubernetesService kubernetesService, Dictionary<string, Endpoint> endpoints)
    {
        foreach (var subset in source.Subsets)
        {
            // Istio's most common surprise with hand-written endpoints: a port is the Service's port of its name.
            foreach (var port in subset.Ports.Where(p => !kubernetesService.Ports.Any(s => s.Name == p.Name)))
            {
                diagnostics.Add(source.Finding(DiagnosticSeverity.Warning, $"{port.Path}.name", port.Name.Length == 0
                    ? $"an unnamed port serves no port of Service {kubernetesService.Namespace}/{kubernetesService.Name}, whose ports are named: name it as the port it serves"
                    : $"'{port.Name}' names no port of Service {kubernetesService.Namespace}/{kubernetesService.Name}: the port is ignored"));
            }

            foreach (var address in subset.Addresses)
            {
                if (!kubernetesService.PublishNotReadyAddresses && (!address.Ready || address.Terminating))
                {
                    continue;
                }

                foreach (var servicePort in kubernetesService.Ports)
                {
                    if (subset.Ports.FirstOrDefault(p => p.Name == servicePort.Name) is { } port)
                    {
                        AddPort(source, service, address.Address, servicePort, port.Number, endpoints);
                    }
                }
            }
        }
    }

    private void AddPort(KubernetesEndpoints source, ServiceInfo service, string address, ServiceEntryPort servicePort, uint targetPort, Dictionary<string, Endpoint> endpoints)
    {
        var workload = Workload(address, targetPort);
        if (workload is not null && HostNames.ServiceHost(workload.Service, workload.Namespace, settings.ClusterDomain) == service.Host)
        {
            return; // registered under this very host: one of its endpoints already
        }

        var key = workload?.InstanceId ?? address;
        if (!endpoints.TryGetValue(key, out var endpoint))
        {
            endpoint = workload is null
                ? new Endpoint { Address = address, Weight = 1, Origin = $"{source.Kind} {source.Namespace}/{source.Name}", Locality = new Locality() }
                : MeshCompiler.EndpointOf(workload);
            if (workload is null && _pods.GetValueOrDefault((source.Namespace, address.ToLowerInvariant())) is { } pod)
            {
                // Its pod's labels: a DestinationRule's subsets pick it as they pick a MeshKit workload (a v1 that runs
                // no MeshKit beside a v2 that does, while a service moves over).
                foreach (var (label, value) in pod.Labels)
                {
                    endpoint.Labels[label] = value;
                }

                // And its node's locality, so locality-aware balancing places it as it places a MeshKit workload.
                if (pod.Locality is { Length: > 0 } locality)
                {
                    endpoint.Locality = Localities.Parse(locality);
                }
            }
            endpoints[key] = endpoint;
            service.Endpoints.Add(endpoint);
        }

        if (endpoint.Ports.Any(p => p.ServicePort == servicePort.Number))
        {
            return; // another slice listed it too (a mirror of an Endpoints, a slice per address family)
        }

        var disabled = workload is not null && PeerAuthentications.ModeOn(
            PeerAuthentications.Resolve(config.PeerAuthentications, settings.RootNamespace, workload.Namespace, workload.Labels), targetPort) == MtlsMode.Disable;
        endpoint.Ports.Add(new EndpointPort { Name = servicePort.Name, ServicePort = servicePort.Number, TargetPort = targetPort, MtlsDisabled = disabled });
    }

    private WorkloadAnnouncement? Workload(string address, uint port)
    {
        if (_byAddress is null)
        {
            _byAddress = [];
            foreach (var workload in workloads.Where(w => w.Address.Length > 0))
            {
                foreach (var listening in workload.Ports)
                {
                    _byAddress.TryAdd((workload.Address.ToLowerInvariant(), listening.TargetPort), workload);
                }
            }
        }

        return _byAddress.GetValueOrDefault((address.ToLowerInvariant(), port));
    }
}
