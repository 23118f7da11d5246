using System.Net;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// A Sidecar's <c>outboundTrafficPolicy.egressProxy</c>, as Istio routes unknown traffic to it: a call to a host
/// outside the registry goes to the proxy's endpoints with the authority the application called, never around it.
/// Real control plane, real workloads on loopback.
/// </summary>
public sealed class EgressProxyTests : MeshTestBase
{
    private const string Sidecar = """
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: { name: productpage }
        spec:
          workloadSelector: { labels: { app: productpage } }
          egress: [{ hosts: ["{{hosts}}"] }]
          outboundTrafficPolicy:
            mode: ALLOW_ANY
            egressProxy: { host: egress.default.svc.cluster.local, port: { number: 9080 } }
        """;

    [Fact]
    public async Task ACallOutsideTheRegistry_GoesThroughTheProxy_WithItsOwnAuthority_AndNeverAroundIt()
    {
        await using var outside = await ExternalServer.StartAsync("outside");
        var proxy = await StartAsync("egress", "v1");
        proxy.Behavior = context => Task.FromResult<IResult?>(Results.Text($"proxy:{context.Request.Host}{context.Request.Path}"));
        await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        var http = productpage.CreateClient();

        // Without the Sidecar a host outside the registry is called directly.
        var direct = new Uri($"http://127.0.0.1:{outside.Port}/orders");
        Assert.StartsWith("outside:/orders:", await http.GetStringAsync(direct), StringComparison.Ordinal);

        ControlPlane.WriteConfig("sidecar.yaml", Sidecar.Replace("{{hosts}}", "*/*", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () => (await http.GetStringAsync(direct)).StartsWith("proxy:", StringComparison.Ordinal), "the Sidecar's proxy takes the call");
        var reachedDirectly = outside.Requests; // the calls made before the Sidecar applied
        Assert.Equal($"proxy:127.0.0.1:{outside.Port}/orders", await http.GetStringAsync(direct));
        Assert.Equal("proxy:api.example.com/v1/items", await http.GetStringAsync("http://api.example.com/v1/items"));

        // The mesh's own hosts are routed as ever.
        Assert.StartsWith("reviews|v1|", await http.GetStringAsync("http://reviews/"), StringComparison.Ordinal);

        // A TLS call cannot go through an HTTP hop: refused, not sent around the proxy.
        using (var tls = await http.GetAsync("https://api.example.com/v1/items"))
        {
            Assert.Equal(HttpStatusCode.BadGateway, tls.StatusCode);
            Assert.Contains("egress proxy", await tls.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // A proxy the workload does not see (outside its egress hosts): its calls fail, and the control plane says why.
        ControlPlane.WriteConfig("sidecar.yaml", Sidecar.Replace("{{hosts}}", "./reviews.default.svc.cluster.local", StringComparison.Ordinal));
        await Eventually.TrueAsync(async () => (await http.GetAsync(direct)).StatusCode == HttpStatusCode.ServiceUnavailable, "the call fails without its proxy");
        Assert.Equal(reachedDirectly, outside.Requests);
        var findings = await ControlPlane.GetAdminJsonAsync("/debug/findings");
        Assert.Contains("is not among the Sidecar's egress hosts", findings.ToString(), StringComparison.Ordinal);
    }
}
