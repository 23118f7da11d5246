using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using MeshKit.ControlPlane.Ca;
using MeshKit.Security;
using MeshKit.ControlPlane.Discovery;
using MeshKit.ControlPlane.Registry;
using MeshKit.ControlPlane.Sources;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

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
        ["--secure-listen"] = "ControlPlane:SecureListen",
        ["--trust-domain"] = "ControlPlane:TrustDomain",
        ["--ca-dir"] = "ControlPlane:CaDirectory",
        ["--admin-listen"] = "ControlPlane:AdminListen",
        ["--admin-token"] = "ControlPlane:AdminToken",
        ["--anonymous-metrics"] = "ControlPlane:AnonymousMetrics",
        ["--kubernetes-api"] = "ControlPlane:KubernetesApiServer",
        ["--kubernetes-token-issuer"] = "ControlPlane:KubernetesTokenIssuer",
        ["--kubernetes-token-jwks-file"] = "ControlPlane:KubernetesTokenJwksFile",
        ["--kubernetes-token-jwks-uri"] = "ControlPlane:KubernetesTokenJwksUri",
        ["--debounce"] = "ControlPlane:Debounce",
        ["--max-debounce"] = "ControlPlane:MaxDebounce",
        ["--push-concurrency"] = "ControlPlane:PushConcurrency",
        ["--registration-grace"] = "ControlPlane:RegistrationGrace",
        ["--startup-sync-delay"] = "ControlPlane:StartupSyncDelay",
        ["--config-poll-interval"] = "ControlPlane:ConfigPollInterval",
        ["--store"] = "ControlPlane:Store",
        ["--etcd-endpoints"] = "ControlPlane:EtcdEndpoints",
        ["--etcd-prefix"] = "ControlPlane:EtcdPrefix",
        ["--etcd-lease-ttl"] = "ControlPlane:EtcdLeaseTtl",
        ["--etcd-import-directory"] = "ControlPlane:EtcdImportDirectory",
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
            .Validate(o => !string.IsNullOrWhiteSpace(o.Listen) || !string.IsNullOrWhiteSpace(o.SecureListen), "ControlPlane:Listen or ControlPlane:SecureListen is required")
            .Validate(o => o.WorkloadCertificateTtl > TimeSpan.Zero && o.MaxWorkloadCertificateTtl >= o.WorkloadCertificateTtl, "ControlPlane:WorkloadCertificateTtl must be > 0 and <= MaxWorkloadCertificateTtl")
            .Validate(o => o.PushConcurrency >= 1, "ControlPlane:PushConcurrency must be at least 1")
            .Validate(o => o.KubernetesRootCertResync >= TimeSpan.FromMilliseconds(100), "ControlPlane:KubernetesRootCertResync must be at least 100 ms")
            .Validate(o => string.IsNullOrEmpty(o.KubernetesTokenIssuer) || File.Exists(o.KubernetesTokenJwksFile) || Uri.TryCreate(o.KubernetesTokenJwksUri, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps, "ControlPlane:KubernetesTokenIssuer needs the cluster's keys: ControlPlane:KubernetesTokenJwksFile, a file holding them (kubectl get --raw /openid/v1/jwks), or ControlPlane:KubernetesTokenJwksUri, an https:// URL serving them")
            .Validate(o => o.Debounce >= TimeSpan.Zero && o.MaxDebounce >= o.Debounce, "ControlPlane:Debounce must be >= 0 and <= MaxDebounce")
            .Validate(o => o.UsesEtcd || string.Equals(o.Store, "directory", StringComparison.OrdinalIgnoreCase), "ControlPlane:Store must be 'directory' or 'etcd'")
            .Validate(o => !o.UsesEtcd || o.EtcdLeaseTtl >= TimeSpan.FromSeconds(2), "ControlPlane:EtcdLeaseTtl must be at least 2 s")
            .ValidateOnStart();

        var options = new ControlPlaneOptions();
        builder.Configuration.GetSection(ControlPlaneOptions.SectionName).Bind(options);
        configure?.Invoke(options);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            if (!string.IsNullOrWhiteSpace(options.Listen))
            {
                Listen(kestrel, options.Listen, Uri.UriSchemeHttp, listen => listen.Protocols = HttpProtocols.Http2);
            }

            if (!string.IsNullOrWhiteSpace(options.SecureListen))
            {
                var ca = kestrel.ApplicationServices.GetRequiredService<CertificateAuthority>();
                Listen(kestrel, options.SecureListen, Uri.UriSchemeHttps, listen =>
                {
                    listen.Protocols = HttpProtocols.Http2;
                    listen.UseHttps(new TlsHandshakeCallbackOptions
                    {
                        OnConnection = connection => ValueTask.FromResult(new SslServerAuthenticationOptions
                        {
                            ServerCertificateContext = ca.ServingContext,
                            ApplicationProtocols = [SslApplicationProtocol.Http2],

                            // Asked for, not required: a first certificate request comes with a join token instead.
                            // One that is sent must verify, or the handshake fails.
                            ClientCertificateRequired = true,
                            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                                certificate is null || ca.TryVerifyWorkload(
                                    CertificateProfile.AsCertificate2(certificate),
                                    chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>() ?? [],
                                    out _,
                                    out _),
                        }),
                    });
                });
            }

            if (!string.IsNullOrWhiteSpace(options.AdminListen))
            {
                Listen(kestrel, options.AdminListen, Uri.UriSchemeHttp, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    listen.Use(next => context =>
                    {
                        context.Items[AdminEndpoints.AdminConnection] = true;
                        return next(context);
                    });
                });
            }
        });

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ClusterKeys>();
        builder.Services.AddSingleton<TokenReviewer>();
        builder.Services.AddSingleton<DirectoryConfigStore>();
        if (options.UsesEtcd)
        {
            // Shared state: config and registrations in etcd, the CA's files shared through it before the CA loads.
            builder.Services.AddSingleton<Store.EtcdCluster>();
            builder.Services.AddSingleton(sp => new CertificateAuthority(sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<ControlPlaneOptions>>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<CertificateAuthority>>(), sp.GetRequiredService<Store.EtcdCluster>()));
            builder.Services.AddSingleton<Store.EtcdConfigStore>();
            AddConfigStore(builder.Services, options, sp => sp.GetRequiredService<Store.EtcdConfigStore>());
            builder.Services.AddSingleton<IConfigWriter>(sp => sp.GetRequiredService<Store.EtcdConfigStore>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<Store.EtcdConfigStore>());
            builder.Services.AddSingleton<Store.EtcdWorkloadRegistry>();
            builder.Services.AddSingleton<IWorkloadRegistry>(sp => sp.GetRequiredService<Store.EtcdWorkloadRegistry>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<Store.EtcdWorkloadRegistry>());
            if (options.EtcdImportDirectory)
            {
                builder.Services.AddHostedService(sp => sp.GetRequiredService<DirectoryConfigStore>());
                builder.Services.AddHostedService<Store.DirectoryImport>();
            }
        }
        else
        {
            builder.Services.AddSingleton<CertificateAuthority>();
            AddConfigStore(builder.Services, options, sp => sp.GetRequiredService<DirectoryConfigStore>());
            builder.Services.AddSingleton<IConfigWriter>(sp => sp.GetRequiredService<DirectoryConfigStore>());
            builder.Services.AddHostedService(sp => sp.GetRequiredService<DirectoryConfigStore>());
            builder.Services.AddSingleton<WorkloadRegistry>();
            builder.Services.AddSingleton<IWorkloadRegistry>(sp => sp.GetRequiredService<WorkloadRegistry>());
        }

        builder.Services.AddSingleton<JwksCache>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<JwksCache>());
        builder.Services.AddSingleton<ConnectionTracker>();
        builder.Services.AddSingleton<PushThrottle>();
        builder.Services.AddMetrics();
        builder.Services.AddSingleton<ControlPlaneMetrics>();

        // The control plane's own metrics for Prometheus at /metrics on the admin port, as istiod serves its own on its
        // monitoring port (15014); OpenTelemetry's exporter aggregates them (a handful of series, off the push path's cost).
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("meshkit-controlplane"))
            .WithMetrics(metrics => metrics.AddMeter(ControlPlaneMetrics.MeterName).AddPrometheusExporter());
        builder.Services.AddSingleton<MeshStatePublisher>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MeshStatePublisher>());
        builder.Services.AddGrpc();

        var app = builder.Build();
        app.MapGrpcService<DiscoveryService>();
        app.MapGrpcService<CertificateService>();
        AdminEndpoints.Map(app);
        app.MapPrometheusScrapingEndpoint(AdminEndpoints.MetricsPath); // behind the admin gate: admin port, admin token unless AnonymousMetrics
        return app;
    }

    // The configuration in force: the primary store's, with the Kubernetes API server's resources beside it when one is set.
    private static void AddConfigStore(IServiceCollection services, ControlPlaneOptions options, Func<IServiceProvider, IConfigStore> primary)
    {
        if (KubernetesApi.Server(options) is null)
        {
            services.AddSingleton(primary);
            return;
        }

        if (!string.IsNullOrWhiteSpace(options.KubernetesRootCertConfigMap))
        {
            services.AddHostedService<KubernetesRootPublisher>();
        }

        services.AddSingleton(sp => new KubernetesConfigStore(primary(sp), sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<ControlPlaneOptions>>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<KubernetesConfigStore>>()));
        services.AddSingleton<IConfigStore>(sp => sp.GetRequiredService<KubernetesConfigStore>());
        services.AddHostedService(sp => sp.GetRequiredService<KubernetesConfigStore>());
        if (options.KubernetesRouteStatus)
        {
            services.AddHostedService<KubernetesRouteStatus>();
        }
    }

    private static void Listen(KestrelServerOptions kestrel, string url, string scheme, Action<ListenOptions> configure)
    {
        var uri = new Uri(url);
        if (uri.Scheme != scheme)
        {
            throw new InvalidOperationException($"'{url}': this listener needs a {scheme}:// URL");
        }

        var address = uri.Host is "localhost" ? System.Net.IPAddress.Loopback
            : uri.Host is "*" or "0.0.0.0" ? System.Net.IPAddress.Any
            : System.Net.IPAddress.Parse(uri.Host.Trim('[', ']'));
        kestrel.Listen(address, uri.Port, configure);
    }
}
