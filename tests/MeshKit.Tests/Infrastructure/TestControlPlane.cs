using System.Net.Http.Json;
using System.Text.Json;
using MeshKit.ControlPlane;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Infrastructure;

/// <summary>A real control plane on loopback (port 0 unless told), with a temporary config directory.</summary>
public sealed class TestControlPlane : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly bool _ownsDirectory;

    private TestControlPlane(WebApplication app, string configDirectory, bool ownsDirectory, Uri discovery, Uri secure, Uri admin, string caDirectory)
    {
        _app = app;
        ConfigDirectory = configDirectory;
        _ownsDirectory = ownsDirectory;
        DiscoveryAddress = discovery;
        SecureAddress = secure;
        AdminAddress = admin;
        CaDirectory = caDirectory;
    }

    /// <summary>Gets the TLS port's address: certificates and discovery authenticated by them.</summary>
    public Uri SecureAddress { get; }

    public string CaDirectory { get; }

    /// <summary>Creates a join token, as <c>meshctl token create</c> does.</summary>
    public string CreateJoinToken(string ns = "default", string serviceAccount = "default", TimeSpan? lifetime = null) =>
        Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>().CreateJoinToken(ns, serviceAccount, lifetime ?? TimeSpan.FromHours(1));

    public string ConfigDirectory { get; }

    public Uri DiscoveryAddress { get; }

    public Uri AdminAddress { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<TestControlPlane> StartAsync(string? configDirectory = null, int discoveryPort = 0, int adminPort = 0, Action<ControlPlaneOptions>? configure = null, int securePort = 0)
    {
        var owns = configDirectory is null;
        configDirectory ??= Directory.CreateTempSubdirectory("meshkit-cp-").FullName;
        var caDirectory = Path.Combine(configDirectory + "-ca");
        var app = ControlPlaneApp.Build([], o =>
        {
            o.ConfigDirectory = configDirectory;
            o.CaDirectory = caDirectory;
            o.SecureListen = $"https://127.0.0.1:{securePort}";
            o.Listen = $"http://127.0.0.1:{discoveryPort}";
            o.AdminListen = $"http://127.0.0.1:{adminPort}";
            o.Debounce = TimeSpan.FromMilliseconds(50);
            o.MaxDebounce = TimeSpan.FromMilliseconds(500);
            o.StartupSyncDelay = TimeSpan.Zero;
            o.RegistrationGrace = TimeSpan.FromSeconds(2);
            o.ConfigPollInterval = TimeSpan.FromMilliseconds(250);
            configure?.Invoke(o);
        });
        app.Logger.LogDebug("starting test control plane");
        await app.StartAsync();
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToArray();
        var plain = addresses.Where(a => a.StartsWith("http://", StringComparison.Ordinal)).ToArray();
        var secure = addresses.First(a => a.StartsWith("https://", StringComparison.Ordinal));
        return new TestControlPlane(app, configDirectory, owns, new Uri(plain[0]), new Uri(secure), new Uri(plain[^1]), caDirectory);
    }

    /// <summary>Writes a config file atomically (write then rename), as an editor or a deployment tool would.</summary>
    public void WriteConfig(string name, string yaml)
    {
        var temp = Path.Combine(ConfigDirectory, "." + name + ".tmp");
        File.WriteAllText(temp, yaml);
        File.Move(temp, Path.Combine(ConfigDirectory, name), overwrite: true);
    }

    public async Task<JsonElement> GetAdminJsonAsync(string path)
    {
        using var http = new HttpClient { BaseAddress = AdminAddress };
        return await http.GetFromJsonAsync<JsonElement>(path);
    }

    public async Task StopAsync() => await _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync();
        }
        catch (ObjectDisposedException)
        {
        }

        await _app.DisposeAsync();
        if (_ownsDirectory)
        {
            try
            {
                Directory.Delete(ConfigDirectory, recursive: true);
                Directory.Delete(CaDirectory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
