using System.Net;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Http;

/// <summary>Envoy's <c>x-request-id</c>: given to a request that has none, on either side, kept when it has one.</summary>
public sealed class RequestIdTests : MeshTestBase
{
    [Fact]
    public async Task ACallWithoutAnId_GetsOne_ThatTheServerAndBothAccessLogEntriesShare()
    {
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging);
        reviews.Behavior = EchoRequestId;
        var productpage = await StartAsync("productpage", "v1", services: AccessLogging);
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "productpage knows reviews");

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/books/1");
        using var response = await productpage.CreateClient().SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var id = await response.Content.ReadAsStringAsync();
        Assert.True(Guid.TryParseExact(id, "D", out var parsed) && parsed.Version == 4, $"a random UUID, not '{id}'");
        Assert.Equal(id, Assert.Single(request.Headers.GetValues("x-request-id"))); // the application can log what was sent
        Assert.Contains($"id={id}", Assert.Single(AccessLogEntries(productpage)), StringComparison.Ordinal);
        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(m => m.Contains("inbound GET", StringComparison.Ordinal) && m.Contains($"id={id}", StringComparison.Ordinal)), "the server logged the same id");

        // Each call its own id.
        var second = await productpage.CreateClient().GetStringAsync("http://reviews/books/2");
        Assert.True(Guid.TryParse(second, out _) && second != id, second);
    }

    [Fact]
    public async Task AnIdTheApplicationForwards_IsKept()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = EchoRequestId;
        var productpage = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "productpage knows reviews");

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/books/1");
        request.Headers.TryAddWithoutValidation("x-request-id", "from-the-edge-42");
        using var response = await productpage.CreateClient().SendAsync(request);
        Assert.Equal("from-the-edge-42", await response.Content.ReadAsStringAsync());

        // A caller outside the mesh that sends one keeps it too.
        using var direct = new HttpClient();
        using var plain = new HttpRequestMessage(HttpMethod.Get, new Uri(reviews.Address, "/books/1"));
        plain.Headers.TryAddWithoutValidation("x-request-id", "curl-7");
        using var answered = await direct.SendAsync(plain);
        Assert.Equal("curl-7", await answered.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ARequestFromOutsideTheMesh_GetsAnIdAtTheServer()
    {
        var reviews = await StartAsync("reviews", "v1", services: AccessLogging);
        reviews.Behavior = EchoRequestId;

        using var direct = new HttpClient();
        var id = await direct.GetStringAsync(new Uri(reviews.Address, "/books/1"));

        Assert.True(Guid.TryParseExact(id, "D", out _), $"a UUID, not '{id}'");
        await Eventually.TrueAsync(() => AccessLogEntries(reviews).Any(m => m.Contains($"id={id}", StringComparison.Ordinal)), "the server logged it");
    }

    [Fact]
    public async Task GenerateRequestIdOff_NeitherSideMakesOne()
    {
        var reviews = await StartAsync("reviews", "v1", o => o.GenerateRequestId = false, services: AccessLogging);
        reviews.Behavior = EchoRequestId;
        var productpage = await StartAsync("productpage", "v1", o => o.GenerateRequestId = false, services: AccessLogging);
        await Eventually.TrueAsync(() => productpage.Endpoints(ReviewsHost) == 1, "productpage knows reviews");

        Assert.Equal("none", await productpage.CreateClient().GetStringAsync("http://reviews/books/1"));
        Assert.Contains("id=-", Assert.Single(AccessLogEntries(productpage)), StringComparison.Ordinal);

        using var direct = new HttpClient();
        Assert.Equal("none", await direct.GetStringAsync(new Uri(reviews.Address, "/books/1")));
    }

    [Fact]
    public void NewIds_AreVersion4Uuids_AndDistinct()
    {
        var ids = Enumerable.Range(0, 10_000).Select(_ => MeshKit.Http.RequestId.New()).ToList();

        Assert.All(ids, id => Assert.True(Guid.TryParseExact(id, "D", out var g) && g.Version == 4 && (g.Variant & 0xC) == 0x8, id));
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    private static Task<IResult?> EchoRequestId(HttpContext context) =>
        Task.FromResult<IResult?>(Results.Text(context.Request.Headers.TryGetValue("x-request-id", out var id) ? id.ToString() : "none"));
}
