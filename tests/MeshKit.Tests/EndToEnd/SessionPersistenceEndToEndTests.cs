using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// Strong session affinity end to end (Envoy's stateful session): a Service's Istio label or an HTTPRoute rule's
/// sessionPersistence makes the caller's responses name the endpoint that served them, and the calls that send the
/// name back go to that endpoint while it lives; then to another, which the next response names.
/// </summary>
public sealed class SessionPersistenceEndToEndTests : MeshTestBase
{
    private static string Version(string body) => body.Split('|')[1];

    private async Task<(TestWorkload[] Reviews, TestWorkload Productpage)> StartReviewsAsync()
    {
        TestWorkload[] reviews = [await StartAsync("reviews", "v1"), await StartAsync("reviews", "v2"), await StartAsync("reviews", "v3")];
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 3, "the three instances are known");
        return (reviews, productpage);
    }

    [Fact]
    public async Task AServicesPersistentSessionHeaderLabel_KeepsACallerOnItsEndpoint_UntilTheEndpointLeaves()
    {
        var (reviews, productpage) = await StartReviewsAsync();
        ControlPlane.WriteConfig("reviews-service.yaml", """
            apiVersion: v1
            kind: Service
            metadata:
              name: reviews
              labels: { app: reviews, istio.io/persistent-session-header: x-session }
            spec:
              selector: { app: reviews }
              ports: [{ port: 9080, name: http }]
            """);
        var http = productpage.CreateClient();

        async Task<(string Version, string? Session)> CallAsync(string? session)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/reviews/1");
            if (session is not null)
            {
                request.Headers.Add("x-session", session);
            }

            using var response = await http.SendAsync(request);
            return (Version(await response.Content.ReadAsStringAsync()), response.Headers.TryGetValues("x-session", out var values) ? values.Single() : null);
        }

        // A call without a session gets one, naming the endpoint that answered.
        var first = (Version: string.Empty, Session: (string?)null);
        await Eventually.TrueAsync(async () => (first = await CallAsync(null)).Session is not null, "the label applies");

        // The calls that send it back go there (round robin would spread them over the three), and are not renamed.
        for (var i = 0; i < 12; i++)
        {
            Assert.Equal((first.Version, null), await CallAsync(first.Session));
        }

        // The endpoint leaves: the session moves to another, which the response names.
        await reviews.Single(r => r.Version == first.Version).StopAsync();
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 2, "the instance is gone");
        var moved = await CallAsync(first.Session);
        Assert.NotEqual(first.Version, moved.Version);
        Assert.NotNull(moved.Session);
        Assert.NotEqual(first.Session, moved.Session);
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(moved.Version, (await CallAsync(moved.Session)).Version);
        }

        // A session naming no endpoint of the service (forged, or long gone) is placed anew.
        var forged = await CallAsync(Convert.ToBase64String("10.9.9.9:1"u8));
        Assert.NotNull(forged.Session);
    }

    [Fact]
    public async Task AnHttpRoutesSessionPersistence_IsACookieTheCallersClientKeeps()
    {
        var (_, productpage) = await StartReviewsAsync();
        ControlPlane.WriteConfig("reviews-route.yaml", """
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews }]
              rules:
              - matches: [{ path: { type: PathPrefix, value: /cart } }]
                sessionPersistence: { sessionName: cart, absoluteTimeout: 10m, cookieConfig: { lifetimeType: Permanent } }
                backendRefs: [{ name: reviews, port: 9080 }]
              - backendRefs: [{ name: reviews, port: 9080 }]
            """);
        var http = productpage.CreateClient();

        // The first call under the rule sets the cookie; the client's own cookie handling sends it back.
        HttpResponseMessage? first = null;
        await Eventually.TrueAsync(async () =>
        {
            first?.Dispose();
            first = await http.GetAsync("http://reviews/cart/1");
            return first.Headers.TryGetValues("Set-Cookie", out _);
        }, "the route applies");
        var cookie = first!.Headers.GetValues("Set-Cookie").Single();
        Assert.Matches("^cart=\"[A-Za-z0-9+/=]+\"; Max-Age=600; Path=/; HttpOnly$", cookie);
        var version = Version(await first.Content.ReadAsStringAsync());
        first.Dispose();

        for (var i = 0; i < 12; i++)
        {
            using var again = await http.GetAsync("http://reviews/cart/2");
            Assert.Equal(version, Version(await again.Content.ReadAsStringAsync()));
            Assert.False(again.Headers.Contains("Set-Cookie"));
        }

        // Calls of the other rule are balanced as before: the three instances serve them.
        var versions = new HashSet<string>();
        for (var i = 0; i < 12; i++)
        {
            versions.Add(Version(await http.GetStringAsync("http://reviews/other")));
        }

        Assert.Equal(3, versions.Count);
    }

    [Fact]
    public async Task ARoutesSession_HoldsAcrossItsWeightedBackends()
    {
        // Istio's version Services as the backends of a 50/50 split: the session keeps a caller on one of them.
        var (_, productpage) = await StartReviewsAsync();
        ControlPlane.WriteConfig("reviews-route.yaml", """
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v1 }
            spec: { selector: { app: reviews, version: v1 }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v2 }
            spec: { selector: { app: reviews, version: v2 }, ports: [{ port: 9080, name: http }] }
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: { name: reviews }
            spec:
              parentRefs: [{ group: "", kind: Service, name: reviews }]
              rules:
              - sessionPersistence: { sessionName: reviews-session }
                backendRefs: [{ name: reviews-v1, port: 9080, weight: 50 }, { name: reviews-v2, port: 9080, weight: 50 }]
            """);
        var http = productpage.CreateClient();
        string? version = null;
        await Eventually.TrueAsync(async () =>
        {
            using var response = await http.GetAsync("http://reviews/reviews/1");
            version = Version(await response.Content.ReadAsStringAsync());
            return response.Headers.TryGetValues("Set-Cookie", out var cookies) && cookies.Single().StartsWith("reviews-session=", StringComparison.Ordinal);
        }, "the route applies");

        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(version, Version(await http.GetStringAsync("http://reviews/reviews/2")));
        }
    }
}
