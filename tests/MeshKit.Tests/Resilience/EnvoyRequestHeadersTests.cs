using MeshKit.Protocol.V1;
using MeshKit.Resilience;

namespace MeshKit.Tests.Resilience;

/// <summary>How a request's <c>x-envoy-*</c> headers are read, and what they change of its route's policy.</summary>
public sealed class EnvoyRequestHeadersTests
{
    private static bool Read(out ResilienceOverrides overrides, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return EnvoyRequestHeaders.TryRead(request.Headers, out overrides);
    }

    [Fact]
    public void ARequestWithoutThem_HasNoOverrides()
    {
        Assert.False(Read(out _, ("x-request-id", "abc"), ("x-envoy-attempt-count", "1")));
    }

    [Fact]
    public void Values_AreReadAsEnvoyReadsThem()
    {
        Assert.True(Read(
            out var overrides,
            ("X-Envoy-Upstream-Rq-Timeout-Ms", " 1500 "),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "250"),
            ("x-envoy-max-retries", "4"),
            ("x-envoy-retry-on", "5xx, reset,unknown"),
            ("x-envoy-retry-grpc-on", "unavailable,5xx"),
            ("x-envoy-retriable-status-codes", "409,abc,429")));

        Assert.Equal(TimeSpan.FromMilliseconds(1500), overrides.Timeout);
        Assert.Equal(TimeSpan.FromMilliseconds(250), overrides.PerTryTimeout);
        Assert.Equal(4, overrides.MaxRetries);

        // Each header's own conditions only: 5xx is no gRPC condition.
        Assert.Equal(["5xx", "reset", "unavailable"], overrides.RetryOn!);
        Assert.Equal([409u, 429u], overrides.RetriableStatusCodes!);
    }

    [Theory]
    [InlineData("x-envoy-upstream-rq-timeout-ms", "-1")]
    [InlineData("x-envoy-upstream-rq-timeout-ms", "1.5")]
    [InlineData("x-envoy-max-retries", "many")]
    [InlineData("x-envoy-retry-on", "sometimes")]
    public void AValueEnvoyWouldNotParse_ChangesNothing(string name, string value)
    {
        // Still consumed (Envoy removes the header whatever its value), but nothing changes.
        Assert.True(Read(out var overrides, (name, value)));
        Assert.Equal(default, overrides);
    }

    [Fact]
    public void Overrides_ReplaceTimeouts_AddConditions_AndSetTheCount()
    {
        var pipelines = new RouteResilience.Pipelines(TimeProvider.System);
        var route = RouteResilience.Create(new HttpRoute { TimeoutMs = 5000, Retries = new RetryPolicy { Attempts = 2, RetryOn = { "connect-failure" } } }, pipelines);

        var timeoutOnly = route.WithOverrides(new ResilienceOverrides { Timeout = TimeSpan.FromMilliseconds(100) });
        Assert.Equal(TimeSpan.FromMilliseconds(100), timeoutOnly.Timeout);
        Assert.Same(route.Pipeline, timeoutOnly.Pipeline);
        Assert.Null(route.WithOverrides(new ResilienceOverrides { Timeout = TimeSpan.Zero }).Timeout);

        var more = route.WithOverrides(new ResilienceOverrides { RetryOn = ["5xx"], MaxRetries = 5, PerTryTimeout = TimeSpan.FromMilliseconds(50) });
        Assert.Equal(5, more.Attempts);
        Assert.Equal(TimeSpan.FromMilliseconds(50), more.PerTryTimeout);
        Assert.True(more.PerTryFirst);
        Assert.True(more.Conditions.ShouldRetry(new HttpResponseMessage(System.Net.HttpStatusCode.InternalServerError), AttemptFailure.None, true));
        Assert.True(more.Conditions.ShouldRetry(null, AttemptFailure.ConnectFailure, true));
        Assert.False(route.Conditions.ShouldRetry(new HttpResponseMessage(System.Net.HttpStatusCode.InternalServerError), AttemptFailure.None, true));

        // The same change again takes the pipeline built for it.
        Assert.Same(more.Pipeline, route.WithOverrides(new ResilienceOverrides { RetryOn = ["5xx"], MaxRetries = 5, PerTryTimeout = TimeSpan.FromMilliseconds(50) }).Pipeline);
    }

    [Fact]
    public void RetriableStatusCodes_CountOnlyWhereRetriableStatusCodesIsAmongTheConditions()
    {
        var pipelines = new RouteResilience.Pipelines(TimeProvider.System);
        var fiveXx = RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 2, RetryOn = { "5xx" } } }, pipelines);
        var conflict = new HttpResponseMessage(System.Net.HttpStatusCode.Conflict);

        Assert.False(fiveXx.WithOverrides(new ResilienceOverrides { RetriableStatusCodes = [409] }).Conditions.ShouldRetry(conflict, AttemptFailure.None, true));
        Assert.True(fiveXx.WithOverrides(new ResilienceOverrides { RetryOn = ["retriable-status-codes"], RetriableStatusCodes = [409] }).Conditions.ShouldRetry(conflict, AttemptFailure.None, true));
    }
}
