using System.Collections.Concurrent;
using System.Globalization;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Http;

/// <summary>
/// The headers an Istio sidecar adds to calls, added by the mesh handler as Envoy adds them: the attempt count on each
/// try, the caller's expected timeout, the original path of a rewritten call, and the upstream's service time on the
/// answer; MeshConfig's <c>defaultConfig.proxyHeaders</c> turns each off, as Istio's does. Real control plane, real
/// workloads on loopback.
/// </summary>
public sealed class ProxyHeadersTests : MeshTestBase
{
    private static readonly string[] Watched =
        ["x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms", "x-envoy-original-path", "x-request-id", "x-forwarded-client-cert"];

    private readonly ConcurrentQueue<(string Path, Dictionary<string, string> Headers)> _seen = new();

    [Fact]
    public async Task EachAttempt_CarriesItsCount_TheCallItsTimeoutAndOriginalPath_AndTheAnswerTheUpstreamsServiceTime()
    {
        WriteRoutes();
        var reviews = await StartReviewsAsync();
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "productpage knows reviews");
        var client = productpage.CreateClient();

        // The first try fails (503), the retry succeeds: the upstream sees attempts 1 and 2, each told the per-try timeout.
        using (var response = await client.GetAsync("http://reviews/flaky"))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            var tries = _seen.Where(s => s.Path == "/flaky").Select(s => s.Headers).ToArray();
            Assert.Equal(["1", "2"], tries.Select(h => h.GetValueOrDefault("x-envoy-attempt-count")));
            Assert.All(tries, h => Assert.Equal("1000", h.GetValueOrDefault("x-envoy-expected-rq-timeout-ms")));
            Assert.All(tries, h => Assert.False(h.ContainsKey("x-envoy-original-path")));
        }

        // The application's own timeout for its call replaces the route's in what the upstream is told.
        using (var shortened = new HttpRequestMessage(HttpMethod.Get, "http://reviews/shortened"))
        {
            shortened.Headers.TryAddWithoutValidation("x-envoy-upstream-rq-timeout-ms", "700");
            using var response = await client.SendAsync(shortened);
            Assert.Equal("700", Assert.Single(_seen, s => s.Path == "/shortened").Headers.GetValueOrDefault("x-envoy-expected-rq-timeout-ms"));
        }

        // A slow answer: the service time counts the upstream's wait (and replaces what the upstream claimed).
        using (var response = await client.GetAsync("http://reviews/slow"))
        {
            var serviceTime = int.Parse(response.Headers.GetValues("x-envoy-upstream-service-time").Single(), CultureInfo.InvariantCulture);
            Assert.InRange(serviceTime, 200, 30_000);
        }

        // A rewritten call: the upstream sees the path the application called (with its query), and no timeout header
        // where the route has none.
        Assert.Equal("ok", await client.GetStringAsync("http://reviews/old/books?id=1"));
        var rewritten = Assert.Single(_seen, s => s.Path == "/new/books").Headers;
        Assert.Equal("/old/books?id=1", rewritten.GetValueOrDefault("x-envoy-original-path"));
        Assert.False(rewritten.ContainsKey("x-envoy-expected-rq-timeout-ms"));
        Assert.Equal("1", rewritten.GetValueOrDefault("x-envoy-attempt-count"));

        // A call outside the mesh's routes (the workload's address, ALLOW_ANY) is one attempt too.
        using (var response = await client.GetAsync(new Uri(reviews.Address, "/direct")))
        {
            Assert.Equal("1", Assert.Single(_seen, s => s.Path == "/direct").Headers.GetValueOrDefault("x-envoy-attempt-count"));
            Assert.True(response.Headers.Contains("x-envoy-upstream-service-time"));
        }
    }

    [Fact]
    public async Task ProxyHeadersOfMeshConfig_TurnEachOff_OnBothSides()
    {
        WriteRoutes();
        ControlPlane.WriteConfig("mesh.yaml", """
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec:
              defaultConfig:
                proxyHeaders:
                  requestId: { disabled: true }
                  attemptCount: { disabled: true }
                  envoyDebugHeaders: { disabled: true }
                  forwardedClientCert: SANITIZE
                  metadataExchangeHeaders: { mode: IN_MESH }
            """);
        await StartSecureReviewsAsync();
        var productpage = await StartSecureAsync("productpage");
        await KnowsIdentityAsync(productpage);
        var client = productpage.CreateClient();

        // The push lands: nothing of the mesh's own is added, even over mutual TLS (no caller certificate told).
        await Eventually.TrueAsync(async () =>
        {
            _seen.Clear();
            using var response = await client.GetAsync("http://reviews/old/books");
            return response.IsSuccessStatusCode && _seen.Single().Headers.Count == 0 && !response.Headers.Contains("x-envoy-upstream-service-time");
        }, "the headers are off");

        using var flaky = await client.GetAsync("http://reviews/flaky");
        Assert.Equal(System.Net.HttpStatusCode.OK, flaky.StatusCode);
        Assert.All(_seen.Where(s => s.Path == "/flaky"), s => Assert.Empty(s.Headers));
        Assert.Equal(2, _seen.Count(s => s.Path == "/flaky"));

        // Turned on again (proxyHeaders gone): the caller's certificate and the ids are back.
        ControlPlane.WriteConfig("mesh.yaml", """
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: {}
            """);
        await Eventually.TrueAsync(async () =>
        {
            _seen.Clear();
            using var response = await client.GetAsync("http://reviews/old/books");
            var seen = _seen.Single().Headers;
            return seen.ContainsKey("x-forwarded-client-cert") && seen.ContainsKey("x-request-id") && seen.ContainsKey("x-envoy-attempt-count")
                && seen.ContainsKey("x-envoy-original-path") && response.Headers.Contains("x-envoy-upstream-service-time");
        }, "the headers are on again");
    }

    private void WriteRoutes() => ControlPlane.WriteConfig("reviews.yaml", """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews, namespace: default }
        spec:
          hosts: [reviews]
          http:
          - match: [{ uri: { prefix: /old/ } }]
            rewrite: { uri: /new/ }
            route: [{ destination: { host: reviews } }]
          - timeout: 10s
            retries: { attempts: 2, perTryTimeout: 1s, retryOn: 5xx }
            route: [{ destination: { host: reviews } }]
        """);

    private async Task<TestWorkload> StartReviewsAsync()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = Record;
        return reviews;
    }

    private async Task<TestWorkload> StartSecureReviewsAsync()
    {
        var reviews = await StartSecureAsync("reviews");
        reviews.Behavior = Record;
        return reviews;
    }

    // Records what the mesh told the upstream; the first try of /flaky fails, /slow takes its time.
    private async Task<IResult?> Record(HttpContext context)
    {
        var headers = Watched.Where(h => context.Request.Headers.ContainsKey(h)).ToDictionary(h => h, h => context.Request.Headers[h].ToString());
        var path = context.Request.Path.Value!;
        _seen.Enqueue((path, headers));
        switch (path)
        {
            case "/flaky" when _seen.Count(s => s.Path == "/flaky") % 2 == 1:
                return Results.StatusCode(503);
            case "/slow":
                await Task.Delay(250);
                context.Response.Headers["x-envoy-upstream-service-time"] = "1";
                return Results.Text("ok");
            default:
                return Results.Text("ok");
        }
    }
}
