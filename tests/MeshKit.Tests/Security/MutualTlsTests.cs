using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.Security;

/// <summary>Certificates from the control plane's CA, mutual TLS between real Kestrel workloads, PeerAuthentication modes.</summary>
public sealed class MutualTlsTests : MeshTestBase
{
    private static IssuedCertificate CertificateOf(TestWorkload workload) =>
        workload.Services.GetRequiredService<WorkloadIdentity>().Current ?? throw new InvalidOperationException("no certificate");

    /// <summary>Starts <c>reviews</c> with <paramref name="token"/>, waiting two seconds at most for its first certificate.</summary>
    private async Task<TestWorkload> StartReviewsWaitingBrieflyAsync(Uri controlPlane, string token)
    {
        var workload = await TestWorkload.StartAsync("reviews", "v1", controlPlane, o =>
        {
            o.ServiceAccount = "reviews";
            o.JoinToken = token;
            o.InitialFetchTimeout = TimeSpan.FromSeconds(2);
        });
        Owned.Add(workload);
        return workload;
    }

    private void WritePeerAuthentication(string mode) => ControlPlane.WriteConfig("peer-authentication.yaml", $$"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: { name: default, namespace: default }
        spec:
          mtls: { mode: {{mode}} }
        """);

    [Fact]
    public async Task Workload_GetsACertificateOfTheMeshProfile_ForTheIdentityOfItsToken()
    {
        var workload = await StartSecureAsync("reviews", "bookinfo-reviews");

        var issued = CertificateOf(workload);
        var certificate = issued.Certificate;
        Assert.Equal(["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"], CertificateProfile.UriNames(certificate));
        Assert.False(certificate.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        var usage = certificate.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.True(usage.Critical);
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, usage.KeyUsages);
        var eku = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value!).ToArray();
        Assert.Equal([CertificateProfile.ServerAuth, CertificateProfile.ClientAuth], eku);
        Assert.Equal(256, certificate.GetECDsaPublicKey()!.KeySize);
        Assert.InRange(certificate.NotAfter - certificate.NotBefore, TimeSpan.FromHours(24), TimeSpan.FromHours(24) + TimeSpan.FromMinutes(2));
        Assert.True(certificate.HasPrivateKey);

        // Registered with the identity it proved.
        await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/registry")).EnumerateArray().Any(e => e.GetProperty("serviceAccount").GetString() == "bookinfo-reviews"), "registered");
    }

    [Fact]
    public async Task TheCaKey_IsReadableByItsOwnerOnly()
    {
        await StartSecureAsync("reviews", "reviews");
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        foreach (var key in new[] { "root-key.pem", "token-key.pem" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(ControlPlane.CaDirectory, key)));
        }
    }

    [Fact]
    public async Task MeshCalls_UseMutualTls_AndTheServerSeesTheCallersIdentity()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var seen = new List<(string? Peer, bool Https)>();
        backend.Behavior = context =>
        {
            lock (seen)
            {
                seen.Add((MeshPeer.Of(context)?.ToString(), context.Request.IsHttps));
            }

            return Task.FromResult<IResult?>(null);
        };
        var client = await StartSecureAsync("productpage", "productpage");
        await KnowsIdentityAsync(client);

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal([("spiffe://cluster.local/ns/default/sa/productpage", true)], seen);
    }

    [Fact]
    public async Task WithAutomaticMutualTlsTurnedOff_CallsArePlainText_UnlessADestinationRuleAsksForIstioMutual()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var seen = new System.Collections.Concurrent.ConcurrentQueue<bool>();
        backend.Behavior = context =>
        {
            seen.Enqueue(context.Request.IsHttps);
            return Task.FromResult<IResult?>(null);
        };
        var client = await StartSecureAsync("productpage", "productpage");
        await KnowsIdentityAsync(client);
        ControlPlane.WriteConfig("mesh.yaml", """
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { enableAutoMtls: false }
            """);

        // The push lands: the next calls go in plain text.
        await Eventually.TrueAsync(async () =>
        {
            seen.Clear();
            using var response = await client.CreateClient().GetAsync("http://reviews/");
            return response.IsSuccessStatusCode && seen.TryPeek(out var https) && !https;
        }, "calls turn plain text");

        ControlPlane.WriteConfig("reviews-dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec: { host: reviews, trafficPolicy: { tls: { mode: ISTIO_MUTUAL } } }
            """);
        await Eventually.TrueAsync(async () =>
        {
            seen.Clear();
            using var response = await client.CreateClient().GetAsync("http://reviews/");
            return response.IsSuccessStatusCode && seen.TryPeek(out var https) && https;
        }, "ISTIO_MUTUAL asks for mutual TLS");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AClientsAutomaticDecompression_AppliesToItsMeshCalls_InPlainTextAndUnderMutualTls(bool secure)
    {
        // The client's primary handler asked for and decoded encodings only on the calls it carried itself (plain
        // text); on the mesh's own mutual-TLS connections neither happened. The caller's metrics count the bytes that
        // crossed the network, compressed, as Envoy's do.
        static void Clients(IServiceCollection services)
        {
            services.AddHttpClient("decompressing").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AutomaticDecompression = DecompressionMethods.All });
        }

        byte[] compressed;
        using (var buffer = new MemoryStream())
        {
            await using (var gzip = new System.IO.Compression.GZipStream(buffer, System.IO.Compression.CompressionMode.Compress, leaveOpen: true))
            {
                await gzip.WriteAsync("decoded"u8.ToArray());
            }

            compressed = buffer.ToArray();
        }

        var backend = secure ? await StartSecureAsync("reviews", "reviews") : await StartAsync("reviews", "v1");
        backend.Behavior = async context =>
        {
            if (!context.Request.Headers.AcceptEncoding.ToString().Contains("gzip", StringComparison.Ordinal))
            {
                return Results.Text("plain");
            }

            context.Response.Headers.ContentEncoding = "gzip";
            context.Response.ContentLength = compressed.Length;
            await context.Response.Body.WriteAsync(compressed);
            return Results.Empty;
        };
        static void Metrics(Microsoft.AspNetCore.Builder.WebApplication app) => Microsoft.AspNetCore.Builder.MeshEndpointRouteBuilderExtensions.MapMeshMetrics(app);
        var client = secure ? await StartSecureAsync("productpage", "productpage", services: Clients, app: Metrics) : await StartAsync("productpage", "v1", services: Clients, app: Metrics);
        if (secure)
        {
            await KnowsIdentityAsync(client);
        }
        else
        {
            await Eventually.TrueAsync(() => client.Endpoints("reviews.default.svc.cluster.local") == 1, "reviews is known");
        }

        using (var decoded = await client.CreateClient("decompressing").GetAsync("http://reviews/"))
        {
            Assert.Equal("decoded", await decoded.Content.ReadAsStringAsync());
            Assert.Empty(decoded.Content.Headers.ContentEncoding);
        }

        // A client that does not decompress asks for nothing.
        Assert.Equal("plain", await client.CreateClient().GetStringAsync("http://reviews/"));

        using var scraper = new HttpClient();
        var metrics = new UriBuilder(client.Address) { Scheme = "http", Path = "/stats/prometheus" }.Uri;
        string Value(string text, string name) => System.Text.RegularExpressions.Regex.Match(text, $"(?m)^{name}\\{{reporter=\"source\"[^}}]*\\}} (\\d+)$").Groups[1].Value;
        var text = string.Empty;
        await Eventually.TrueAsync(async () => Value(text = await scraper.GetStringAsync(metrics), "istio_response_bytes_count") == "2", "both calls are reported");
        Assert.Equal((compressed.Length + "plain".Length).ToString(System.Globalization.CultureInfo.InvariantCulture), Value(text, "istio_response_bytes_sum"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AClientsCookies_AreKeptByTheServiceItCalled_InPlainTextAndUnderMutualTls(bool secure)
    {
        // The client's primary handler kept them by the endpoint's address: a cookie one service set went to every
        // service on that address (cookies ignore ports), and under mutual TLS none was kept or sent.
        static Func<HttpContext, Task<IResult?>> Serve(string name) => context =>
        {
            if (context.Request.Path == "/login")
            {
                context.Response.Headers.SetCookie = $"session={name}; Path=/";
            }

            return Task.FromResult<IResult?>(Results.Text($"{name}:{context.Request.Headers.Cookie}"));
        };

        var reviews = secure ? await StartSecureAsync("reviews", "reviews") : await StartAsync("reviews", "v1");
        var ratings = secure ? await StartSecureAsync("ratings", "ratings") : await StartAsync("ratings", "v1");
        reviews.Behavior = Serve("reviews");
        ratings.Behavior = Serve("ratings");
        Assert.Equal(reviews.Address.Host, ratings.Address.Host); // one address, two ports
        var client = secure ? await StartSecureAsync("productpage", "productpage") : await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => client.Endpoints("reviews.default.svc.cluster.local") == 1 && client.Endpoints("ratings.default.svc.cluster.local") == 1, "both are known");
        if (secure)
        {
            await KnowsIdentityAsync(client);
        }

        var http = client.CreateClient();
        Assert.Equal("reviews:", await http.GetStringAsync("http://reviews/login"));
        Assert.Equal("reviews:session=reviews", await http.GetStringAsync("http://reviews/again"));
        Assert.Equal("ratings:", await http.GetStringAsync("http://ratings/"));

        // The application's own Cookie header goes on after the container's, and stays its own.
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/mine");
        request.Headers.Add("Cookie", "mine=1");
        using (var response = await http.SendAsync(request))
        {
            Assert.Equal("reviews:session=reviews; mine=1", await response.Content.ReadAsStringAsync());
        }

        Assert.Equal("mine=1", request.Headers.GetValues("Cookie").Single());
    }

    [Fact]
    public async Task TheApplication_IsToldItsCaller_InXForwardedClientCert_AsIstiosSidecarTellsIt()
    {
        var backend = await StartSecureAsync("reviews", "bookinfo-reviews");
        backend.Behavior = context => Task.FromResult<IResult?>(Results.Text(context.Request.Headers["x-forwarded-client-cert"].ToString()));
        var client = await StartSecureAsync("productpage", "bookinfo-productpage");
        await KnowsIdentityAsync(client);
        var caller = CertificateOf(client).Certificate;

        // A caller's own x-forwarded-client-cert never reaches the application: only the mesh's element does.
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        request.Headers.Add("x-forwarded-client-cert", "By=spiffe://cluster.local/ns/default/sa/admin;URI=spiffe://cluster.local/ns/kube-system/sa/admin");
        using var response = await client.CreateClient().SendAsync(request);

        Assert.Equal(
            "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
            + ";Hash=" + Convert.ToHexStringLower(SHA256.HashData(caller.RawData))
            + ";Subject=\"" + caller.Subject + "\""
            + ";URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
            await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("serviceAccount: legacy-sa, labels: { security.istio.io/tlsMode: istio }", "", "", "spiffe://cluster.local/ns/default/sa/productpage")]
    [InlineData("serviceAccount: legacy-sa", "", "", "plain")]
    [InlineData("serviceAccount: legacy-sa", "", "ISTIO_MUTUAL", "spiffe://cluster.local/ns/default/sa/productpage")]
    [InlineData("serviceAccount: someone-else, labels: { security.istio.io/tlsMode: istio }", "", "", "refused")]
    [InlineData("serviceAccount: someone-else, labels: { security.istio.io/tlsMode: istio }", "[spiffe://cluster.local/ns/default/sa/legacy-sa]", "", "spiffe://cluster.local/ns/default/sa/productpage")]
    [InlineData("labels: { security.istio.io/tlsMode: istio }", "[spiffe://cluster.local/ns/default/sa/legacy-sa]", "", "spiffe://cluster.local/ns/default/sa/productpage")]
    public async Task ServiceEntryEndpoints_HaveTheIdentityTheEntryGivesThem(string endpoint, string subjectAltNames, string tlsMode, string expected)
    {
        // A mesh workload reached through a static ServiceEntry (as a VM's would be), not through the registry.
        var legacy = await StartSecureAsync("legacy", "legacy-sa");
        legacy.Behavior = context => Task.FromResult<IResult?>(Results.Text(MeshPeer.Of(context)?.ToString() ?? "plain"));
        var client = await StartSecureAsync("productpage", "productpage");
        ControlPlane.WriteConfig("legacy.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: legacy }
            spec:
              hosts: [legacy.example.internal]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http, protocol: HTTP, targetPort: {{legacy.Address.Port}} }]
              resolution: STATIC
              endpoints: [{ address: 127.0.0.1, {{endpoint}} }]
              {{(subjectAltNames.Length > 0 ? "subjectAltNames: " + subjectAltNames : string.Empty)}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: legacy }
            spec:
              host: legacy.example.internal
              {{(tlsMode.Length > 0 ? $"trafficPolicy: {{ tls: {{ mode: {tlsMode} }} }}" : "trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }")}}
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("legacy.example.internal", out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 1
            && s.Routes[0].Targets[0].Endpoints?.Upstream.TlsMode == tlsMode, "the entry applies");

        string answer;
        try
        {
            using var response = await client.CreateClient().GetAsync("http://legacy.example.internal/");
            answer = response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync() : "refused";
        }
        catch (HttpRequestException)
        {
            answer = "refused";
        }

        Assert.Equal(expected, answer);
    }

    [Fact]
    public async Task Strict_RefusesPlainTextAndCertificateLessTls_Permissive_ServesBothOnOnePort()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var port = backend.Address.Port;
        WritePeerAuthentication("STRICT");
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.Mode == MtlsMode.Strict, "STRICT applies");

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => PlainTextAsync(port));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => TlsWithoutCertificateAsync(port));

        WritePeerAuthentication("PERMISSIVE");
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.Mode == MtlsMode.Permissive, "PERMISSIVE applies");

        Assert.Equal(HttpStatusCode.OK, await PlainTextAsync(port));
        Assert.Equal(HttpStatusCode.OK, await TlsWithoutCertificateAsync(port));
    }

    [Fact]
    public async Task Strict_StillServesMeshCallers()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var client = await StartSecureAsync("productpage", "productpage");
        WritePeerAuthentication("STRICT");
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.Mode == MtlsMode.Strict, "STRICT applies");
        await KnowsIdentityAsync(client);

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Mirrors_UseMutualTlsToo_UnderStrict()
    {
        var primary = await StartSecureAsync("reviews", "reviews", o => o.Labels["version"] = "v1");
        var shadow = await StartSecureAsync("reviews", "reviews", o => o.Labels["version"] = "v2");
        var shadowPeers = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        shadow.Behavior = context =>
        {
            shadowPeers.Enqueue(MeshIdentity.Get(context)?.PeerPrincipal);
            return Task.FromResult<IResult?>(null);
        };
        var client = await StartSecureAsync("productpage", "productpage");
        WritePeerAuthentication("STRICT");
        ControlPlane.WriteConfig("routes.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - route: [{ destination: { host: reviews, subset: v1 } }]
                mirror: { host: reviews, subset: v2 }
            """);
        await Eventually.TrueAsync(() => client.Snapshot.TryResolve("reviews", out var s) && s.Routes[0].Mirrors is [{ Target.Endpoints.Endpoints: [{ Identity.Length: > 0 }] }], "the mirror and its identity are known");
        await Eventually.TrueAsync(() => shadow.Snapshot.PeerAuthentication.Mode == MtlsMode.Strict && primary.Snapshot.PeerAuthentication.Mode == MtlsMode.Strict, "STRICT applies");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Eventually.TrueAsync(() => shadowPeers.Count == 1, "the mirror got its copy");
        Assert.Equal("cluster.local/ns/default/sa/productpage", Assert.Single(shadowPeers));
    }

    [Fact]
    public async Task SecureNaming_AServerThatIsNotTheIdentityRegisteredAtItsAddress_IsRefused()
    {
        // ratings listens with its own identity; a registration authenticated as reviews claims ratings' port.
        var ratings = await StartSecureAsync("ratings", "bookinfo-ratings");
        var reached = 0;
        ratings.Behavior = _ =>
        {
            Interlocked.Increment(ref reached);
            return Task.FromResult<IResult?>(null);
        };

        var id = new SpiffeId("cluster.local", "default", "bookinfo-reviews");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var chain = ControlPlane.Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>()
            .Issue(new CertificateRequest("CN=reviews", key, HashAlgorithmName.SHA256).PublicKey, id, TimeSpan.FromHours(1));
        using var leaf = X509CertificateLoader.LoadCertificate(chain[0]);
        using var reviewsCertificate = CertificateProfile.WithKey(leaf, key);
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.ClientCertificates = [reviewsCertificate];
        handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(ControlPlane.SecureAddress, new Grpc.Net.Client.GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        using var stream = new MeshDiscovery.MeshDiscoveryClient(channel).StreamResources();
        var announcement = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", ServiceAccount = "bookinfo-reviews", InstanceId = "impostor", Address = "127.0.0.1" };
        announcement.Ports.Add(new WorkloadPort { Name = "http", TargetPort = (uint)ratings.Address.Port, ServicePort = 80, Protocol = "http" });
        await stream.RequestStream.WriteAsync(new DiscoveryRequest { Workload = announcement });

        var productpage = await StartSecureAsync("productpage", "bookinfo-productpage");
        await KnowsIdentityAsync(productpage);

        HttpStatusCode? status = null;
        try
        {
            using var response = await productpage.CreateClient().GetAsync("http://reviews/");
            status = response.StatusCode;
        }
        catch (HttpRequestException)
        {
        }

        Assert.NotEqual(HttpStatusCode.OK, status);
        Assert.Equal(0, Volatile.Read(ref reached));
    }

    [Fact]
    public async Task ACertificateOfAnotherMesh_IsRefused_EvenUnderPermissive()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var otherRoot = CertificateProfile.CreateRoot("cluster.local", DateTimeOffset.UtcNow, TimeSpan.FromDays(1));
        using var foreign = CertificateProfile.Issue(
            new CertificateRequest("CN=x", otherKey, HashAlgorithmName.SHA256).PublicKey,
            new SpiffeId("cluster.local", "default", "productpage"),
            otherRoot,
            DateTimeOffset.UtcNow,
            TimeSpan.FromHours(1));
        using var exported = CertificateProfile.WithKey(foreign, otherKey);

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => TlsWithoutCertificateAsync(backend.Address.Port, exported));
    }

    [Fact]
    public async Task Rotation_UnderContinuousTraffic_LosesNoRequest()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var client = await StartSecureAsync("productpage", "productpage");
        await KnowsIdentityAsync(client);
        var http = client.CreateClient();
        var before = (CertificateOf(backend).Certificate.SerialNumber, CertificateOf(client).Certificate.SerialNumber);
        using var stop = new CancellationTokenSource();
        var failures = 0;
        var sent = 0;
        var traffic = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await http.GetAsync("http://reviews/");
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref failures);
                    }
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref failures);
                }

                Interlocked.Increment(ref sent);
            }
        })).ToArray();

        for (var i = 0; i < 3; i++)
        {
            await backend.Services.GetRequiredService<CertificateManager>().RenewNowAsync(CancellationToken.None);
            await client.Services.GetRequiredService<CertificateManager>().RenewNowAsync(CancellationToken.None);
            await Task.Delay(100);
        }

        await stop.CancelAsync();
        await Task.WhenAll(traffic);
        Assert.NotEqual(before, (CertificateOf(backend).Certificate.SerialNumber, CertificateOf(client).Certificate.SerialNumber));
        Assert.True(sent > 10, $"{sent} requests");
        Assert.Equal(0, failures);

        // New connections carry the new certificates.
        using var fresh = new HttpClient(new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate!.GetSerialNumberString() == CertificateOf(backend).Certificate.SerialNumber } });
        using var check = await fresh.GetAsync(new Uri($"https://127.0.0.1:{backend.Address.Port}/"));
        Assert.Equal(HttpStatusCode.OK, check.StatusCode);
    }

    [Fact]
    public async Task ConnectionsToTheControlPlane_CloseWhenDone_NotAtTheirIdleTimeout()
    {
        // Counted from this process's sockets to this test's control plane (its port is its own).
        var port = ControlPlane.SecureAddress.Port;
        int Open() => System.Net.NetworkInformation.IPGlobalProperties.GetIPGlobalProperties().GetActiveTcpConnections()
            .Count(c => c.RemoteEndPoint.Port == port && c.State == System.Net.NetworkInformation.TcpState.Established);

        // The trust-bundle fetch and the first signing had connections of their own; the discovery stream stays.
        var workload = await StartSecureAsync("reviews", "reviews");
        await Eventually.TrueAsync(() => Open() == 1, "only the discovery stream's connection is open", TimeSpan.FromSeconds(20));

        // A renewal signs over a channel of its own. Before, disposing a channel that was given a handler left the
        // handler's connection open until its idle timeout (a minute): one more per renewal and per reconnection.
        await workload.Services.GetRequiredService<CertificateManager>().RenewNowAsync(CancellationToken.None);
        await Eventually.TrueAsync(() => Open() == 1, "the renewal's connection is closed", TimeSpan.FromSeconds(20));

        await workload.StopAsync();
        await Eventually.TrueAsync(() => Open() == 0, "a stopped workload's connection is closed", TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task AWorkloadStartingWhileTheControlPlaneIsDown_StartsAfterItsInitialFetchTimeout_AndJoinsWhenItReturns()
    {
        var token = ControlPlane.CreateJoinToken("default", "reviews");
        var down = await StopControlPlaneAsync();

        var started = System.Diagnostics.Stopwatch.StartNew();
        var workload = await StartReviewsWaitingBrieflyAsync(down.SecureAddress, token);
        Assert.Null(workload.Services.GetRequiredService<WorkloadIdentity>().Current);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(30), $"started after {started.Elapsed}");

        // The same control plane comes back (same port, same CA): the workload gets its certificate and registers.
        await RestartControlPlaneAsync(down);
        try
        {
            await Eventually.TrueAsync(() => workload.Services.GetRequiredService<WorkloadIdentity>().Current is not null, "the certificate arrives", TimeSpan.FromSeconds(60));
            await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/registry")).EnumerateArray().Any(e => e.GetProperty("serviceAccount").GetString() == "reviews"), "registered", TimeSpan.FromSeconds(60));
        }
        finally
        {
            await down.DisposeAsync();
        }
    }

    [Fact]
    public async Task ACertificateThatExpiresWhileTheControlPlaneIsDown_IsReplacedWithTheJoinToken_WhenItReturns()
    {
        // A control plane that issues four-second certificates (a workload may not ask for less than two minutes).
        var original = await StopControlPlaneAsync();
        ControlPlane = await TestControlPlane.StartAsync(original.ConfigDirectory, configure: o => o.WorkloadCertificateTtl = TimeSpan.FromSeconds(4), securePort: original.SecureAddress.Port);
        try
        {
            var workload = await StartSecureAsync("reviews", "reviews");
            var identity = workload.Services.GetRequiredService<WorkloadIdentity>();
            await Eventually.TrueAsync(() => workload.Snapshot.IsReady, "configured");

            // It goes down past the certificate's end: the renewals fail until then, and after it the expired
            // certificate authenticates nothing (the TLS port refuses it).
            await (await StopControlPlaneAsync()).DisposeAsync();
            var expired = identity.Current!;
            var left = expired.NotAfter - DateTimeOffset.UtcNow;
            await Task.Delay((left > TimeSpan.Zero ? left : TimeSpan.Zero) + TimeSpan.FromSeconds(1));
            Assert.Same(expired, identity.Current);

            await RestartControlPlaneAsync(original);
            await Eventually.TrueAsync(() => identity.Current!.NotAfter > DateTimeOffset.UtcNow, "a new certificate", TimeSpan.FromSeconds(60));
            Assert.Equal(expired.Id, identity.Current!.Id);
            await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/registry")).EnumerateArray().Any(e => e.GetProperty("serviceAccount").GetString() == "reviews"), "registered with it", TimeSpan.FromSeconds(60));
        }
        finally
        {
            await original.DisposeAsync();
        }
    }

    [Fact]
    public async Task ARootAddedForRotation_ReachesWorkloads_WithoutWaitingForRenewal()
    {
        var configDirectory = ControlPlane.ConfigDirectory;
        var securePort = ControlPlane.SecureAddress.Port;
        var workload = await StartSecureAsync("reviews", "reviews");
        var identity = workload.Services.GetRequiredService<WorkloadIdentity>();
        await Eventually.TrueAsync(() => workload.Snapshot.IsReady, "configured");
        var serial = identity.Current!.Certificate.SerialNumber;
        Assert.Single(identity.Current.Bundle.Roots);

        // The operator adds a second root next to the signing one and restarts the control plane.
        await ControlPlane.StopAsync();
        using var next = CertificateProfile.CreateRoot("cluster.local", DateTimeOffset.UtcNow, TimeSpan.FromDays(30));
        File.AppendAllText(Path.Combine(ControlPlane.CaDirectory, "root-cert.pem"), next.ExportCertificatePem() + "\n");
        var restarted = await TestControlPlane.StartAsync(configDirectory, configure: null, securePort: securePort);
        Owned.Insert(0, restarted);

        await Eventually.TrueAsync(() => identity.Current!.Bundle.Roots.Count == 2, "the new root is pushed");
        Assert.Equal(serial, identity.Current!.Certificate.SerialNumber);
    }

    [Fact]
    public async Task PortLevelMtls_OverridesTheWorkloadsMode_OnThatPortOnly()
    {
        var backend = await StartSecureAsync("reviews", "reviews");
        var port = backend.Address.Port;
        ControlPlane.WriteConfig("peer-authentication.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              mtls: { mode: STRICT }
              portLevelMtls: { {{port}}: { mode: PERMISSIVE } }
            """);
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.PortModes.ContainsKey((uint)port), "the policy applies");

        Assert.Equal(MtlsMode.Strict, backend.Snapshot.PeerAuthentication.Mode);
        Assert.Equal(HttpStatusCode.OK, await PlainTextAsync(port));

        ControlPlane.WriteConfig("peer-authentication.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: { name: reviews, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              mtls: { mode: PERMISSIVE }
              portLevelMtls: { {{port}}: { mode: STRICT } }
            """);
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.Mode == MtlsMode.Permissive, "the new policy applies");

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => PlainTextAsync(port));
    }

    [Fact]
    public async Task APluggedInIntermediateCa_SignsWorkloads_AndPeersVerifyThroughIt()
    {
        // An organisation's root and an intermediate for the mesh, given to a fresh control plane as files.
        var configDirectory = Directory.CreateTempSubdirectory("meshkit-cp-").FullName;
        var caDirectory = configDirectory + "-ca";
        Directory.CreateDirectory(caDirectory);
        using var root = CertificateProfile.CreateRoot("cluster.local", DateTimeOffset.UtcNow, TimeSpan.FromDays(30));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("O=cluster.local, CN=Mesh Intermediate", intermediateKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(root, true, false));
        using var intermediate = request.Create(root, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(10), RandomNumberGenerator.GetBytes(8));
        File.WriteAllText(Path.Combine(caDirectory, "root-cert.pem"), root.ExportCertificatePem());
        File.WriteAllText(Path.Combine(caDirectory, "ca-cert.pem"), intermediate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(caDirectory, "ca-key.pem"), intermediateKey.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(caDirectory, "cert-chain.pem"), intermediate.ExportCertificatePem() + root.ExportCertificatePem());
        await ControlPlane.DisposeAsync();
        Owned.Clear();
        ControlPlane = await TestControlPlane.StartAsync(configDirectory);

        var backend = await StartSecureAsync("reviews", "reviews");
        var client = await StartSecureAsync("productpage", "productpage");
        await KnowsIdentityAsync(client);
        WritePeerAuthentication("STRICT");
        await Eventually.TrueAsync(() => backend.Snapshot.PeerAuthentication.Mode == MtlsMode.Strict, "STRICT applies");

        var issued = CertificateOf(backend);
        Assert.Equal(intermediate.Subject, issued.Certificate.Issuer);
        Assert.Equal(intermediate.Thumbprint, Assert.Single(issued.Intermediates).Thumbprint);
        Assert.Equal(root.Thumbprint, Assert.Single(issued.Bundle.Roots).Thumbprint);
        using var response = await client.CreateClient().GetAsync("http://reviews/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task AJoinToken_ThatPinsAnotherRoot_IsNeverSent()
    {
        // A token from another control plane: the workload sees the root does not match and gets no certificate.
        await using var other = await TestControlPlane.StartAsync();
        var foreignToken = other.CreateJoinToken("default", "reviews");
        var workload = await StartReviewsWaitingBrieflyAsync(ControlPlane.SecureAddress, foreignToken);

        Assert.Null(workload.Services.GetRequiredService<WorkloadIdentity>().Current);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => TlsWithoutCertificateAsync(workload.Address.Port));
    }

    private static async Task<HttpStatusCode> PlainTextAsync(int port)
    {
        using var http = new HttpClient();
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/"));
        return response.StatusCode;
    }

    private static async Task<HttpStatusCode> TlsWithoutCertificateAsync(int port, X509Certificate2? clientCertificate = null)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        if (clientCertificate is not null)
        {
            handler.SslOptions.ClientCertificates = [clientCertificate];
        }

        using var http = new HttpClient(handler);
        using var response = await http.GetAsync(new Uri($"https://127.0.0.1:{port}/"));
        return response.StatusCode;
    }

    [Fact]
    public async Task AnAppThatReplacesKestrelsEndpointDefaults_IsWarnedOnce_ThatMeshCallersCannotReachIt()
    {
        // Kestrel keeps one endpoint-defaults action: the application's, set after AddMesh(), replaces MeshKit's hook.
        var reviews = await StartSecureAsync("reviews", services: s => s.AddFakeLogging()
            .Configure<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>(k => k.ConfigureEndpointDefaults(l => l.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1AndHttp2)));
        var ratings = await StartSecureAsync("ratings", services: s => s.AddFakeLogging());
        using var plain = new HttpClient();

        for (var i = 0; i < 2; i++)
        {
            (await plain.GetAsync($"http://127.0.0.1:{reviews.Address.Port}/")).EnsureSuccessStatusCode();
            (await plain.GetAsync($"http://127.0.0.1:{ratings.Address.Port}/")).EnsureSuccessStatusCode();
        }

        static List<string> Warnings(TestWorkload w) => w.Services.GetRequiredService<Microsoft.Extensions.Logging.Testing.FakeLogCollector>().GetSnapshot()
            .Where(r => r.Id.Name == "MutualTlsHookMissing").Select(r => r.Message).ToList();
        var warning = Assert.Single(Warnings(reviews));
        Assert.Contains($"port {reviews.Address.Port}", warning, StringComparison.Ordinal);
        Assert.Empty(Warnings(ratings)); // its hook is in place: plain text went through it (PERMISSIVE)
    }
}
