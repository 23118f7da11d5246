using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Security;

/// <summary>
/// <c>Mesh:ProxyProtocolFrom</c>: a workload behind load balancers that send PROXY protocol headers reads the client
/// each one names, before TLS and HTTP; everyone else is not read.
/// </summary>
public sealed class ProxyProtocolInboundTests : MeshTestBase
{
    private static Func<HttpContext, Task<IResult?>> EchoClient => context =>
        Task.FromResult<IResult?>(Results.Text($"{context.Connection.RemoteIpAddress}|{MeshKit.Security.MeshPeer.Of(context)?.ToString() ?? "-"}"));

    /// <summary>Sends <paramref name="preface"/> then a GET of <paramref name="path"/>; returns the status line and body, or null when the server closed the connection.</summary>
    private static async Task<(int Status, string Body)?> SendAsync(int port, byte[] preface, string path)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var stream = client.GetStream();
        await stream.WriteAsync(preface);
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        string text;
        try
        {
            text = await reader.ReadToEndAsync();
        }
        catch (IOException)
        {
            return null; // reset
        }

        if (text.Length == 0)
        {
            return null;
        }

        var status = int.Parse(text.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return (status, text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
    }

    [Fact]
    public async Task ATrustedBalancersHeader_NamesTheClient_ForTheAppAndRemoteIpBlocks_WhileIpBlocksSeeTheBalancer()
    {
        var reviews = await StartAsync("reviews", "v1", configure: o => o.ProxyProtocolFrom.Add("127.0.0.0/8"), services: AccessLogging);
        var untrusting = await StartAsync("ratings", "v1");
        reviews.Behavior = EchoClient;
        untrusting.Behavior = EchoClient;
        ControlPlane.WriteConfig("authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: by-address, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              action: ALLOW
              rules:
              - from: [{ source: { remoteIpBlocks: [203.0.113.0/24] } }]
                to: [{ operation: { paths: [/remote] } }]
              - from: [{ source: { ipBlocks: [203.0.113.0/24] } }]
                to: [{ operation: { paths: [/direct] } }]
            """);
        await Eventually.TrueAsync(() => !reviews.Snapshot.Authorization.IsEmpty, "the policy applies");
        var v1 = Encoding.ASCII.GetBytes("PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n");
        var v2 = ProxyProtocolHeader.For(2, new IPEndPoint(IPAddress.Parse("203.0.113.8"), 40001), new IPEndPoint(IPAddress.Parse("10.0.0.1"), 443));
        var port = reviews.Address.Port;

        Assert.Equal((200, "203.0.113.7|-"), await SendAsync(port, v1, "/remote"));
        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(e => e.StartsWith("inbound GET reviews/remote 200", StringComparison.Ordinal) && e.Contains(" client=203.0.113.7:40000 ", StringComparison.Ordinal)), "the access log names the client");
        Assert.Equal((200, "203.0.113.8|-"), await SendAsync(port, v2, "/remote"));
        Assert.Equal(403, (await SendAsync(port, v1, "/direct"))?.Status); // the peer is the balancer (loopback)

        // A trusted balancer must send a header: without one, the connection is closed unanswered.
        Assert.Null(await SendAsync(port, [], "/remote"));

        // A workload that trusts no balancer reads no header: the line is a request HTTP refuses.
        Assert.Equal(400, (await SendAsync(untrusting.Address.Port, v1, "/"))?.Status);
    }

    [Fact]
    public async Task TheHeader_ComesBeforeMutualTls_FromAMeshCallerWhoseRuleSendsIt()
    {
        var reviews = await StartSecureAsync("reviews", configure: o => o.ProxyProtocolFrom.Add("127.0.0.1"));
        reviews.Behavior = EchoClient;
        var productpage = await StartSecureAsync("productpage");
        var ratings = await StartSecureAsync("ratings");
        await KnowsIdentityAsync(productpage);
        await KnowsIdentityAsync(ratings);

        // ratings' calls carry no header, so reviews closes them: fail closed, as Envoy's listener filter does.
        await Assert.ThrowsAsync<HttpRequestException>(() => ratings.CreateClient().GetStringAsync("http://reviews/"));

        ControlPlane.WriteConfig("reviews-dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              workloadSelector: { matchLabels: { app: productpage } }
              trafficPolicy: { proxyProtocol: { version: V2 } }
            """);
        await Eventually.TrueAsync(() => productpage.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.ProxyProtocolVersion == 2, "the rule applies");

        // The header names the caller's end of the connection (loopback here), read before the TLS handshake it carries.
        Assert.Equal("127.0.0.1|spiffe://cluster.local/ns/default/sa/productpage", await productpage.CreateClient().GetStringAsync("http://reviews/"));
    }
}
