using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.Infrastructure;

/// <summary>A real control plane per test, and the workloads the test starts, all stopped afterwards.</summary>
public abstract class MeshTestBase : IAsyncLifetime
{
    protected const string ReviewsHost = "reviews.default.svc.cluster.local";

    /// <summary>Services for a workload whose access log goes to a fake logger (its category turned on).</summary>
    protected static void AccessLogging(IServiceCollection services) => services
        .AddFakeLogging()
        .AddLogging(l => Microsoft.Extensions.Logging.FilterLoggingBuilderExtensions.AddFilter(l, MeshKit.Http.MeshHandler.AccessLogCategory, Microsoft.Extensions.Logging.LogLevel.Information));

    /// <summary>The access-log entries a workload started with <see cref="AccessLogging"/> has written so far.</summary>
    protected static List<string> AccessLogEntries(TestWorkload workload) => workload.Services.GetRequiredService<Microsoft.Extensions.Logging.Testing.FakeLogCollector>().GetSnapshot()
        .Where(r => r.Category == MeshKit.Http.MeshHandler.AccessLogCategory).Select(r => r.Message).ToList();

    protected List<IAsyncDisposable> Owned { get; } = [];

    /// <summary>Waits until <paramref name="client"/> knows the identity of <c>reviews</c>' one endpoint (mutual TLS reaches it then).</summary>
    protected static Task KnowsIdentityAsync(TestWorkload client) =>
        Eventually.TrueAsync(() => client.Snapshot.TryResolve("reviews", out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints is [{ Identity.Length: > 0 }], "the endpoint's identity is known");

    protected TestControlPlane ControlPlane { get; set; } = null!;

    public virtual async Task InitializeAsync() => ControlPlane = await TestControlPlane.StartAsync();

    public virtual async Task DisposeAsync()
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

    /// <summary>Stops the test's control plane; it is returned to be started again (same TLS port, CA and config folder) and disposed by the caller.</summary>
    protected async Task<TestControlPlane> StopControlPlaneAsync()
    {
        var down = ControlPlane;
        await down.StopAsync();
        return down;
    }

    /// <summary>Starts a control plane again where <paramref name="down"/> was: its TLS port, CA and config folder.</summary>
    protected async Task RestartControlPlaneAsync(TestControlPlane down) =>
        ControlPlane = await TestControlPlane.StartAsync(down.ConfigDirectory, securePort: down.SecureAddress.Port);

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

    /// <summary>
    /// Starts a workload that pays for its first certificate with a Kubernetes service-account token (written to a file
    /// in <paramref name="folder"/>, as the kubelet projects it), trusting the control plane's root (or <paramref name="rootFile"/>).
    /// </summary>
    protected Task<TestWorkload> StartWithServiceAccountTokenAsync(string folder, string serviceAccount, string token, string? rootFile = null, TimeSpan? initialFetch = null)
    {
        var tokenFile = Path.Combine(folder, $"token-{Guid.NewGuid():N}");
        File.WriteAllText(tokenFile, token);
        return StartAsync("reviews", "v1", o =>
        {
            o.ControlPlaneAddress = ControlPlane.SecureAddress;
            o.ServiceAccount = serviceAccount;
            o.ServiceAccountTokenFile = tokenFile;
            o.RootCertificateFile = rootFile ?? Path.Combine(ControlPlane.CaDirectory, "root-cert.pem");
            o.InitialFetchTimeout = initialFetch ?? TimeSpan.FromSeconds(20);
        });
    }
}
