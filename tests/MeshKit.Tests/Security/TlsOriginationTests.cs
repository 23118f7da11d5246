using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Security;

/// <summary>DestinationRule tls SIMPLE and MUTUAL: the mesh handler originates TLS to an external HTTPS server.</summary>
public sealed class TlsOriginationTests : MeshTestBase, IDisposable
{
    private readonly ExternalCa _external = new();

    public void Dispose() => _external.Dispose();

    [Fact]
    public async Task Simple_VerifiesTheServerAgainstTheRulesCa_AndItsNames()
    {
        await using var server = await HttpsServer.StartAsync(_external.Leaf("payments.example.test", server: true), requireClientCertificate: false);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());

        WriteRules(server.Port, $"tls: {{ mode: SIMPLE, caCertificates: {ca} }}");
        await WaitForTlsModeAsync(client, "SIMPLE");
        Assert.Equal("tls:HTTP/1.1:none", await client.CreateClient().GetStringAsync("http://payments.example.test/"));

        WriteRules(server.Port, $"tls: {{ mode: SIMPLE, caCertificates: {ca}, subjectAltNames: [other.example.test] }}");
        await Eventually.TrueAsync(() => client.Snapshot.Services["payments.example.test"].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Origination?.SubjectAltNames.Count == 1, "the new rule applies");
        var wrongName = await Assert.ThrowsAsync<HttpRequestException>(() => client.CreateClient().GetAsync("http://payments.example.test/"));
        Assert.Contains("rejected by the provided RemoteCertificateValidationCallback", wrongName.ToString(), StringComparison.Ordinal);

        // Without the CA the system's roots apply, and they do not know this server.
        WriteRules(server.Port, "tls: { mode: SIMPLE, sni: payments.example.test }");
        await Eventually.TrueAsync(() => client.Snapshot.Services["payments.example.test"].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Origination?.CaCertificates.Length == 0, "the new rule applies");
        var unknownCa = await Assert.ThrowsAsync<HttpRequestException>(() => client.CreateClient().GetAsync("http://payments.example.test/"));
        Assert.Contains("rejected by the provided RemoteCertificateValidationCallback", unknownCa.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mutual_PresentsTheClientCertificateFromFiles()
    {
        await using var server = await HttpsServer.StartAsync(_external.Leaf("payments.example.test", server: true), requireClientCertificate: true);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());
        using var clientCertificate = _external.Leaf("productpage.client", server: false);
        var cert = _external.WritePem("client.pem", clientCertificate.ExportCertificatePem());
        var key = _external.WritePem("client-key.pem", clientCertificate.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());

        WriteRules(server.Port, $"tls: {{ mode: MUTUAL, caCertificates: {ca}, clientCertificate: {cert}, privateKey: {key} }}");
        await WaitForTlsModeAsync(client, "MUTUAL");

        Assert.Equal("tls:HTTP/1.1:CN=productpage.client", await client.CreateClient().GetStringAsync("http://payments.example.test/"));
    }

    [Fact]
    public async Task AMissingCertificateFile_RejectsTheRule_AndThePreviousOneStays()
    {
        await using var server = await HttpsServer.StartAsync(_external.Leaf("payments.example.test", server: true), requireClientCertificate: false);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());
        WriteRules(server.Port, $"tls: {{ mode: SIMPLE, caCertificates: {ca} }}");
        await WaitForTlsModeAsync(client, "SIMPLE");

        WriteRules(server.Port, $"tls: {{ mode: SIMPLE, caCertificates: {Path.Combine(_external.Folder, "missing.pem")} }}");
        await Eventually.TrueAsync(async () => (await ControlPlane.GetAdminJsonAsync("/debug/connections")).GetProperty("connections").EnumerateArray().Any(c => c.GetProperty("lastNack").GetString()?.Contains("missing.pem", StringComparison.Ordinal) == true), "the workload rejects the rule");

        Assert.Equal("tls:HTTP/1.1:none", await client.CreateClient().GetStringAsync("http://payments.example.test/"));
    }

    [Fact]
    public async Task PortLevelTls_OriginatesOnThatPortOnly()
    {
        await using var tls = await HttpsServer.StartAsync(_external.Leaf("payments.example.test", server: true), requireClientCertificate: false);
        await using var plain = await HttpsServer.StartAsync(certificate: null, requireClientCertificate: false);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());
        ControlPlane.WriteConfig("payments.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              ports:
              - { number: 80, name: http, protocol: HTTP, targetPort: {{plain.Port}} }
              - { number: 443, name: https, protocol: HTTP, targetPort: {{tls.Port}} }
              resolution: STATIC
              endpoints: [{ address: 127.0.0.1 }]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: payments }
            spec:
              host: payments.example.test
              trafficPolicy:
                portLevelSettings:
                - port: { number: 443 }
                  tls: { mode: SIMPLE, caCertificates: {{ca}} }
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("payments.example.test", out var s) && s.Routes[0].Targets[0].Endpoints?.ForPort(443).Upstream.TlsMode == "SIMPLE", "the port's tls applies");

        var http = client.CreateClient();
        Assert.Equal("tls:HTTP/1.1:none", await http.GetStringAsync("http://payments.example.test:443/"));
        Assert.Equal("plain:HTTP/1.1:none", await http.GetStringAsync("http://payments.example.test/"));
    }

    [Fact]
    public async Task SubsetTls_OriginatesToThatSubsetOnly_WhileAnotherSubsetsPortLevelTlsOverridesIt()
    {
        await using var tls = await HttpsServer.StartAsync(_external.Leaf("payments.example.test", server: true), requireClientCertificate: false);
        await using var plain = await HttpsServer.StartAsync(certificate: null, requireClientCertificate: false);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());

        // The rule originates TLS on every port; the "legacy" subset turns it off on port 80 with its own port-level
        // setting (Istio's precedence: subset port-level over subset over rule).
        ControlPlane.WriteConfig("payments.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              ports: [{ number: 80, name: http, protocol: HTTP }]
              resolution: STATIC
              endpoints:
              - { address: 127.0.0.1, ports: { http: {{tls.Port}} }, labels: { version: current } }
              - { address: 127.0.0.1, ports: { http: {{plain.Port}} }, labels: { version: legacy } }
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: payments }
            spec:
              host: payments.example.test
              trafficPolicy:
                tls: { mode: SIMPLE, caCertificates: {{ca}} }
              subsets:
              - { name: current, labels: { version: current } }
              - name: legacy
                labels: { version: legacy }
                trafficPolicy:
                  portLevelSettings: [{ port: { number: 80 }, tls: { mode: DISABLE } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: payments }
            spec:
              hosts: [payments.example.test]
              http:
              - match: [{ headers: { x-version: { exact: legacy } } }]
                route: [{ destination: { host: payments.example.test, subset: legacy } }]
              - route: [{ destination: { host: payments.example.test, subset: current } }]
            """);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("payments.example.test", out var s) && s.Routes.Length == 2, "the routes apply");

        var http = client.CreateClient();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("tls:HTTP/1.1:none", await http.GetStringAsync("http://payments.example.test/"));
            using var legacy = new HttpRequestMessage(HttpMethod.Get, "http://payments.example.test/") { Headers = { { "x-version", "legacy" } } };
            using var response = await http.SendAsync(legacy);
            Assert.Equal("plain:HTTP/1.1:none", await response.Content.ReadAsStringAsync());
        }
    }

    [Theory]
    [InlineData("current", true)]
    [InlineData("revokes-the-server", false)]
    [InlineData("expired", false)]
    [InlineData("signed-by-another-ca", false)]
    public async Task CaCrl_RefusesARevokedServer_AndAListThatCannotBeTrusted(string list, bool reached)
    {
        using var leaf = _external.Leaf("payments.example.test", server: true);
        await using var server = await HttpsServer.StartAsync(leaf, requireClientCertificate: false);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());
        using var other = CertificateProfile.CreateRoot("other.test", DateTimeOffset.UtcNow, TimeSpan.FromDays(1));
        var now = DateTimeOffset.UtcNow;
        var builder = new CertificateRevocationListBuilder();
        builder.AddEntry(list == "revokes-the-server" ? leaf.SerialNumberBytes.Span : [0x7f, 0x01], now.AddMinutes(-5));
        var crl = builder.Build(list == "signed-by-another-ca" ? other : _external.Root, System.Numerics.BigInteger.One, list == "expired" ? now.AddMinutes(-1) : now.AddHours(1), HashAlgorithmName.SHA256, thisUpdate: now.AddMinutes(-10));
        var path = _external.WritePem("ca.crl", PemEncoding.WriteString("X509 CRL", crl));

        WriteRules(server.Port, $"tls: {{ mode: SIMPLE, caCertificates: {ca}, caCrl: {path} }}");
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("payments.example.test", out var s) && s.Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Origination?.CaCrl == path, "the rule applies");

        if (reached)
        {
            Assert.Equal("tls:HTTP/1.1:none", await client.CreateClient().GetStringAsync("http://payments.example.test/"));
        }
        else
        {
            await Assert.ThrowsAsync<HttpRequestException>(() => client.CreateClient().GetAsync("http://payments.example.test/"));
        }
    }

    /// <summary>Waits until <paramref name="client"/>'s calls to <c>payments.example.test</c> originate TLS in <paramref name="mode"/>.</summary>
    internal static Task WaitForTlsModeAsync(TestWorkload client, string mode) =>
        Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue("payments.example.test", out var s) && s.Routes[0].Targets[0].Endpoints?.Upstream.TlsMode == mode, $"{mode} applies");

    private void WriteRules(int port, string tls) => ControlPlane.WriteConfig("payments.yaml", PaymentsRules(port, tls));

    /// <summary>A ServiceEntry for <c>payments.example.test</c> at 127.0.0.1:<paramref name="port"/> and a DestinationRule with <paramref name="tls"/>.</summary>
    internal static string PaymentsRules(int port, string tls) => $$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: { name: payments }
        spec:
          hosts: [payments.example.test]
          ports: [{ number: 80, name: http, protocol: HTTP, targetPort: {{port}} }]
          resolution: STATIC
          endpoints: [{ address: 127.0.0.1 }]
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: payments }
        spec:
          host: payments.example.test
          trafficPolicy:
            {{tls}}
        """;

    /// <summary>An HTTPS server outside the mesh that says how it was reached.</summary>
    internal sealed class HttpsServer(WebApplication app, int port) : IAsyncDisposable
    {
        public int Port { get; } = port;

        /// <summary>Starts the server; without a certificate it speaks plain text.</summary>
        public static async Task<HttpsServer> StartAsync(X509Certificate2? certificate, bool requireClientCertificate)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
            {
                if (certificate is not null)
                {
                    l.UseHttps(new HttpsConnectionAdapterOptions
                    {
                        ServerCertificate = certificate,
                        ClientCertificateMode = requireClientCertificate ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.NoCertificate,
                        ClientCertificateValidation = (_, _, _) => true,
                    });
                }
            }));
            var app = builder.Build();
            app.MapGet("/", (HttpContext c) => $"{(c.Request.IsHttps ? "tls" : "plain")}:{c.Request.Protocol}:{c.Connection.ClientCertificate?.Subject ?? "none"}");
            await app.StartAsync();
            return new HttpsServer(app, new Uri(app.Urls.First()).Port);
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
