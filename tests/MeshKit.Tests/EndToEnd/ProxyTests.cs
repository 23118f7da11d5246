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
    public async Task TlsOriginatedCalls_LeaveTheMesh_ThroughTheProxysTunnel_AndReachItsWorkloadsDirectly()
    {
        // The application, without the mesh, would have called https://payments.example.test through its HTTPS proxy,
        // with a CONNECT tunnel: the mesh, which secures the connection itself, opens the tunnel (with the proxy's
        // Basic credentials) and secures what comes through it. A host inside the mesh is reached directly.
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var certificate = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=payments.example.test", key, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        await using var server = await MeshKit.Tests.Security.TlsOriginationTests.HttpsServer.StartAsync(certificate, requireClientCertificate: false);
        await using var tunnels = TunnelProxy.Start();
        var controlPlane = new[] { ControlPlane.DiscoveryAddress.Port, ControlPlane.SecureAddress.Port };
        await using var swapped = ProxyServer.MakeDefault(tunnels.Address, uri => controlPlane.Contains(uri.Port), new NetworkCredential("mesh", "s3cret"));
        var productpage = await StartAsync("productpage", "v1");
        var tls = "tls: { mode: SIMPLE, insecureSkipVerify: true }";
        ControlPlane.WriteConfig("payments.yaml", MeshKit.Tests.Security.TlsOriginationTests.PaymentsRules(server.Port, tls) + LedgerRules(server.Port, "MESH_INTERNAL", tls));
        await MeshKit.Tests.Security.TlsOriginationTests.WaitForTlsModeAsync(productpage, "SIMPLE");
        await Eventually.TrueAsync(() => productpage.Snapshot.TryResolve("ledger.example.test", out var r) && r.Routes[0].Targets[0].Endpoints?.Endpoints.Length > 0, "ledger is known");
        var http = productpage.CreateClient();

        Assert.Equal("tls:HTTP/1.1:none", await http.GetStringAsync("http://payments.example.test/"));
        var head = Assert.Single(tunnels.Heads);
        Assert.StartsWith($"CONNECT 127.0.0.1:{server.Port} HTTP/1.1\r\n", head, StringComparison.Ordinal);
        Assert.Contains("Proxy-Authorization: Basic bWVzaDpzM2NyZXQ=\r\n", head, StringComparison.Ordinal); // mesh:s3cret

        Assert.Equal("tls:HTTP/1.1:none", await http.GetStringAsync("http://ledger.example.test/"));
        Assert.Single(tunnels.Heads);
        Assert.Equal(0, _proxy.Connections);
    }

    [Fact]
    public async Task ADestinationWithProxyProtocol_IsReachedDirectly_ForItsHeaderIsTheEndpoints()
    {
        // The application's proxy would get the PROXY header (and, for https, the tunnel's) meant for the endpoint:
        // such a destination's connections go to the endpoint, as a sidecar's do, plain text and TLS alike.
        await using var plain = await ProxyProtocolTests.ProxyProtocolServer.StartAsync(certificate: null);
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        using var certificate = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=ledger.example.test", key, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        await using var tls = await ProxyProtocolTests.ProxyProtocolServer.StartAsync(certificate);
        await using var tunnels = TunnelProxy.Start();
        var controlPlane = new[] { ControlPlane.DiscoveryAddress.Port, ControlPlane.SecureAddress.Port };
        await using var swapped = ProxyServer.MakeDefault(tunnels.Address, uri => controlPlane.Contains(uri.Port), null);
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("payments.yaml", MeshKit.Tests.Security.TlsOriginationTests.PaymentsRules(plain.Port, "proxyProtocol: {}")
            + LedgerRules(tls.Port, "MESH_EXTERNAL", "proxyProtocol: {}, tls: { mode: SIMPLE, insecureSkipVerify: true }"));
        await Eventually.TrueAsync(
            () => new[] { "payments.example.test", "ledger.example.test" }.All(h => productpage.Snapshot.TryResolve(h, out var r) && r.Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.ProxyProtocolVersion == 1),
            "both rules apply");
        var http = productpage.CreateClient();

        Assert.StartsWith("plain|", await http.GetStringAsync("http://payments.example.test/"), StringComparison.Ordinal);
        Assert.StartsWith("tls|", await http.GetStringAsync("http://ledger.example.test/"), StringComparison.Ordinal);
        Assert.All(plain.Headers.Concat(tls.Headers), h => Assert.StartsWith("V1 TCP4 127.0.0.1 127.0.0.1 ", h, StringComparison.Ordinal));
        Assert.Equal(0, _proxy.Connections);
        Assert.Empty(tunnels.Heads);
    }

    /// <summary>
    /// Rules that follow <c>PaymentsRules</c> in one file: a ServiceEntry for <c>ledger.example.test</c> at
    /// 127.0.0.1:<paramref name="port"/> in <paramref name="location"/>, and a DestinationRule with <paramref name="policy"/>.
    /// </summary>
    private static string LedgerRules(int port, string location, string policy) => $$"""

        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: { name: ledger }
        spec:
          hosts: [ledger.example.test]
          location: {{location}}
          ports: [{ number: 80, name: http, protocol: HTTP, targetPort: {{port}} }]
          resolution: STATIC
          endpoints: [{ address: 127.0.0.1 }]
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: ledger }
        spec: { host: ledger.example.test, trafficPolicy: { {{policy}} } }
        """;

    [Fact]
    public async Task ATunnelTheProxyRefuses_FailsTheCall_AsAConnectionThatCannotBeMade()
    {
        await using var server = await MeshKit.Tests.Security.TlsOriginationTests.HttpsServer.StartAsync(null, requireClientCertificate: false);
        await using var tunnels = TunnelProxy.Start();
        tunnels.Refuse = true;
        var controlPlane = new[] { ControlPlane.DiscoveryAddress.Port, ControlPlane.SecureAddress.Port };
        await using var swapped = ProxyServer.MakeDefault(tunnels.Address, uri => controlPlane.Contains(uri.Port), null);
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("payments.yaml", MeshKit.Tests.Security.TlsOriginationTests.PaymentsRules(server.Port, "tls: { mode: SIMPLE, insecureSkipVerify: true }"));
        await MeshKit.Tests.Security.TlsOriginationTests.WaitForTlsModeAsync(productpage, "SIMPLE");

        // As a connection that cannot be made: the application's HttpRequestException, which says why.
        var failed = await Assert.ThrowsAsync<HttpRequestException>(() => productpage.CreateClient().GetAsync("http://payments.example.test/"));
        Assert.Contains($"did not open a tunnel to 127.0.0.1:{server.Port}: 'HTTP/1.1 403 Forbidden'", failed.Message, StringComparison.Ordinal);
        Assert.All(tunnels.Heads, h => Assert.StartsWith($"CONNECT 127.0.0.1:{server.Port} ", h, StringComparison.Ordinal));
        Assert.NotEmpty(tunnels.Heads);
    }

    /// <summary>
    /// A forward proxy that only tunnels: it reads a <c>CONNECT</c> request's head, records it, and relays bytes both
    /// ways between the client and the target it named (or refuses with 403).
    /// </summary>
    private sealed class TunnelProxy : IAsyncDisposable
    {
        private readonly System.Net.Sockets.TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _heads = new();

        public Uri Address => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

        public List<string> Heads => [.. _heads];

        public bool Refuse { get; set; }

        public static TunnelProxy Start()
        {
            var proxy = new TunnelProxy();
            proxy._listener.Start();
            _ = proxy.AcceptAsync();
            return proxy;
        }

        public ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
            return ValueTask.CompletedTask;
        }

        private async Task AcceptAsync()
        {
            while (true)
            {
                System.Net.Sockets.TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or System.Net.Sockets.SocketException or ObjectDisposedException)
                {
                    return;
                }

                _ = ServeAsync(client);
            }
        }

        private async Task ServeAsync(System.Net.Sockets.TcpClient client)
        {
            using var owned = client;
            try
            {
                var stream = client.GetStream();
                var head = new List<byte>();
                var one = new byte[1];
                while (head.Count < 4 || head[^4] != '\r' || head[^3] != '\n' || head[^2] != '\r' || head[^1] != '\n')
                {
                    if (await stream.ReadAsync(one, _stop.Token) == 0)
                    {
                        return;
                    }

                    head.Add(one[0]);
                }

                var text = System.Text.Encoding.ASCII.GetString([.. head]);
                _heads.Enqueue(text);
                if (Refuse)
                {
                    await stream.WriteAsync("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"u8.ToArray(), _stop.Token);
                    return;
                }

                var target = text.Split(' ')[1];
                var colon = target.LastIndexOf(':');
                using var upstream = new System.Net.Sockets.TcpClient();
                await upstream.ConnectAsync(target[..colon].Trim('[', ']'), int.Parse(target[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture), _stop.Token);
                await stream.WriteAsync("HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray(), _stop.Token);
                var relay = upstream.GetStream();
                await Task.WhenAny(stream.CopyToAsync(relay, _stop.Token), relay.CopyToAsync(stream, _stop.Token));
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                // The test ended, or a side closed.
            }
        }
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
        public IAsyncDisposable BecomeTheDefault(Func<Uri, bool> bypassed) => MakeDefault(Address, bypassed, null);

        /// <summary>Makes <paramref name="address"/> the process's default proxy, as <c>HTTP_PROXY</c> and <c>HTTPS_PROXY</c> do, until the result is disposed.</summary>
        public static IAsyncDisposable MakeDefault(Uri address, Func<Uri, bool> bypassed, ICredentials? credentials)
        {
            var previous = HttpClient.DefaultProxy;
            HttpClient.DefaultProxy = new Everything(address, bypassed) { Credentials = credentials };
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
