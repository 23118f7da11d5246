using System.Diagnostics.Metrics;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MeshKit.Tests.Telemetry;

/// <summary>A match block's <c>statPrefix</c> (Envoy's per-route statistics) over real calls.</summary>
public sealed class RouteStatsEndToEndTests : MeshTestBase
{
    [Fact]
    public async Task AStreamedReply_IsTimedToTheEndOfItsBody_UnderItsRoutesName()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = async context =>
        {
            // The headers go at once, the body after a pause: the route's duration covers both, as Envoy's does.
            await context.Response.StartAsync();
            await context.Response.Body.FlushAsync();
            await Task.Delay(400);
            await context.Response.WriteAsync("slow");
            return Results.Empty;
        };
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ uri: { prefix: /slow }, statPrefix: reviews-slow }]
                route: [{ destination: { host: reviews } }]
              - route: [{ destination: { host: reviews } }]
            """);
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2 && s.Routes[0].Matchers[0].StatPrefix == "reviews-slow" && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == 1, "the routes apply");
        var meters = productpage.Services.GetRequiredService<IMeterFactory>();
        using var requests = new MetricCollector<long>(meters, "MeshKit", "meshkit.route.requests");
        using var durations = new MetricCollector<double>(meters, "MeshKit", "meshkit.route.duration");
        var http = productpage.CreateClient();

        using (var response = await http.GetAsync("http://reviews/slow", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Empty(durations.GetMeasurementSnapshot()); // the body is still to come
            Assert.Equal("slow", await response.Content.ReadAsStringAsync());
        }

        await http.GetStringAsync("http://reviews/other");

        var timed = Assert.Single(durations.GetMeasurementSnapshot());
        Assert.InRange(timed.Value, 350, double.MaxValue);
        Assert.Equal(("reviews-slow", "reviews", 200), ((string?)timed.Tags["meshkit.route"], (string?)timed.Tags["meshkit.destination.service"], (int?)timed.Tags["http.response.status_code"]));
        var counted = Assert.Single(requests.GetMeasurementSnapshot());
        Assert.Equal(("reviews-slow", "-"), ((string?)counted.Tags["meshkit.route"], (string?)counted.Tags["meshkit.response_flags"]));
    }
}
