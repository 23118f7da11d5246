using MeshKit.Config;
using MeshKit.ControlPlane.Ca;
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

            return next(context);
        });

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

        app.MapGet("/debug/registry", (WorkloadRegistry registry) => Results.Json(registry.Entries.Select(e => new
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

        app.MapGet("/debug/connections", (ConnectionTracker tracker, MeshStatePublisher publisher) => Results.Json(new
        {
            version = publisher.Current?.Version,
            connections = tracker.Connections.Select(c => new
            {
                instanceId = c.Workload.InstanceId,
                service = c.Workload.Service,
                @namespace = c.Workload.Namespace,
                connectedAt = c.ConnectedAt,
                acked = c.AckedVersions,
                lastNack = c.LastNack,
                lastNackAt = c.LastNackAt,
            }),
        }));
    }

    private static bool IsGrpc(this string? contentType) =>
        contentType is not null && contentType.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);
}
