using MeshKit.Config;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.ControlPlane.Ca;
using MeshKit.Security;
using Microsoft.Extensions.Options;
using MeshKit.ControlPlane.Discovery;
using MeshKit.ControlPlane.Registry;
using MeshKit.ControlPlane.Sources;

namespace MeshKit.ControlPlane;

/// <summary>
/// The admin port: debug endpoints (config status with every diagnostic, registry, connections), health, and join
/// tokens. They answer on the admin listener only (loopback by default), never on the discovery ports.
/// </summary>
internal static class AdminEndpoints
{
    /// <summary>The path of the control plane's metrics in Prometheus's format (istiod's, on its monitoring port).</summary>
    public const string MetricsPath = "/metrics";

    /// <summary>The connection item that marks a connection accepted by the admin listener.</summary>
    public const string AdminConnection = "meshkit.admin";

    private static readonly TimeSpan DefaultTokenLifetime = TimeSpan.FromHours(24);
    private static readonly TimeSpan MaxTokenLifetime = TimeSpan.FromDays(365);

    public static void Map(WebApplication app)
    {
        // Admin routes exist only on admin connections: on the discovery ports they are not found.
        app.Use((context, next) =>
        {
            var admin = context.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items.ContainsKey(AdminConnection) == true;
            if (!admin && !context.Request.ContentType.IsGrpc())
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }

            if (admin && context.Request.ContentType.IsGrpc())
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }

            // With ControlPlane:AdminToken set, everything but health needs it (meshctl --admin-token), and the
            // metrics unless they are served to anyone (ControlPlane:AnonymousMetrics).
            var options = context.RequestServices.GetRequiredService<IOptions<ControlPlaneOptions>>().Value;
            var token = options.AdminToken;
            if (admin && !string.IsNullOrEmpty(token) && !context.Request.Path.StartsWithSegments("/healthz")
                && !(options.AnonymousMetrics && context.Request.Path.Equals(MetricsPath, StringComparison.OrdinalIgnoreCase) && HttpMethods.IsGet(context.Request.Method))
                && !System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(context.Request.Headers.Authorization.ToString()),
                    System.Text.Encoding.UTF8.GetBytes("Bearer " + token)))
            {
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                return Task.CompletedTask;
            }

            return next(context);
        });

        MapConfigApi(app);
        MapStatus(app);
        // The mesh's roots, as PEM: what a workload given a service-account token must be given to trust (on
        // Kubernetes, the ConfigMap meshkit-root-cert), wherever the CA keeps them (a folder, etcd).
        app.MapGet("/ca/root", (CertificateAuthority ca) => Results.Text(
            string.Concat(ca.Bundle.Roots.Select(root => root.ExportCertificatePem() + "\n")), "application/x-pem-file"));

        app.MapGet("/version", () => Results.Json(new
        {
            version = typeof(AdminEndpoints).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
                .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "0.0.0",
        }));

        app.MapPost("/tokens", (string? @namespace, string? serviceAccount, string? ttl, CertificateAuthority ca, TimeProvider time) =>
        {
            var lifetime = DefaultTokenLifetime;
            if (ttl is not null && (!Durations.TryParse(ttl, out lifetime) || lifetime <= TimeSpan.Zero || lifetime > MaxTokenLifetime))
            {
                return Results.BadRequest(new { error = $"ttl '{ttl}' must be a duration such as 24h, at most {MaxTokenLifetime.TotalDays} days" });
            }

            if (string.IsNullOrEmpty(@namespace) || !Names.IsDnsLabel(@namespace))
            {
                return Results.BadRequest(new { error = "namespace is required and must be a DNS-1123 label" });
            }

            serviceAccount = string.IsNullOrEmpty(serviceAccount) ? "default" : serviceAccount;
            try
            {
                var token = ca.CreateJoinToken(@namespace, serviceAccount, lifetime);
                return Results.Json(new
                {
                    token,
                    identity = new MeshKit.Security.SpiffeId(ca.TrustDomain, @namespace, serviceAccount).ToString(),
                    expiresAt = time.GetUtcNow() + lifetime,
                });
            }
            catch (ArgumentException ex)
            {
                return Results.BadRequest(new { error = ex.Message });
            }
        });

        app.MapGet("/healthz/ready", (MeshStatePublisher publisher) =>
            publisher.Current is null ? Results.StatusCode(503) : Results.Text("ok"));

        app.MapGet("/debug/config", (IConfigStore store) => Results.Json(store.Sources.Select(s => new
        {
            file = s.Name,
            accepted = s.Accepted,
            resources = s.ResourceCount,
            diagnostics = s.Diagnostics.Select(d => new
            {
                severity = d.Severity.ToString().ToLowerInvariant(),
                file = d.File,
                line = d.Line,
                column = d.Column,
                path = d.Path,
                message = d.Message,
                resource = d.Resource,
                text = d.ToString(),
            }),
        })));

        // How the Kubernetes API server is read, kind by kind (what istioctl's sync status shows for istiod's informers).
        app.MapGet("/debug/kubernetes", (IConfigStore store) => store is KubernetesConfigStore cluster
            ? Results.Json(cluster.Status.Select(k => new
            {
                kind = k.Kind,
                @namespace = k.Namespace ?? "*",
                apiVersion = k.ApiVersion,
                state = k.State,
                error = k.Error,
                listed = k.Listed,
                objects = k.Kind == KubernetesConfigStore.Namespaces.Kind ? cluster.NamespacesRead : k.Kind == KubernetesConfigStore.Pods.Kind ? cluster.PodsRead : k.Kind == KubernetesConfigStore.Nodes.Kind ? cluster.NodesRead : cluster.Sources.Count(s => s.Name.StartsWith($"kubernetes/{k.Kind}/{(k.Namespace is null ? string.Empty : k.Namespace + "/")}", StringComparison.Ordinal)),
            }))
            : Results.NotFound(new { error = "the control plane does not read a Kubernetes API server (ControlPlane:KubernetesApiServer)" }));

        app.MapGet("/debug/registry", (IWorkloadRegistry registry) => Results.Json(registry.Entries.Select(e => new
        {
            instanceId = e.Workload.InstanceId,
            service = e.Workload.Service,
            @namespace = e.Workload.Namespace,
            serviceAccount = e.Workload.ServiceAccount,
            address = e.Workload.Address,
            ports = e.Workload.Ports.Select(p => new { p.Name, p.ServicePort, p.TargetPort, p.Protocol }),
            labels = e.Workload.Labels,
            registeredAt = e.RegisteredAt,
        })));

        // The cross-resource findings of the state in force (what the control plane logs when it compiles the mesh: a
        // subset no DestinationRule defines, a host no service has). `after=N` waits up to `wait` (default 5 s, at most
        // 30 s) for a state newer than N, so a client that changed the config reads the findings of its change.
        app.MapGet("/debug/findings", async (long? after, string? wait, MeshStatePublisher publisher, TimeProvider time, CancellationToken cancellationToken) =>
        {
            var state = publisher.Current;
            if (after is { } version && (state is null || state.Version <= version))
            {
                var patience = TimeSpan.FromSeconds(5);
                if (wait is not null && (!Durations.TryParse(wait, out patience) || patience > TimeSpan.FromSeconds(30)))
                {
                    return Results.BadRequest(new { error = "wait must be a duration of at most 30s (e.g. 500ms, 5s)" });
                }

                using var timeout = new CancellationTokenSource(patience, time);
                using var waiting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                try
                {
                    state = await publisher.WaitForNewerAsync(version, waiting.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    return Results.Json(new { version = state?.Version, published = false, findings = Array.Empty<object>() }, statusCode: StatusCodes.Status202Accepted);
                }
            }

            return Results.Json(new
            {
                version = state?.Version,
                published = state is not null,
                findings = (state?.Mesh.Diagnostics ?? []).Select(d => new { file = d.File, text = d.ToString() }),
            });
        });

        app.MapGet("/debug/connections", (ConnectionTracker tracker, MeshStatePublisher publisher) => Results.Json(new
        {
            version = publisher.Current?.Version,
            connections = tracker.Connections.OrderBy(c => c.Workload.Service, StringComparer.Ordinal).ThenBy(c => c.Workload.InstanceId, StringComparer.Ordinal).Select(c => new
            {
                instanceId = c.Workload.InstanceId,
                service = c.Workload.Service,
                @namespace = c.Workload.Namespace,
                identity = c.Workload.Identity,
                labels = c.Workload.Labels,
                connectedAt = c.ConnectedAt,
                sent = c.SentVersions,
                acked = c.AckedVersions,
                status = StatusOf(c),
                lastNack = c.LastNack,
                lastNackAt = c.LastNackAt,
            }),
        }));
    }

    /// <summary>Like istioctl proxy-status: SYNCED (every type ACKed at the version sent), STALE (an answer is awaited), NACK.</summary>
    internal static string StatusOf(WorkloadConnection connection)
    {
        var sent = connection.SentVersions;
        var acked = connection.AckedVersions;
        if (connection.LastNack is not null && sent.Any(s => !acked.TryGetValue(s.Key, out var a) || a != s.Value))
        {
            return "NACK";
        }

        return connection.HasPending || sent.Any(s => !acked.TryGetValue(s.Key, out var a) || a != s.Value) ? "STALE" : "SYNCED";
    }

    private static void MapStatus(WebApplication app)
    {
        var json = new Google.Protobuf.JsonFormatter(Google.Protobuf.JsonFormatter.Settings.Default
            .WithTypeRegistry(Google.Protobuf.Reflection.TypeRegistry.FromFiles(MeshKit.Protocol.V1.DiscoveryReflection.Descriptor))
            .WithIndentation());

        // What one workload is sent, computed as the stream computes it: istioctl proxy-config's equivalent.
        app.MapGet("/debug/workloads/{id}/config", (string id, string? type, ConnectionTracker tracker, IWorkloadRegistry registry, MeshStatePublisher publisher, CertificateAuthority ca) =>
        {
            // An instance id, or a service as `meshctl status` shows it (service.namespace), or a service name alone.
            var dot = id.IndexOf('.', StringComparison.Ordinal);
            var workload = tracker.Connections.Select(c => c.Workload).FirstOrDefault(w => w.InstanceId == id)
                ?? registry.Workloads.FirstOrDefault(w => w.InstanceId == id)
                ?? (dot > 0
                    ? registry.Workloads.FirstOrDefault(w => w.Service == id[..dot] && w.Namespace == id[(dot + 1)..])
                    : registry.Workloads.FirstOrDefault(w => w.Service == id));
            if (workload is null || publisher.Current is not { } state)
            {
                return Results.NotFound(new { error = $"no workload '{id}' (an instance id, a service.namespace or a service name)" });
            }

            var view = state.Mesh.ViewFor(workload.Namespace, workload.Labels, workload.Service);
            string Format(string typeUrl, Func<Google.Protobuf.IMessage, Google.Protobuf.IMessage>? select = null) =>
                "[" + string.Join(",", view.OfType(typeUrl).Values.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r =>
                {
                    var message = r.Resource_.Unpack(Google.Protobuf.Reflection.TypeRegistry.FromFiles(MeshKit.Protocol.V1.DiscoveryReflection.Descriptor));
                    return json.Format(select is null ? message : select(message));
                })) + "]";
            string body;
            switch (type ?? "routes")
            {
                case "routes":
                    body = Format(ResourceTypes.Routes);
                    break;
                case "clusters":
                    body = Format(ResourceTypes.Cluster, m =>
                    {
                        var c = ((MeshKit.Protocol.V1.ServiceCluster)m).Clone();
                        c.Endpoints.Clear();
                        return c;
                    });
                    break;
                case "endpoints":
                    body = Format(ResourceTypes.Cluster, m =>
                    {
                        var c = (MeshKit.Protocol.V1.ServiceCluster)m;
                        var only = new MeshKit.Protocol.V1.ServiceCluster { Host = c.Host };
                        only.Endpoints.AddRange(c.Endpoints);
                        return only;
                    });
                    break;
                case "authz":
                    body = Format(ResourceTypes.Inbound);
                    break;
                case "telemetry":
                    body = Format(ResourceTypes.Inbound, m => ((MeshKit.Protocol.V1.InboundPolicy)m).Telemetry ?? new MeshKit.Protocol.V1.TelemetryPolicy());
                    break;
                case "secrets":
                    body = System.Text.Json.JsonSerializer.Serialize(new
                    {
                        identity = workload.Identity.Length > 0 ? workload.Identity : null,
                        trustDomain = ca.TrustDomain,
                        roots = ca.Bundle.Roots.Select(r => new { subject = r.Subject, notAfter = r.NotAfter.ToUniversalTime(), sha256 = CertificateProfile.Pin(r) }),
                    });
                    break;
                default:
                    return Results.BadRequest(new { error = $"unknown type '{type}'; expected routes, clusters, endpoints, secrets, authz or telemetry" });
            }

            return Results.Text(body, "application/json");
        });
    }

    // meshctl apply / get / delete: the config folder is the store, so applying is writing a file there (after the
    // same validation the folder's watcher runs) and deleting is removing it.
    private static void MapConfigApi(WebApplication app)
    {
        // The configuration in force; the cluster's pods (their labels, for endpoints) are not configuration.
        app.MapGet("/config/resources", (IConfigStore store) => Results.Json(store.Current.Resources.Where(r => r is not MeshKit.Config.Model.KubernetesPod).Select(r => new
        {
            kind = r.Kind,
            @namespace = r.Namespace,
            name = r.Name,
            file = r.Source.File,
            line = r.Source.Line,
        })));

        app.MapPost("/config", async (string? name, HttpRequest request, IConfigWriter writer) =>
        {
            if (!IsFileName(name))
            {
                return Results.BadRequest(new { error = "name must be a file name ending in .yaml or .yml (letters, digits, '-', '_', '.')" });
            }

            using var reader = new StreamReader(request.Body);
            var text = await reader.ReadToEndAsync(request.HttpContext.RequestAborted).ConfigureAwait(false);
            if (text.Length > 4 * 1024 * 1024)
            {
                return Results.BadRequest(new { error = "the file is larger than 4 MiB" });
            }

            var result = ConfigParser.Parse(text, name!);
            var diagnostics = result.Diagnostics.Select(d => d.ToString()).ToArray();
            if (result.HasErrors)
            {
                return Results.BadRequest(new { error = "the configuration is invalid; nothing was applied", diagnostics });
            }

            if (await writer.ApplyAsync(name!, text, result.Resources, request.HttpContext.RequestAborted).ConfigureAwait(false) is { } refused)
            {
                return Results.Conflict(new { error = refused + "; nothing was applied", diagnostics });
            }

            return Results.Json(new { applied = name, resources = result.Resources.Select(r => $"{r.Kind} {r.Namespace}/{r.Name}"), diagnostics });
        });

        app.MapDelete("/config", async (string? name, IConfigWriter writer, CancellationToken cancellationToken) =>
        {
            if (!IsFileName(name))
            {
                return Results.BadRequest(new { error = "name must be a file name ending in .yaml or .yml" });
            }

            return await writer.DeleteAsync(name!, cancellationToken).ConfigureAwait(false)
                ? Results.Json(new { deleted = name })
                : Results.NotFound(new { error = $"no source '{name}' in the configuration" });
        });
    }

    private static bool IsFileName(string? name) =>
        name is { Length: > 0 and <= 200 } && (name.EndsWith(".yaml", StringComparison.Ordinal) || name.EndsWith(".yml", StringComparison.Ordinal))
        && name[0] != '.' && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static bool IsGrpc(this string? contentType) =>
        contentType is not null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);
}
