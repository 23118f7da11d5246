using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Infrastructure;

/// <summary>An API server's <c>/openid/v1/jwks</c> over TLS, for callers that send the control plane's token.</summary>
internal sealed class JwksServer(WebApplication app, Uri uri) : IAsyncDisposable
{
    public const string ControlPlaneToken = "controlplane-service-account-token";

    private int _fetches;

    public Uri Uri { get; } = uri;

    public string Jwks { get; set; } = string.Empty;

    public bool Refuse { get; set; }

    public int Fetches => Volatile.Read(ref _fetches);

    public static async Task<JwksServer> StartAsync(ExternalCa ca, string jwks)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var certificate = ca.Leaf("localhost", server: true);
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, l => l.UseHttps(certificate)));
        var app = builder.Build();
        JwksServer? server = null;
        app.MapGet("/openid/v1/jwks", (HttpContext context) =>
        {
            Interlocked.Increment(ref server!._fetches);
            return server.Refuse || context.Request.Headers.Authorization != $"Bearer {ControlPlaneToken}"
                ? Results.StatusCode(401)
                : Results.Text(server.Jwks, "application/json");
        });
        await app.StartAsync();
        server = new JwksServer(app, new Uri($"https://localhost:{new Uri(app.Urls.First()).Port}/openid/v1/jwks")) { Jwks = jwks };
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
