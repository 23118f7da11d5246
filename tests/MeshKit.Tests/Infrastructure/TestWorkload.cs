using MeshKit.Snapshot;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// A real ASP.NET Core app on 127.0.0.1 (port 0) with <c>AddMesh()</c> and <c>UseMesh()</c>. Every request is answered
/// with <c>service|version|path|host</c> so a test can see where the mesh sent it.
/// </summary>
public sealed class TestWorkload : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _served;
    private bool _stopped;

    private TestWorkload(WebApplication app, string service, string version)
    {
        _app = app;
        Service = service;
        Version = version;
    }

    public string Service { get; }

    public string Version { get; }

    public Uri Address { get; private set; } = null!;

    public int Served => Volatile.Read(ref _served);

    public IServiceProvider Services => _app.Services;

    /// <summary>Gets or sets what the workload does instead of answering (fail, delay, reset); null answers normally.</summary>
    public Func<HttpContext, Task<IResult?>>? Behavior { get; set; }

    /// <summary>Gets the Host header of every request served, in order.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Hosts { get; } = new();

    internal MeshSnapshot Snapshot => _app.Services.GetRequiredService<MeshSnapshotProvider>().Current;

    /// <summary>Returns how many endpoints this workload knows for <paramref name="host"/> (the most any route target has).</summary>
    internal int Endpoints(string host) =>
        Snapshot.Services.TryGetValue(host, out var s) ? s.Routes.SelectMany(r => r.Targets).Max(t => t.Endpoints?.Endpoints.Length ?? 0) : 0;

    public static async Task<TestWorkload> StartAsync(string service, string version, Uri? controlPlane, Action<MeshOptions>? configure = null, Action<IServiceCollection>? configureServices = null, bool http2Only = false, Action<WebApplication>? configureApp = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        if (http2Only)
        {
            // Plain-text HTTP/2 (prior knowledge) needs an HTTP/2-only endpoint.
            builder.WebHost.ConfigureKestrel(k => k.ConfigureEndpointDefaults(l => l.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http2));
        }
        builder.Services.AddMesh(o =>
        {
            o.ServiceName = service;
            o.Labels["version"] = version;
            o.ControlPlaneAddress = controlPlane;
            o.ServicePort = 9080;
            o.ReconnectBaseDelay = TimeSpan.FromMilliseconds(100);
            o.ReconnectMaxDelay = TimeSpan.FromSeconds(1);
            o.DrainDuration = TimeSpan.FromSeconds(1);
            o.InitialFetchTimeout = TimeSpan.FromSeconds(20);
            configure?.Invoke(o);
        });
        configureServices?.Invoke(builder.Services);
        var app = builder.Build();
        var workload = new TestWorkload(app, service, version);
        app.UseMesh();
        configureApp?.Invoke(app);
        app.Map("/{**path}", async (HttpContext context) =>
        {
            Interlocked.Increment(ref workload._served);
            workload.Hosts.Enqueue(context.Request.Host.Value ?? string.Empty);
            if (workload.Behavior is { } behavior && await behavior(context) is { } result)
            {
                return result;
            }

            // The mesh's own x-forwarded-client-cert (mutual TLS) is not a spoofed one; any other is.
            var spoofed = context.Request.Headers.Keys.Where(k => k.StartsWith("x-meshkit-", StringComparison.OrdinalIgnoreCase)
                || (k == "x-forwarded-client-cert" && context.Request.Headers[k].ToString() != MeshKit.Security.MeshPeer.Of(context)?.ForwardedClientCert));
            return Results.Text($"{service}|{version}|{context.Request.Path}{context.Request.QueryString}|{context.Request.Host}|{string.Join(',', spoofed)}");
        });
        await app.StartAsync();
        workload.Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return workload;
    }

    /// <summary>Creates an <c>IHttpClientFactory</c> client of this workload: it goes through the mesh.</summary>
    public HttpClient CreateClient(string name = "test") => _app.Services.GetRequiredService<IHttpClientFactory>().CreateClient(name);

    public async Task StopAsync()
    {
        if (!_stopped)
        {
            _stopped = true;
            await _app.StopAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _app.DisposeAsync();
    }
}
