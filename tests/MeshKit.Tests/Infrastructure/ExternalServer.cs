using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Infrastructure;

/// <summary>A server outside the mesh, on 127.0.0.1: echoes its name, the path, the Host header and x-api-key.</summary>
internal sealed class ExternalServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ExternalServer(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    /// <summary>Gets how many requests the server answered.</summary>
    public int Requests => Volatile.Read(ref _requests);

    private int _requests;

    public static async Task<ExternalServer> StartAsync(string name = "external")
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        ExternalServer? server = null;
        app.Map("/{**path}", (HttpContext c) =>
        {
            Interlocked.Increment(ref server!._requests);
            return $"{name}:{c.Request.Path}:{c.Request.Host}:{c.Request.Headers["x-api-key"]}";
        });
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        return server = new ExternalServer(app, port);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
