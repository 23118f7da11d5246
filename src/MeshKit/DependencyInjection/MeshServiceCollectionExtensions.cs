using MeshKit;
using MeshKit.Http;
using MeshKit.Snapshot;
using MeshKit.Sync;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers MeshKit in an application's services.</summary>
public static class MeshServiceCollectionExtensions
{
    /// <summary>
    /// Adds the mesh: options (from the <c>Mesh</c> configuration section, then <paramref name="configure"/>), validated
    /// on start; the control-plane sync or static config; and the mesh handler in every <c>IHttpClientFactory</c> client.
    /// Calling it more than once is harmless (later delegates still apply).
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Optional changes to the options.</param>
    /// <returns>The services, for chaining.</returns>
    public static IServiceCollection AddMesh(this IServiceCollection services, Action<MeshOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<MeshOptions>().BindConfiguration(MeshOptions.SectionName).ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        if (services.Any(d => d.ServiceType == typeof(MeshMarkerService)))
        {
            return services;
        }

        services.AddSingleton<MeshMarkerService>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<MeshOptions>, PodInfo>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MeshOptions>, MeshOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<MeshSnapshotProvider>();
        services.TryAddSingleton<WorkloadAnnouncer>();
        services.TryAddSingleton<ControlPlaneEndpoints>();
        services.TryAddSingleton<MeshSyncStatus>();
        services.TryAddSingleton<MeshKit.Security.WorkloadIdentity>();
        services.TryAddSingleton<MeshKit.Security.CertificateManager>();
        services.AddMetrics();
        services.TryAddSingleton<MeshKit.Telemetry.MeshMetrics>();
        services.TryAddSingleton<MeshKit.Telemetry.IstioMetrics>();
        services.AddHttpClient();

        // CUSTOM AuthorizationPolicies: checks go through the mesh like any call; the provider's timeout bounds them.
        services.AddHttpClient(MeshKit.Security.ExtAuthzClient.ClientName, c => c.Timeout = Timeout.InfiniteTimeSpan);
        services.TryAddSingleton<MeshKit.Security.ExtAuthzClient>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHttpMessageHandlerBuilderFilter, MeshHandlerBuilderFilter>());
        services.TryAddEnumerable(ServiceDescriptor.Transient<Microsoft.AspNetCore.Hosting.IStartupFilter, Microsoft.AspNetCore.Builder.MeshStartupFilter>());

        // The certificate first: Kestrel's TLS and the discovery stream need it. Then static config, so that a valid
        // file is in force before the control plane is asked.
        services.AddHostedService(sp => sp.GetRequiredService<MeshKit.Security.CertificateManager>());
        // First of all Kestrel configuration: endpoint defaults apply to endpoints declared after them, so the TLS hook
        // must be in place before an app's own ConfigureKestrel(k => k.Listen(...)) runs, whenever AddMesh is called.
        services.Insert(0, ServiceDescriptor.Singleton<IConfigureOptions<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>, MeshKit.Security.InboundTlsSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, StaticConfigService>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, MeshSyncService>());
        return services;
    }
}

/// <summary>
/// Marks that <see cref="MeshServiceCollectionExtensions.AddMesh"/> was called, and counts the mesh middlewares the
/// application's pipelines hold (each is made when its pipeline is built, before the first request).
/// </summary>
internal sealed class MeshMarkerService
{
    private int _middlewares;

    /// <summary>
    /// Gets whether more than one mesh middleware was made (<c>AddMesh()</c> puts one first, and a minimal-hosting app's
    /// own <c>UseMesh()</c> or a branch's adds another): only then must each request be marked so that it passes once.
    /// </summary>
    public bool SeveralMiddlewares => Volatile.Read(ref _middlewares) > 1;

    /// <summary>Counts a mesh middleware made.</summary>
    public MeshMarkerService MiddlewareMade()
    {
        Interlocked.Increment(ref _middlewares);
        return this;
    }
}
