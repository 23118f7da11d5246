using System.Net;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Security;

/// <summary>How policy meets an application's own pipeline.</summary>
public sealed class SecurityPipelineTests : MeshTestBase
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EachRequestPassesTheMeshOnce_MarkedOnlyWhenTheAppHoldsASecondMeshMiddleware(bool useMesh)
    {
        // AddMesh() puts one first; a minimal-hosting app's own UseMesh() adds a second, which the mark turns into a
        // pass-through. With one, no request needs marking (a lookup by type that finds nothing walks every feature).
        await using var app = await StartAppAsync(useMesh, authentication: false);
        using var http = new HttpClient();
        using var response = await http.GetAsync(app.Address);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(useMesh, app.Services.GetRequiredService<MeshMarkerService>().SeveralMiddlewares);
    }

    [Fact]
    public async Task PolicyIsEnforced_EvenWhenTheAppNeverCallsUseMesh()
    {
        ControlPlane.WriteConfig("authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: deny-all, namespace: default }
            spec: {}
            """);
        await using var app = await StartAppAsync(useMesh: false, authentication: false);
        await Eventually.TrueAsync(() => app.Snapshot().Authorization.IsEmpty == false, "the policy applies");

        using var http = new HttpClient();
        using var response = await http.GetAsync(app.Address);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    [Fact]
    public async Task TheMeshScheme_MakesTheRequestPrincipalTheUser_ForAuthorize()
    {
        using var idp = new TestIdentityProvider();
        ControlPlane.WriteConfig("jwt.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: RequestAuthentication
            metadata: { name: jwt, namespace: default }
            spec:
              jwtRules:
              - issuer: {{TestIdentityProvider.Issuer}}
                jwks: '{{idp.Jwks()}}'
            """);
        await using var app = await StartAppAsync(useMesh: true, authentication: true);
        await Eventually.TrueAsync(() => app.Snapshot().Jwt.IsEmpty == false, "the policy applies");

        using var http = new HttpClient();
        using var anonymous = await http.GetAsync(app.Address);
        using var request = new HttpRequestMessage(HttpMethod.Get, app.Address) { Headers = { { "Authorization", "Bearer " + idp.Token(DateTimeOffset.UtcNow) } } };
        using var authenticated = await http.SendAsync(request);

        // No mesh identity: the [Authorize] endpoint challenges; with a valid JWT the user is its subject.
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal(HttpStatusCode.OK, authenticated.StatusCode);
        Assert.Equal("alice", await authenticated.Content.ReadAsStringAsync());
    }

    private async Task<App> StartAppAsync(bool useMesh, bool authentication)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddMesh(o =>
        {
            o.ServiceName = "reviews";
            o.ControlPlaneAddress = ControlPlane.DiscoveryAddress;
            o.DrainDuration = TimeSpan.Zero;
        });
        if (authentication)
        {
            builder.Services.AddAuthentication(MeshAuthenticationExtensions.SchemeName).AddMesh();
            builder.Services.AddAuthorization();
        }

        var web = builder.Build();
        if (useMesh)
        {
            web.UseMesh();
        }

        if (authentication)
        {
            web.UseAuthentication();
            web.UseAuthorization();
            web.MapGet("/", (HttpContext c) => c.User.Identity!.Name).RequireAuthorization();
        }
        else
        {
            web.MapGet("/", () => "hello");
        }

        await web.StartAsync();
        return new App(web, new Uri(web.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()));
    }

    private sealed class App(WebApplication web, Uri address) : IAsyncDisposable
    {
        public Uri Address { get; } = address;

        public IServiceProvider Services => web.Services;

        public MeshKit.Snapshot.MeshSnapshot Snapshot() => web.Services.GetRequiredService<MeshKit.Snapshot.MeshSnapshotProvider>().Current;

        public async ValueTask DisposeAsync()
        {
            await web.StopAsync();
            await web.DisposeAsync();
        }
    }
}
