using MeshKit;
using MeshKit.Security;
using MeshKit.Snapshot;
using MeshKit.Sync;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Health checks of the mesh.</summary>
public static class MeshHealthCheckExtensions
{
    /// <summary>
    /// Adds the <c>mesh</c> health check: unhealthy without configuration to route by or (secure workloads) without a
    /// valid certificate; degraded while the control plane is unreachable (the workload keeps routing on the config it
    /// holds), when the last config pushed was rejected, or when the certificate expires within a tenth of its lifetime.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="name">The check's name.</param>
    /// <param name="tags">Tags for filtering (e.g. <c>ready</c>).</param>
    /// <returns>The builder, for chaining.</returns>
    public static IHealthChecksBuilder AddMeshHealthChecks(this IHealthChecksBuilder builder, string name = "mesh", IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Add(new HealthCheckRegistration(name, sp => ActivatorUtilities.CreateInstance<MeshHealthCheck>(sp), HealthStatus.Unhealthy, tags));
    }
}

/// <summary>The <c>mesh</c> health check.</summary>
internal sealed class MeshHealthCheck(MeshSnapshotProvider provider, MeshSyncStatus status, WorkloadIdentity identity, IOptions<MeshOptions> options, TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object>
        {
            ["configVersion"] = provider.Current.Version,
            ["controlPlaneConnected"] = status.Connected,
        };
        if (!provider.Current.IsReady)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("no mesh configuration yet", data: data));
        }

        if (identity.Enabled)
        {
            if (identity.Current is not { } certificate)
            {
                return Task.FromResult(HealthCheckResult.Unhealthy("no mesh certificate yet", data: data));
            }

            var now = time.GetUtcNow();
            data["certificateNotAfter"] = certificate.NotAfter;
            if (now >= certificate.NotAfter)
            {
                return Task.FromResult(HealthCheckResult.Unhealthy("the mesh certificate has expired", data: data));
            }

            if (certificate.NotAfter - now < (certificate.NotAfter - certificate.NotBefore) / 10)
            {
                return Task.FromResult(HealthCheckResult.Degraded("the mesh certificate expires soon and has not been renewed", data: data));
            }
        }

        if (options.Value.ControlPlaneAddress is not null && !status.Connected)
        {
            return Task.FromResult(HealthCheckResult.Degraded("the control plane is unreachable; routing on the last config", data: data));
        }

        if (status.LastNack is { } nack)
        {
            data["lastNack"] = nack;
            return Task.FromResult(HealthCheckResult.Degraded("the last config pushed was rejected; the previous one is in force", data: data));
        }

        return Task.FromResult(HealthCheckResult.Healthy("in sync", data));
    }
}
