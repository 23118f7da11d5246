using System.Diagnostics;
using System.Net;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Conformance;

/// <summary>VirtualService <c>fault</c>: applied before the request leaves, percentages honoured statistically.</summary>
public class FaultConformanceTests
{
    private static HttpMessageInvoker Mesh(string fault) =>
        InMemoryMesh.Create(InMemoryMesh.Subsets + InMemoryMesh.VirtualService($$"""
              - fault: {{fault}}
                route: [{ destination: { host: reviews, subset: v1 } }]
            """));

    [Fact]
    public async Task Abort_AllRequests_AnswersLocallyWithTheFaultFlag()
    {
        using var mesh = Mesh("{ abort: { httpStatus: 418, percentage: { value: 100 } } }");
        using var response = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://reviews/"), CancellationToken.None);

        Assert.Equal((HttpStatusCode)418, response.StatusCode);
        Assert.Equal("FI", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.False(response.Headers.Contains("x-sent-to"));
    }

    [Theory]
    [InlineData(50.0, 2000, 900, 1100)]
    [InlineData(10.0, 2000, 140, 260)]
    [InlineData(0.5, 4000, 4, 40)]
    public async Task Abort_Percentage_IsHonouredStatistically(double percent, int calls, int min, int max)
    {
        using var mesh = Mesh($"{{ abort: {{ httpStatus: 503, percentage: {{ value: {percent.ToString(System.Globalization.CultureInfo.InvariantCulture)} }} }} }}");
        var aborted = 0;
        for (var i = 0; i < calls; i++)
        {
            aborted += await mesh.SendAsync("http://reviews/") == "503 FI" ? 1 : 0;
        }

        Assert.InRange(aborted, min, max);
    }

    [Fact]
    public async Task GrpcAbort_IsAGrpcStatus()
    {
        using var mesh = Mesh("{ abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } } }");
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://reviews/greet.Greeter/SayHello") { Version = HttpVersion.Version20, Content = new ByteArrayContent([]) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");

        using var response = await mesh.SendAsync(request, CancellationToken.None);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("14", response.Headers.GetValues("grpc-status").Single());
    }

    [Fact]
    public async Task Delay_HoldsTheRequestBeforeItLeaves()
    {
        using var mesh = Mesh("{ delay: { fixedDelay: 300ms, percentage: { value: 100 } } }");
        var watch = Stopwatch.StartNew();

        using var response = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://reviews/"), CancellationToken.None);

        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(290), $"only {watch.Elapsed}");
        Assert.Equal("v1", await response.Content.ReadAsStringAsync());
        Assert.Equal("DI", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
    }

    [Fact]
    public async Task DelayPercentage_Zero_NeverDelays()
    {
        using var mesh = Mesh("{ delay: { fixedDelay: 10s, percentage: { value: 0 } }, abort: { httpStatus: 500, percentage: { value: 0 } } }");
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal("v1", await mesh.SendAsync("http://reviews/"));
        }

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));
    }
}
