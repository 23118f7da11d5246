using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>Builds a <see cref="CompiledMesh"/> from configuration and the registry.</summary>
public static class MeshCompiler
{
    /// <summary>The default trust domain.</summary>
    public const string DefaultTrustDomain = "cluster.local";

    /// <summary>The default root namespace (mesh-wide policy lives here).</summary>
    public const string DefaultRootNamespace = "istio-system";

    /// <summary>The default cluster DNS suffix.</summary>
    public const string DefaultClusterDomain = "cluster.local";

    /// <summary>Compiles <paramref name="config"/> and the live <paramref name="workloads"/> into protocol resources.</summary>
    /// <param name="config">The validated configuration.</param>
    /// <param name="workloads">The registry: every live workload's announcement.</param>
    /// <param name="registryKnown">Whether <paramref name="workloads"/> is the live registry; offline validation has
    /// none, and then a host no ServiceEntry declares is not worth a warning.</param>
    /// <returns>The compiled mesh.</returns>
    /// <param name="jwks">JSON Web Key Sets the control plane fetched, by <c>jwksUri</c>; a provider whose keys are missing rejects every token.</param>
    public static CompiledMesh Compile(ConfigSet config, IEnumerable<WorkloadAnnouncement> workloads, bool registryKnown = true, IReadOnlyDictionary<string, string>? jwks = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(workloads);
        var diagnostics = new List<ConfigDiagnostic>();
        var settings = new MeshSettings
        {
            TrustDomain = config.MeshConfig?.TrustDomain ?? DefaultTrustDomain,
            RootNamespace = config.MeshConfig?.RootNamespace ?? DefaultRootNamespace,
            OutboundTrafficPolicy = config.MeshConfig?.OutboundTrafficPolicy ?? "ALLOW_ANY",
            ClusterDomain = config.MeshConfig?.ClusterDomain ?? DefaultClusterDomain,
            DefaultHttpRetryPolicy = CompiledMesh.ToProto(config.MeshConfig?.DefaultHttpRetryPolicy),
            ProxyHeaders = config.MeshConfig?.ProxyHeaders is { } headers
                ? new ProxyHeaders
                {
                    RequestIdDisabled = headers.RequestIdDisabled,
                    AttemptCountDisabled = headers.AttemptCountDisabled,
                    EnvoyDebugHeadersDisabled = headers.EnvoyDebugHeadersDisabled,
                    ForwardedClientCertDisabled = headers.ForwardedClientCert == "SANITIZE",
                }
                : null,
        };
        var domain = settings.ClusterDomain;
        var services = new Dictionary<string, ServiceInfo>(StringComparer.Ordinal);

        workloads = workloads.OrderBy(w => w.InstanceId, StringComparer.Ordinal).ToArray();
        foreach (var workload in workloads)
        {
            var host = HostNames.ServiceHost(workload.Service, workload.Namespace, domain);
            if (!services.TryGetValue(host, out var service))
            {
                service = new ServiceInfo(host, workload.Namespace, workload.Service, external: false, exportTo: []);
                services[host] = service;
            }

            foreach (var port in workload.Ports)
            {
                service.Ports.TryAdd(port.ServicePort, new ServicePort { Number = port.ServicePort, Name = port.Name, Protocol = port.Protocol });
            }

            if (workload.Address.Length == 0 || workload.Ports.Count == 0)
            {
                continue;
            }

            var endpoint = EndpointOf(workload);
            var peer = PeerAuthentications.Resolve(config.PeerAuthentications, settings.RootNamespace, workload.Namespace, workload.Labels);
            foreach (var port in workload.Ports)
            {
                endpoint.Ports.Add(new EndpointPort
                {
                    Name = port.Name, ServicePort = port.ServicePort, TargetPort = port.TargetPort,
                    MtlsDisabled = PeerAuthentications.ModeOn(peer, port.TargetPort) == MtlsMode.Disable,
                });
            }

            service.Endpoints.Add(endpoint);
        }

        var registered = workloads as IReadOnlyCollection<WorkloadAnnouncement> ?? workloads.ToArray();
        foreach (var entry in config.ServiceEntries)
        {
            AddServiceEntry(entry, services, domain, registered, config, settings);
        }

        var declaredEndpoints = new DeclaredEndpoints(config, registered, settings, diagnostics);
        foreach (var kubernetesService in config.KubernetesServices.Where(k => k.ExternalName is null))
        {
            AddServiceEntry(kubernetesService.AsServiceEntry(), services, domain, registered, config, settings);
            var service = services[HostNames.Qualify(kubernetesService.Name, kubernetesService.Namespace, domain)];
            if (kubernetesService.ExportTo.Count > 0)
            {
                service.ExportTo = kubernetesService.ExportTo;
            }

            service.SessionPersistence ??= kubernetesService.SessionPersistence;
            declaredEndpoints.AddTo(service, kubernetesService);
        }

        declaredEndpoints.ReportUnclaimed();

        var aliases = AddExternalNames(config, services, domain, registered, settings, diagnostics);
        if (config.MeshConfig?.EnableAutoMtls == false)
        {
            // Istio's enableAutoMtls: false: no endpoint is assumed to speak mutual TLS; ISTIO_MUTUAL still asks for it.
            foreach (var endpoint in services.Values.SelectMany(s => s.Endpoints))
            {
                endpoint.AutoMtlsOff = true;
            }
        }

        CheckReferences(config, services, settings, diagnostics, registryKnown);
        CheckOnePerWorkload(config.PeerAuthentications, r => ((PeerAuthentication)r).Selector, registered, diagnostics);
        CheckOnePerWorkload(config.Telemetries, r => ((TelemetryResource)r).Selector, registered, diagnostics);
        CheckOnePerWorkload(config.Sidecars, r => ((SidecarResource)r).Selector, registered, diagnostics, "spec.workloadSelector");
        return new CompiledMesh(config, settings, services, diagnostics, jwks) { Aliases = aliases };
    }

    // ExternalName Services, once every other host is known: an alias of a service of the mesh (Istio's reading since
    // 1.20: its calls take that service's routes and endpoints), else the named host by DNS on the Service's ports.
    private static List<ServiceAlias> AddExternalNames(ConfigSet config, Dictionary<string, ServiceInfo> services, string domain, IReadOnlyCollection<WorkloadAnnouncement> workloads, MeshSettings settings, List<ConfigDiagnostic> diagnostics)
    {
        var aliases = new List<ServiceAlias>();
        foreach (var alias in config.KubernetesServices.Where(k => k.ExternalName is not null))
        {
            var host = HostNames.Qualify(alias.Name, alias.Namespace, domain);
            var target = alias.ExternalName!;
            if (services.ContainsKey(host))
            {
                diagnostics.Add(Warn(alias, "metadata.name", $"'{host}' is a service of the mesh already (its workloads or another resource declare it): the alias is ignored"));
            }
            else if (services.ContainsKey(target))
            {
                aliases.Add(new ServiceAlias(host, alias.Namespace, alias.Name, alias.ExportTo, target, alias.DisplayName));
            }
            else if (alias.Ports.Count > 0)
            {
                AddServiceEntry(new ServiceEntry
                {
                    Kind = alias.Kind, ApiVersion = alias.ApiVersion, Name = alias.Name, Namespace = alias.Namespace, Source = alias.Source,
                    Hosts = [alias.Name], Ports = alias.Ports, Location = "MESH_EXTERNAL", Resolution = "DNS", ExportTo = alias.ExportTo,
                    Endpoints = [new WorkloadEntrySpec { Address = target }],
                }, services, domain, workloads, config, settings);
            }
            else
            {
                diagnostics.Add(Warn(alias, "spec.externalName", $"'{target}' is no service of the mesh, and the Service has no ports to send its calls to by DNS: calls to '{host}' pass through the mesh unrouted"));
            }
        }

        return aliases;
    }

    internal static Endpoint EndpointOf(WorkloadAnnouncement workload)
    {
        var endpoint = new Endpoint
        {
            Address = workload.Address,
            Locality = workload.Locality ?? new Locality(),
            Weight = 1,
            ServiceAccount = workload.ServiceAccount,
            Origin = workload.InstanceId,
            Identity = workload.Identity,
        };
        foreach (var (k, v) in workload.Labels)
        {
            endpoint.Labels[k] = v;
        }

        return endpoint;
    }

    /// <summary>The label by which Istio's automatic mutual TLS knows that a ServiceEntry endpoint has a sidecar.</summary>
    public const string TlsModeLabel = "security.istio.io/tlsMode";

    private static void AddServiceEntry(ServiceEntry entry, Dictionary<string, ServiceInfo> services, string domain, IReadOnlyCollection<WorkloadAnnouncement> workloads, ConfigSet config, MeshSettings settings)
    {
        var rootNamespace = settings.RootNamespace;
        foreach (var rawHost in entry.Hosts)
        {
            var host = HostNames.Qualify(rawHost, entry.Namespace, domain);
            if (!services.TryGetValue(host, out var service))
            {
                var shortName = host.EndsWith($".{entry.Namespace}.svc.{domain}", StringComparison.Ordinal) ? host[..host.IndexOf('.', StringComparison.Ordinal)] : string.Empty;
                service = new ServiceInfo(host, entry.Namespace, shortName, entry.Location == "MESH_EXTERNAL", entry.ExportTo);
                services[host] = service;
            }

            foreach (var port in entry.Ports)
            {
                service.Ports.TryAdd(port.Number, new ServicePort { Number = port.Number, Name = port.Name, Protocol = port.Protocol.ToLowerInvariant() });
            }

            var origin = $"ServiceEntry {entry.Namespace}/{entry.Name}";
            if (entry.WorkloadSelector is { } selector)
            {
                // The entry's endpoints are the live workloads of its namespace that carry the labels.
                foreach (var workload in workloads)
                {
                    if (workload.Namespace != entry.Namespace || workload.Address.Length == 0 || !selector.Matches(workload.Labels))
                    {
                        continue;
                    }

                    // A workload registered under this very host is its endpoint already (a Kubernetes Service named
                    // as the workloads' own service, as Bookinfo's Services are): it gains the Service's ports it
                    // does not announce (a Service on port 80 in front of workloads that announce 9080).
                    var own = HostNames.ServiceHost(workload.Service, workload.Namespace, domain) == host
                        ? service.Endpoints.FirstOrDefault(e => e.Origin == workload.InstanceId)
                        : null;
                    if (own is null && HostNames.ServiceHost(workload.Service, workload.Namespace, domain) == host)
                    {
                        continue;
                    }

                    var endpoint = own ?? EndpointOf(workload);
                    var peer = PeerAuthentications.Resolve(config.PeerAuthentications, rootNamespace, workload.Namespace, workload.Labels);

                    foreach (var port in entry.Ports.Where(p => !endpoint.Ports.Any(e => e.ServicePort == p.Number)))
                    {
                        // A port named as the target is the only one (Kubernetes: a pod without it is no endpoint of that port).
                        var target = port.TargetPortName is { } targetName ? workload.Ports.FirstOrDefault(p => p.Name == targetName)
                            : workload.Ports.FirstOrDefault(p => p.Name == port.Name)
                            ?? workload.Ports.FirstOrDefault(p => p.ServicePort == (port.TargetPort ?? port.Number))
                            ?? workload.Ports.FirstOrDefault();
                        if (target is not null)
                        {
                            endpoint.Ports.Add(new EndpointPort
                            {
                                Name = port.Name, ServicePort = port.Number, TargetPort = target.TargetPort,
                                MtlsDisabled = PeerAuthentications.ModeOn(peer, target.TargetPort) == MtlsMode.Disable,
                            });
                        }
                    }

                    if (own is null && endpoint.Ports.Count > 0)
                    {
                        service.Endpoints.Add(endpoint);
                    }
                }

                // And the WorkloadEntries of its namespace that carry them (VMs and other workloads declared, not registered).
                foreach (var workloadEntry in config.WorkloadEntries)
                {
                    if (workloadEntry.Namespace == entry.Namespace && selector.Matches(workloadEntry.Spec.Labels))
                    {
                        service.Endpoints.Add(StaticEndpoint(entry, workloadEntry.Spec, $"WorkloadEntry {workloadEntry.Namespace}/{workloadEntry.Name}", settings));
                    }
                }

                continue;
            }

            if (entry.Resolution is "NONE" or "DYNAMIC_DNS" && entry.Endpoints.Count == 0)
            {
                // NONE: the call goes where the caller addressed it (Envoy's original destination); DYNAMIC_DNS: to the
                // call's own host name, resolved when the connection is made (Envoy's dynamic forward proxy). In
                // process both are the client's socket resolving the request's host.
                service.Passthrough = true;
                continue;
            }

            if (entry.Endpoints.Count == 0 && entry.Resolution != "STATIC")
            {
                // DNS without endpoints: the host itself is the endpoint; the socket resolves it.
                var self = new Endpoint { Address = rawHost, Weight = 1, Origin = origin, Locality = new Locality() };
                foreach (var port in entry.Ports)
                {
                    self.Ports.Add(new EndpointPort { Name = port.Name, ServicePort = port.Number, TargetPort = port.TargetPort ?? port.Number });
                }

                service.Endpoints.Add(self);
                continue;
            }

            foreach (var workload in entry.Endpoints)
            {
                service.Endpoints.Add(StaticEndpoint(entry, workload, origin, settings));
            }
        }
    }

    // A declared endpoint (a ServiceEntry's, or a WorkloadEntry it selects) proves what its declaration says it is: its
    // service account's identity, else the entry's first subject alt name; automatic mutual TLS assumes it speaks
    // mutual TLS only when Istio's label says it has a sidecar (here: is a mesh workload).
    private static Endpoint StaticEndpoint(ServiceEntry entry, WorkloadEntrySpec workload, string origin, MeshSettings settings)
    {
        var identity = workload.ServiceAccount is { Length: > 0 } account
            ? $"spiffe://{settings.TrustDomain}/ns/{entry.Namespace}/sa/{account}"
            : entry.SubjectAltNames.FirstOrDefault() ?? string.Empty;
        var endpoint = new Endpoint
        {
            Address = workload.Address,
            Weight = workload.Weight is null or 0 ? 1 : workload.Weight.Value,
            ServiceAccount = workload.ServiceAccount ?? string.Empty,
            Origin = origin,
            Locality = Localities.Parse(workload.Locality),
            Identity = identity,
            AutoMtlsOff = identity.Length > 0 && !(workload.Labels.TryGetValue(TlsModeLabel, out var mode) && mode == "istio"),
        };
        endpoint.AcceptedIdentities.AddRange(entry.SubjectAltNames.Where(n => n != identity));
        foreach (var (k, v) in workload.Labels)
        {
            endpoint.Labels[k] = v;
        }

        foreach (var port in entry.Ports)
        {
            var target = workload.Ports.TryGetValue(port.Name, out var mapped) ? mapped : port.TargetPort ?? port.Number;
            endpoint.Ports.Add(new EndpointPort { Name = port.Name, ServicePort = port.Number, TargetPort = target });
        }

        return endpoint;
    }

    private static void CheckReferences(ConfigSet config, Dictionary<string, ServiceInfo> services, MeshSettings settings, List<ConfigDiagnostic> diagnostics, bool registryKnown)
    {
        CheckOnePerNamespace(config.PeerAuthentications, r => ((PeerAuthentication)r).Selector is null, diagnostics);
        CheckOnePerNamespace(config.Telemetries, r => ((TelemetryResource)r).Selector is null, diagnostics);
        CheckOnePerNamespace(config.Sidecars, r => ((SidecarResource)r).Selector is null, diagnostics);

        // An egress proxy the workloads cannot see fails their calls outside the registry (they never go around it).
        foreach (var sidecar in config.Sidecars)
        {
            if (sidecar.EgressProxy is not { } proxy)
            {
                continue;
            }

            var host = HostNames.Qualify(proxy.Host, sidecar.Namespace, settings.ClusterDomain);
            if (!services.TryGetValue(host, out var service))
            {
                if (registryKnown)
                {
                    diagnostics.Add(Warn(sidecar, "spec.outboundTrafficPolicy.egressProxy.host", $"'{host}' names no known service: calls to hosts outside the registry are answered 503 until one registers or is declared"));
                }
            }
            else if (!Sidecars.Admits(sidecar, sidecar.Namespace, host, service.Namespace, settings.ClusterDomain))
            {
                diagnostics.Add(Warn(sidecar, "spec.outboundTrafficPolicy.egressProxy.host", $"'{host}' is not among the Sidecar's egress hosts: its workloads do not see it, and their calls to hosts outside the registry are answered 503; add it to egress[].hosts"));
            }
        }

        foreach (var policy in config.AuthorizationPolicies)
        {
            if (policy.Action == "CUSTOM" && config.MeshConfig?.ExtensionProviders.Any(p => p.Name == policy.Provider) != true)
            {
                diagnostics.Add(Warn(policy, "spec.provider.name", $"no extension provider '{policy.Provider}' is defined in MeshConfig (extensionProviders with envoyExtAuthzHttp or envoyExtAuthzGrpc); the requests this policy matches are denied until one is"));
            }
        }

        var domain = settings.ClusterDomain;
        var subsets = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var rule in config.DestinationRules)
        {
            var host = HostNames.Qualify(rule.Host, rule.Namespace, domain);
            if (!subsets.TryGetValue(host, out var names))
            {
                subsets[host] = names = new HashSet<string>(StringComparer.Ordinal);
            }

            names.UnionWith(rule.Subsets.Select(s => s.Name));

            // A PROXY protocol header is for a server that reads it (a load balancer, HAProxy, nginx): MeshKit's own
            // inbound side reads one only from the peers a workload lists, so connections to its workloads likely fail.
            if (registryKnown && services.TryGetValue(host, out var service) && service.Endpoints.Any(IsMeshKitWorkload))
            {
                var policies = new[] { ("spec.trafficPolicy", rule.TrafficPolicy) }
                    .Concat(rule.Subsets.Select((subset, i) => ($"spec.subsets[{i}].trafficPolicy", subset.TrafficPolicy)));
                foreach (var (path, policy) in policies.Where(p => p.Item2?.ProxyProtocol is not null))
                {
                    diagnostics.Add(Warn(rule, path + ".proxyProtocol", $"'{host}' has MeshKit workloads: connections to them fail while this is set unless they accept this caller's PROXY protocol headers (Mesh:ProxyProtocolFrom); it is meant for servers that read them, such as a load balancer or HAProxy"));
                }
            }
        }

        foreach (var vs in config.VirtualServices)
        {
            if (vs.Gateway is { } origin && vs.Hosts.Count == 0)
            {
                diagnostics.Add(Warn(vs, origin.ParentPath, origin.Unresolved ?? "names no ServiceEntry of this name and namespace: the route applies once one is defined"));
            }

            for (var h = 0; h < vs.Hosts.Count; h++)
            {
                var host = HostNames.Qualify(vs.Hosts[h], vs.Namespace, domain);
                var hostPath = vs.Gateway?.ParentPath ?? $"spec.hosts[{h}]";
                if (registryKnown && !services.Keys.Any(s => HostNames.Specificity(host, s) >= 0))
                {
                    diagnostics.Add(Warn(vs, hostPath, $"host '{host}' names no known service yet; the rules apply once one registers or a ServiceEntry declares it"));
                }

                // Istio reports a VirtualService and an HTTPRoute for one host as a conflict; MeshKit matches the
                // VirtualService's rules first (CompiledMesh) and says so on the route.
                if (vs.Gateway is not null && config.VirtualServices.FirstOrDefault(o => o.Gateway is null && o.Hosts.Any(x => HostNames.Qualify(x, o.Namespace, domain) == host)) is { } other)
                {
                    diagnostics.Add(Warn(vs, hostPath, $"{other.DisplayName} routes '{host}' too: its rules are matched before this route's (Istio reports the two as a conflict); route the host with one of them"));
                }

                if (vs.Gateway is { Producer: var producer } && GatewayRoutes.ShadowingGrpcRoute(vs, config.VirtualServices.Where(o => o.Namespace == vs.Namespace || (producer && o.Gateway?.Producer == true))) is { } grpc)
                {
                    diagnostics.Add(Warn(vs, hostPath, $"{grpc.DisplayName} is attached to the same Service port: it routes the calls and this route is ignored (Gateway API applies one route kind per Service port, GRPCRoute first)"));
                }
            }

            for (var r = 0; r < vs.Http.Count; r++)
            {
                for (var d = 0; d < vs.Http[r].Route.Count; d++)
                {
                    var destination = vs.Http[r].Route[d].Destination;
                    var host = HostNames.Qualify(destination.Host, vs.Namespace, domain);
                    if (destination.Subset is { } subset && (!subsets.TryGetValue(host, out var known) || !known.Contains(subset)))
                    {
                        diagnostics.Add(Warn(vs, $"spec.http[{r}].route[{d}].destination.subset", $"subset '{subset}' of '{host}' is defined by no DestinationRule; calls routed there fail with 503 until it is"));
                    }
                }
            }
        }
    }

    private static bool IsMeshKitWorkload(Endpoint endpoint) => EndpointOrigins.IsRegistered(endpoint.Origin);

    // Istio allows one selector-less PeerAuthentication or Telemetry per namespace (the root namespace's is the mesh's):
    // it takes the oldest; MeshKit, which sees no creation times, takes the first by name and says which it ignores.
    // Resources that select the same workload can only be told apart per workload, at resolution: not reported here.
    private static void CheckOnePerNamespace(IEnumerable<ConfigResource> resources, Func<ConfigResource, bool> namespaceWide, List<ConfigDiagnostic> diagnostics)
    {
        foreach (var group in resources.Where(namespaceWide).GroupBy(r => (r.Kind, r.Namespace)))
        {
            var kept = group.First(); // ConfigSet orders by kind, namespace and name
            foreach (var ignored in group.Skip(1))
            {
                diagnostics.Add(Warn(ignored, "metadata.name", $"{kept.DisplayName} already applies to the whole namespace '{ignored.Namespace}' (the first by name; Istio takes the oldest): this one is ignored"));
            }
        }
    }

    // One selecting PeerAuthentication, Telemetry or Sidecar per workload (Istio: the oldest applies); MeshKit applies the first
    // by name and reports each other one that selects a live workload, naming one such workload. Workloads are grouped
    // by namespace and label set first: a fleet of replicas is checked once.
    private static void CheckOnePerWorkload(IEnumerable<ConfigResource> resources, Func<ConfigResource, WorkloadSelector?> selector, IReadOnlyCollection<WorkloadAnnouncement> workloads, List<ConfigDiagnostic> diagnostics, string path = "spec.selector")
    {
        var selecting = resources.Where(r => selector(r) is not null).ToArray();
        if (selecting.Length < 2 || workloads.Count == 0)
        {
            return;
        }

        var reported = new HashSet<string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var workload in workloads)
        {
            if (!seen.Add(workload.Namespace + "|" + string.Join(",", workload.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => l.Key + "=" + l.Value))))
            {
                continue;
            }

            var matching = selecting.Where(r => r.Namespace == workload.Namespace && selector(r)!.Matches(workload.Labels)).ToArray();
            foreach (var ignored in matching.Skip(1).Where(r => reported.Add(r.Key)))
            {
                diagnostics.Add(Warn(ignored, path, $"{matching[0].DisplayName} also selects the workloads of {workload.Service}.{workload.Namespace} and applies to them (the first by name; Istio takes the oldest): this one does not"));
            }
        }
    }

    private static ConfigDiagnostic Warn(ConfigResource resource, string path, string message) =>
        resource.Finding(DiagnosticSeverity.Warning, path, message);
}
