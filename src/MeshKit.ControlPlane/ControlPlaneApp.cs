using MeshKit.ControlPlane.Discovery;
using MeshKit.ControlPlane.Registry;
using MeshKit.ControlPlane.Sources;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshKit.ControlPlane;

/// <summary>Builds the control plane as a web application, for the executable and for hosting it in-process (tests, samples).</summary>
public static class ControlPlaneApp
{
    /// <summary>
    /// Command-line switches and the settings they set. Environment variables use the standard form
    /// <c>MESHKIT_ControlPlane__ConfigDirectory</c>.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Switches { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["--config-dir"] = "ControlPlane:ConfigDirectory",
        ["--listen"] = "ControlPlane:Listen",
        ["--admin-listen"] = "ControlPlane:AdminListen",
        ["--debounce"] = "ControlPlane:Debounce",
        ["--max-debounce"] = "ControlPlane:MaxDebounce",
        ["--registration-grace"] = "ControlPlane:RegistrationGrace",
        ["--startup-sync-delay"] = "ControlPlane:StartupSyncDelay",
        ["--config-poll-interval"] = "ControlPlane:ConfigPollInterval",
    };

    /// <summary>Creates the control plane application.</summary>
    /// <param name="args">Command-line arguments (see <see cref="Switches"/>).</param>
    /// <param name="configure">Optional changes to the options after configuration is bound.</param>
    /// <returns>The application, not yet started.</returns>
    public static WebApplication Build(string[] args, Action<ControlPlaneOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Configuration.AddEnvironmentVariables("MESHKIT_");
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.Configuration.AddCommandLine(args, (IDictionary<string, string>)Switches);
        builder.Services.AddOptions<ControlPlaneOptions>()
            .Bind(builder.Configuration.GetSection(ControlPlaneOptions.SectionName))
            .Configure(o => configure?.Invoke(o))
            .Validate(o => !string.IsNullOrWhiteSpace(o.Listen), "ControlPlane:Listen is required")
            .Validate(o => o.Debounce >= TimeSpan.Zero && o.MaxDebounce >= o.Debounce, "ControlPlane:Debounce must be >= 0 and <= MaxDebounce")
            .ValidateOnStart();

        var options = new ControlPlaneOptions();
        builder.Configuration.GetSection(ControlPlaneOptions.SectionName).Bind(options);
        configure?.Invoke(options);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            Listen(kestrel, options.Listen, HttpProtocols.Http2);
            if (!string.IsNullOrWhiteSpace(options.AdminListen))
            {
                Listen(kestrel, options.AdminListen, HttpProtocols.Http1);
            }
        });

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<DirectoryConfigStore>();
        builder.Services.AddSingleton<IConfigStore>(sp => sp.GetRequiredService<DirectoryConfigStore>());
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DirectoryConfigStore>());
        builder.Services.AddSingleton<WorkloadRegistry>();
        builder.Services.AddSingleton<ConnectionTracker>();
        builder.Services.AddSingleton<MeshStatePublisher>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MeshStatePublisher>());
        builder.Services.AddGrpc();

        var app = builder.Build();
        app.MapGrpcService<DiscoveryService>();
        AdminEndpoints.Map(app);
        return app;
    }

    private static void Listen(KestrelServerOptions kestrel, string url, HttpProtocols protocols)
    {
        var uri = new Uri(url);
        if (uri.Scheme != Uri.UriSchemeHttp)
        {
            throw new InvalidOperationException($"'{url}': only http:// listen URLs are supported until the control plane serves TLS");
        }

        var address = uri.Host is "localhost" ? System.Net.IPAddress.Loopback
            : uri.Host is "*" or "0.0.0.0" ? System.Net.IPAddress.Any
            : System.Net.IPAddress.Parse(uri.Host.Trim('[', ']'));
        kestrel.Listen(address, uri.Port, listen => listen.Protocols = protocols);
    }
}
