using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MeshKit.Tests.Infrastructure;
using MeshKit.Tests.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// DestinationRule <c>proxyProtocol</c>: each new connection to the destination starts with a PROXY protocol header,
/// before any TLS, read here by a real Kestrel server the way HAProxy or nginx (<c>proxy_protocol</c>) would.
/// </summary>
public sealed class ProxyProtocolTests : MeshTestBase, IDisposable
{
    private readonly ExternalCa _external = new();

    public void Dispose() => _external.Dispose();

    [Fact]
    public async Task Version1_StartsEachNewConnection_NamingItsTwoEnds()
    {
        await using var server = await ProxyProtocolServer.StartAsync(certificate: null);
        var client = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("payments.yaml", TlsOriginationTests.PaymentsRules(server.Port, "connectionPool: { tcp: { maxConnections: 10 } }"));
        await WaitForVersionAsync(client, 0);
        Assert.Equal("plain|none", Strip(await client.CreateClient().GetStringAsync("http://payments.example.test/")));

        // One request per connection: every request opens a connection of its own, and each starts with a header.
        ControlPlane.WriteConfig("payments.yaml", TlsOriginationTests.PaymentsRules(server.Port, "proxyProtocol: {}\n    connectionPool: { http: { maxRequestsPerConnection: 1 } }"));
        await WaitForVersionAsync(client, 1);
        var ports = new HashSet<int>();
        for (var i = 0; i < 2; i++)
        {
            var reply = await client.CreateClient().GetStringAsync("http://payments.example.test/");
            var (clientPort, header) = Split(reply);
            Assert.Equal($"plain|V1 TCP4 127.0.0.1 127.0.0.1 {clientPort} {server.Port}", header);
            ports.Add(clientPort);
        }

        Assert.Equal(2, ports.Count);
        Assert.Equal(2, server.Headers.Count(h => h.StartsWith("V1 ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Version2_PrecedesTheTlsHandshake_OfTlsOrigination()
    {
        using var leaf = _external.Leaf("payments.example.test", server: true);
        await using var server = await ProxyProtocolServer.StartAsync(leaf);
        var client = await StartAsync("productpage", "v1");
        var ca = _external.WritePem("ca.pem", _external.Root.ExportCertificatePem());

        ControlPlane.WriteConfig("payments.yaml", TlsOriginationTests.PaymentsRules(server.Port, $"proxyProtocol: {{ version: V2 }}\n    tls: {{ mode: SIMPLE, caCertificates: {ca} }}"));
        await WaitForVersionAsync(client, 2);

        var (clientPort, header) = Split(await client.CreateClient().GetStringAsync("http://payments.example.test/"));
        Assert.Equal($"tls|V2 TCP4 127.0.0.1 127.0.0.1 {clientPort} {server.Port}", header);
    }

    private static Task WaitForVersionAsync(TestWorkload client, uint version) =>
        Eventually.TrueAsync(
            () => client.Snapshot.Services.TryGetValue("payments.example.test", out var s) && (s.Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.ProxyProtocolVersion ?? 0) == version
                && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length > 0,
            $"proxyProtocol version {version} applies");

    /// <summary>Splits the server's reply "scheme|client port|header" into the client port and the rest.</summary>
    private static (int ClientPort, string Reply) Split(string reply)
    {
        var parts = reply.Split('|');
        return (int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), parts[0] + "|" + parts[2]);
    }

    private static string Strip(string reply) => Split(reply).Reply;

    /// <summary>
    /// A server outside the mesh that reads an optional PROXY protocol header (versions 1 and 2) from each connection
    /// before anything else, TLS included, and answers "scheme|client port|header" (<c>none</c> when there was none).
    /// </summary>
    internal sealed class ProxyProtocolServer(WebApplication app, int port, ConcurrentQueue<string> headers) : IAsyncDisposable
    {
        private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

        public int Port { get; } = port;

        /// <summary>Gets the header of every connection, in order (<c>none</c> for a connection without one).</summary>
        public IReadOnlyCollection<string> Headers => headers;

        public static async Task<ProxyProtocolServer> StartAsync(X509Certificate2? certificate)
        {
            var headers = new ConcurrentQueue<string>();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
            {
                // First on the connection's bytes: before the TLS middleware, as a PROXY-aware listener reads it.
                l.Use(next => async connection =>
                {
                    var header = await ReadHeaderAsync(connection.Transport.Input);
                    headers.Enqueue(header);
                    connection.Items["proxy"] = header;
                    await next(connection);
                });
                if (certificate is not null)
                {
                    l.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = certificate });
                }
            }));
            var app = builder.Build();
            app.MapGet("/", (HttpContext c) =>
                $"{(c.Request.IsHttps ? "tls" : "plain")}|{c.Connection.RemotePort}|{c.Features.Get<IConnectionItemsFeature>()!.Items["proxy"]}");
            await app.StartAsync();
            return new ProxyProtocolServer(app, new Uri(app.Urls.First()).Port, headers);
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        /// <summary>Reads and consumes a PROXY header if the connection starts with one; leaves the bytes alone if not.</summary>
        private static async Task<string> ReadHeaderAsync(PipeReader input)
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                if (TryParse(buffer, out var header, out var length))
                {
                    input.AdvanceTo(buffer.GetPosition(length));
                    return header;
                }

                if (header is not null || result.IsCompleted)
                {
                    input.AdvanceTo(buffer.Start);
                    return header ?? "incomplete";
                }

                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }

        /// <summary>
        /// Parses a whole header at the start of <paramref name="buffer"/>; false with <paramref name="header"/> null
        /// when more bytes are needed, false with it "none" when the connection starts with something else.
        /// </summary>
        private static bool TryParse(ReadOnlySequence<byte> buffer, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? header, out int length)
        {
            header = null;
            length = 0;
            var bytes = buffer.Slice(0, Math.Min(buffer.Length, 232)).ToArray(); // a header is at most 232 bytes (v2 IPv6)
            var v1 = "PROXY "u8;
            if (bytes.Length >= v1.Length && bytes.AsSpan(0, v1.Length).SequenceEqual(v1))
            {
                var end = bytes.AsSpan().IndexOf("\r\n"u8);
                if (end < 0)
                {
                    return false;
                }

                header = "V1 " + Encoding.ASCII.GetString(bytes, v1.Length, end - v1.Length);
                length = end + 2;
                return true;
            }

            if (bytes.Length >= V2Signature.Length && bytes.AsSpan(0, V2Signature.Length).SequenceEqual(V2Signature))
            {
                if (bytes.Length < 16)
                {
                    return false;
                }

                var size = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(14));
                if (bytes.Length < 16 + size)
                {
                    return false;
                }

                var body = bytes.AsSpan(16, size);
                length = 16 + size;
                header = (bytes[12], bytes[13]) switch
                {
                    (0x21, 0x11) => $"V2 TCP4 {new IPAddress(body[..4])} {new IPAddress(body[4..8])} {BinaryPrimitives.ReadUInt16BigEndian(body[8..])} {BinaryPrimitives.ReadUInt16BigEndian(body[10..])}",
                    (0x21, 0x21) => $"V2 TCP6 {new IPAddress(body[..16])} {new IPAddress(body[16..32])} {BinaryPrimitives.ReadUInt16BigEndian(body[32..])} {BinaryPrimitives.ReadUInt16BigEndian(body[34..])}",
                    (var command, var family) => $"V2 command {command:x2} family {family:x2}",
                };
                return true;
            }

            // Neither signature can still be matched: the connection does not start with a header.
            var prefix = Math.Min(bytes.Length, V2Signature.Length);
            if ((bytes.Length < v1.Length && bytes.AsSpan().SequenceEqual(v1[..bytes.Length]))
                || bytes.AsSpan(0, prefix).SequenceEqual(V2Signature.AsSpan(0, prefix)))
            {
                return false;
            }

            header = "none";
            return false;
        }
    }
}
