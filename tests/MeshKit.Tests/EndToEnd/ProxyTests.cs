using System.Net;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// The tests that set the process's default HTTP proxy (as <c>HTTP_PROXY</c> does): they run alone, after the others,
/// so that no other test's connections go to it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessProxyCollection
{
    public const string Name = "the process's default HTTP proxy";
}

/// <summary>
/// An application with an HTTP proxy set (<c>HTTP_PROXY</c>, or its client's own <c>Proxy</c>): calls to the mesh's
/// workloads go to the endpoints directly, as a sidecar's do; calls that leave the mesh go through the proxy, as the
/// application's would without the mesh.
/// </summary>
[Collection(ProcessProxyCollection.Name)]
public sealed class ProxyTests : MeshTestBase
{
    private ProxyServer _proxy = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        _proxy = await ProxyServer.StartAsync();
        Owned.Add(_proxy);

        // Everything but the control plane goes to the proxy, as with HTTP_PROXY set and NO_PROXY naming the control
        // plane only (.NET matches NO_PROXY by host name: a workload's address is not in it).
        var controlPlane = new[] { ControlPlane.DiscoveryAddress.Port, ControlPlane.SecureAddress.Port };
        Owned.Add(_proxy.BecomeTheDefault(uri => controlPlane.Contains(uri.Port)));
    }

    [Fact]
    public async Task PlainTextMeshCalls_GoToTheEndpoint_WhileCallsOutsideTheMesh_GoThroughTheProxy()
    {
        await StartAsync("reviews", "v1");
        var ratings = await StartAsync("ratings", "v1");
        var productpage = await StartAsync("productpage", "v1", services: s => s.AddHttpClient("own-proxy")
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { Proxy = new WebProxy(_proxy.Address) }));
        ControlPlane.WriteConfig("external.yaml", """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              ports: [{ number: 80, name: http, protocol: HTTP }]
              resolution: DNS
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews } }], mirror: { host: ratings } }]
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.TryResolve("reviews", out var r) && r.Routes[0].Targets[0].Endpoints?.Endpoints.Length > 0 && r.Routes[0].Mirrors is [{ Target.Endpoints.Endpoints.Length: > 0 }] && productpage.Snapshot.Services.ContainsKey("payments.example.test"), "the routes, their endpoints and the ServiceEntry are known");

        // The process's default proxy (the factory's own primary handler), and a client's own proxy.
        foreach (var http in new[] { productpage.CreateClient(), productpage.CreateClient("own-proxy") })
        {
            Assert.StartsWith("reviews|v1|/r|reviews", await http.GetStringAsync("http://reviews/r"), StringComparison.Ordinal);

            // A host the mesh does not know goes out as the application sent it, and so through its proxy; so does a
            // ServiceEntry's host outside the mesh (MESH_EXTERNAL, Istio's default).
            Assert.Equal("proxied http://outside.example.test/o", await http.GetStringAsync("http://outside.example.test/o"));
            Assert.Equal("proxied http://payments.example.test/p", await http.GetStringAsync("http://payments.example.test/p"));
        }

        // The mirror's copies go to the endpoint too.
        await Eventually.TrueAsync(() => ratings.Served == 2, "ratings has both mirrored copies");
        Assert.Equal(["http://outside.example.test/o", "http://payments.example.test/p", "http://outside.example.test/o", "http://payments.example.test/p"], _proxy.Targets);
    }

    [Fact]
    public async Task MutualTlsMeshCalls_ConnectToTheEndpoint_NotToTheProxy()
    {
        var reviews = await StartSecureAsync("reviews", "reviews");
        reviews.Behavior = context => Task.FromResult<IResult?>(Results.Text($"peer {MeshKit.Security.MeshPeer.Of(context)} over {(context.Request.IsHttps ? "TLS" : "plain text")}"));
        var productpage = await StartSecureAsync("productpage", "productpage");
        await KnowsIdentityAsync(productpage);

        Assert.Equal("peer spiffe://cluster.local/ns/default/sa/productpage over TLS", await productpage.CreateClient().GetStringAsync("http://reviews/"));
        Assert.Equal(0, _proxy.Connections);
    }

    [Fact]
    public async Task TlsOriginatedCalls_ConnectToTheEndpoint_WhichTheySecureThemselves()
    {
        // A connection the mesh secures as it connects cannot go through an HTTP proxy (the proxy would be the TLS
        // peer): TLS origination connects directly, as a sidecar's does, even to a host outside the mesh.
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var certificate = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=payments.example.test", key, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        await using var server = await MeshKit.Tests.Security.TlsOriginationTests.HttpsServer.StartAsync(certificate, requireClientCertificate: false);
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("payments.yaml", MeshKit.Tests.Security.TlsOriginationTests.PaymentsRules(server.Port, "tls: { mode: SIMPLE, insecureSkipVerify: true }"));
        await MeshKit.Tests.Security.TlsOriginationTests.WaitForTlsModeAsync(productpage, "SIMPLE");

        Assert.Equal("tls:HTTP/1.1:none", await productpage.CreateClient().GetStringAsync("http://payments.example.test/"));
        Assert.Equal(0, _proxy.Connections);
    }

    /// <summary>
    /// An HTTP forward proxy that answers every request itself: it records the target (absolute form, as a client
    /// sends it to a proxy) and counts the connections made to it.
    /// </summary>
    private sealed class ProxyServer : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _targets = new();
        private int _connections;

        private ProxyServer(WebApplication app) => _app = app;

        public Uri Address { get; private set; } = null!;

        public List<string> Targets => [.. _targets];

        public int Connections => Volatile.Read(ref _connections);

        public static async Task<ProxyServer> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            ProxyServer? server = null;
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Use(next => connection =>
            {
                Interlocked.Increment(ref server!._connections);
                return next(connection);
            })));
            var app = builder.Build();
            server = new ProxyServer(app);
            app.Run(context =>
            {
                var target = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
                server._targets.Enqueue(target);
                return context.Response.WriteAsync($"proxied {target}");
            });
            await app.StartAsync();
            server.Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            return server;
        }

        /// <summary>Makes this the process's default proxy (<see cref="HttpClient.DefaultProxy"/>) until the result is disposed.</summary>
        public IAsyncDisposable BecomeTheDefault(Func<Uri, bool> bypassed)
        {
            var previous = HttpClient.DefaultProxy;
            HttpClient.DefaultProxy = new Everything(Address, bypassed);
            return new Restore(() => HttpClient.DefaultProxy = previous);
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        private sealed class Everything(Uri address, Func<Uri, bool> bypassed) : IWebProxy
        {
            public ICredentials? Credentials { get; set; }

            public Uri? GetProxy(Uri destination) => bypassed(destination) ? null : address;

            public bool IsBypassed(Uri host) => bypassed(host);
        }

        private sealed class Restore(Action restore) : IAsyncDisposable
        {
            public ValueTask DisposeAsync()
            {
                restore();
                return ValueTask.CompletedTask;
            }
        }
    }
}
