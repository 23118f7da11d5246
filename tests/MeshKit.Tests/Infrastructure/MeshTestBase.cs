using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.Infrastructure;

/// <summary>A real control plane per test, and the workloads the test starts, all stopped afterwards.</summary>
public abstract class MeshTestBase : IAsyncLifetime
{
    protected const string ReviewsHost = "reviews.default.svc.cluster.local";

    protected List<IAsyncDisposable> Owned { get; } = [];

    protected TestControlPlane ControlPlane { get; set; } = null!;

    public virtual async Task InitializeAsync() => ControlPlane = await TestControlPlane.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(Owned))
        {
            await owned.DisposeAsync();
        }

        await ControlPlane.DisposeAsync();
    }

    protected async Task<TestWorkload> StartAsync(string service, string version, Action<MeshOptions>? configure = null, Action<IServiceCollection>? services = null, bool http2Only = false, Action<Microsoft.AspNetCore.Builder.WebApplication>? app = null)
    {
        var workload = await TestWorkload.StartAsync(service, version, ControlPlane.DiscoveryAddress, configure, services, http2Only, app);
        Owned.Add(workload);
        return workload;
    }

    /// <summary>Starts a workload on the control plane's TLS port, with a join token for its service account.</summary>
    protected async Task<TestWorkload> StartSecureAsync(string service, string? serviceAccount = null, Action<MeshOptions>? configure = null, Action<IServiceCollection>? services = null, Action<Microsoft.AspNetCore.Builder.WebApplication>? app = null)
    {
        serviceAccount ??= service;
        var token = ControlPlane.CreateJoinToken("default", serviceAccount);
        var workload = await TestWorkload.StartAsync(service, "v1", ControlPlane.SecureAddress, o =>
        {
            o.ServiceAccount = serviceAccount;
            o.JoinToken = token;
            configure?.Invoke(o);
        }, services, configureApp: app);
        Owned.Add(workload);
        return workload;
    }
}
