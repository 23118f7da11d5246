using System.Net.WebSockets;
using System.Text;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.EndToEnd;

/// <summary>WebSockets opened through a mesh client: routed like any call, in plain text and under mutual TLS.</summary>
public sealed class WebSocketTests : MeshTestBase
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task AWebSocketOpenedThroughAMeshClient_IsRoutedToTheService_AndCarriesMessagesBothWays(bool secure, bool http2)
    {
        static void Map(WebApplication app) => app.UseWebSockets();
        var reviews = secure ? await StartSecureAsync("reviews", "reviews", app: Map) : await StartAsync("reviews", "v1", app: Map);
        reviews.Behavior = async context =>
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[256];
            var peer = MeshKit.Security.MeshPeer.Of(context)?.ToString() ?? "no peer";
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, CancellationToken.None);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                    return Results.Empty;
                }

                var reply = Encoding.UTF8.GetBytes($"{Encoding.UTF8.GetString(buffer, 0, received.Count)} from {peer} on {context.Request.Host} over {context.Request.Protocol}");
                await socket.SendAsync(reply, WebSocketMessageType.Text, true, CancellationToken.None);
            }
        };
        var productpage = secure ? await StartSecureAsync("productpage", "productpage") : await StartAsync("productpage", "v1");
        await KnowsReviewsAsync(productpage, secure);

        using var client = new ClientWebSocket();
        if (http2)
        {
            // RFC 8441: an extended CONNECT on an HTTP/2 connection (ALPN h2 under mutual TLS).
            client.Options.HttpVersion = System.Net.HttpVersion.Version20;
            client.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        }

        await client.ConnectAsync(new Uri("ws://reviews/chat"), productpage.CreateClient(), CancellationToken.None);
        var expectedPeer = secure ? "spiffe://cluster.local/ns/default/sa/productpage" : "no peer";
        foreach (var text in new[] { "one", "two" })
        {
            await client.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);
            var buffer = new byte[256];
            var got = await client.ReceiveAsync(buffer, CancellationToken.None);
            Assert.Equal($"{text} from {expectedPeer} on reviews over {(http2 ? "HTTP/2" : "HTTP/1.1")}", Encoding.UTF8.GetString(buffer, 0, got.Count));
        }

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    private static Task KnowsReviewsAsync(TestWorkload client, bool secure) => secure
        ? KnowsIdentityAsync(client)
        : Eventually.TrueAsync(() => client.Snapshot.TryResolve("reviews", out var s) && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length > 0, "reviews is known");
}
