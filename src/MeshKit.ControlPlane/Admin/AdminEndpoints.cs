using MeshKit.ControlPlane.Discovery;
using MeshKit.ControlPlane.Registry;
using MeshKit.ControlPlane.Sources;

namespace MeshKit.ControlPlane;

/// <summary>Read-only debug endpoints (config status with every diagnostic, registry, connections) and health.</summary>
internal static class AdminEndpoints
{
    public static void Map(WebApplication app)
    {
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
}
