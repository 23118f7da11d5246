using System.Net;
using MeshKit.Protocol.V1;
using MeshKit.Resilience;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Resilience;

/// <summary>Each <c>retryOn</c> condition, with Envoy's meaning, and the idempotency rule.</summary>
public class RetryConditionsTests
{
    private static HttpResponseMessage Response(int status, int? grpc = null)
    {
        var response = new HttpResponseMessage((HttpStatusCode)status);
        if (grpc is { } code)
        {
            response.Headers.TryAddWithoutValidation("grpc-status", code.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        return response;
    }

    private static bool Retries(string retryOn, HttpResponseMessage? response, AttemptFailure failure = AttemptFailure.None, bool idempotent = true, params uint[] codes) =>
        new RetryConditions(retryOn.Split(','), codes).ShouldRetry(response, failure, idempotent);

    [Theory]
    [InlineData("5xx", 500, true)]
    [InlineData("5xx", 503, true)]
    [InlineData("5xx", 404, false)]
    [InlineData("gateway-error", 502, true)]
    [InlineData("gateway-error", 504, true)]
    [InlineData("gateway-error", 500, false)]
    [InlineData("retriable-4xx", 409, true)]
    [InlineData("retriable-4xx", 429, false)]
    [InlineData("connect-failure", 503, false)]
    public void StatusConditions(string retryOn, int status, bool expected) => Assert.Equal(expected, Retries(retryOn, Response(status)));

    [Fact]
    public void RetriableStatusCodes_AndBareCodes()
    {
        Assert.True(Retries("retriable-status-codes", Response(429), AttemptFailure.None, true, 429));
        Assert.False(Retries("retriable-status-codes", Response(500), AttemptFailure.None, true, 429));
        Assert.True(Retries("cancelled", Response(503), AttemptFailure.None, true, 503));
    }

    [Theory]
    [InlineData("cancelled", 1, true)]
    [InlineData("deadline-exceeded", 4, true)]
    [InlineData("resource-exhausted", 8, true)]
    [InlineData("internal", 13, true)]
    [InlineData("unavailable", 14, true)]
    [InlineData("unavailable", 13, false)]
    public void GrpcConditions_ReadTheTrailersOnlyStatus(string retryOn, int grpc, bool expected) =>
        Assert.Equal(expected, Retries(retryOn, Response(200, grpc)));

    [Theory]
    [InlineData("connect-failure", "ConnectFailure", true)]
    [InlineData("refused-stream", "RefusedStream", true)]
    [InlineData("reset", "Reset", true)]
    [InlineData("5xx", "ConnectFailure", true)]
    [InlineData("5xx", "Reset", true)]
    [InlineData("5xx", "PerTryTimeout", true)]
    [InlineData("gateway-error", "PerTryTimeout", true)]
    [InlineData("reset", "ConnectFailure", false)]
    [InlineData("connect-failure", "Reset", false)]
    public void FailureConditions(string retryOn, string failure, bool expected) => Assert.Equal(expected, Retries(retryOn, null, Enum.Parse<AttemptFailure>(failure)));

    [Theory]
    [InlineData("ConnectFailure", true)]
    [InlineData("RefusedStream", true)]
    [InlineData("Reset", false)]
    [InlineData("PerTryTimeout", false)]
    [InlineData("None", false)]
    public void NotIdempotent_IsRetriedOnlyWhenItNeverReachedTheServer(string failure, bool expected)
    {
        var kind = Enum.Parse<AttemptFailure>(failure);
        Assert.Equal(expected, Retries("5xx,connect-failure,refused-stream,reset", kind == AttemptFailure.None ? Response(503) : null, kind, idempotent: false));
    }

    [Fact]
    public void Classify_MapsDotNetExceptions()
    {
        Assert.Equal(AttemptFailure.ConnectFailure, RetryConditions.Classify(new HttpRequestException(HttpRequestError.ConnectionError, "refused")));
        Assert.Equal(AttemptFailure.RefusedStream, RetryConditions.Classify(new HttpRequestException("x", new HttpProtocolException(0x7, "refused", null))));
        Assert.Equal(AttemptFailure.Reset, RetryConditions.Classify(new HttpRequestException(HttpRequestError.ResponseEnded, "ended")));
        Assert.Equal(AttemptFailure.PerTryTimeout, RetryConditions.Classify(new Polly.Timeout.TimeoutRejectedException()));
        Assert.Equal(AttemptFailure.None, RetryConditions.Classify(new InvalidOperationException()));
    }

    [Fact]
    public void Pushback_ReadsRetryAfterAndGrpcPushback()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var seconds = Response(503);
        seconds.Headers.TryAddWithoutValidation("Retry-After", "3");
        var date = Response(503);
        date.Headers.TryAddWithoutValidation("Retry-After", "Thu, 01 Jan 2026 00:00:05 GMT");
        var grpc = Response(200);
        grpc.Headers.TryAddWithoutValidation("grpc-retry-pushback-ms", "250");

        Assert.Equal(TimeSpan.FromSeconds(3), RetryConditions.Pushback(seconds, time));
        Assert.Equal(TimeSpan.FromSeconds(5), RetryConditions.Pushback(date, time));
        Assert.Equal(TimeSpan.FromMilliseconds(250), RetryConditions.Pushback(grpc, time));
        Assert.Null(RetryConditions.Pushback(Response(503), time));
    }

    [Theory]
    [InlineData("Retry-After", "300", 300_000.0)]
    [InlineData("Retry-After", "301", null)]
    [InlineData("grpc-retry-pushback-ms", "300000", 300_000.0)]
    [InlineData("grpc-retry-pushback-ms", "300001", null)]
    [InlineData("grpc-retry-pushback-ms", "99999999999999999999", null)]
    [InlineData("grpc-retry-pushback-ms", "-5", null)]
    public void Pushback_LongerThanEnvoysMaxInterval_IsDiscarded(string header, string value, double? milliseconds)
    {
        var response = Response(503);
        response.Headers.TryAddWithoutValidation(header, value);

        Assert.Equal(milliseconds is { } ms ? TimeSpan.FromMilliseconds(ms) : null, RetryConditions.Pushback(response, TimeProvider.System));
    }

    [Theory]
    [InlineData("-1", true)]
    [InlineData("soon", true)]
    [InlineData("250", false)]
    [InlineData(null, false)]
    public void AGrpcPushbackThatIsNotANonNegativeNumber_RefusesTheRetry(string? value, bool refuses)
    {
        var response = Response(200, grpc: 14);
        if (value is not null)
        {
            response.Headers.TryAddWithoutValidation("grpc-retry-pushback-ms", value);
        }

        Assert.Equal(refuses, RetryConditions.ServerRefusesRetry(response));
    }

    [Fact]
    public void IstioDefault_RetriesConnectFailuresAndGrpcUnavailable_NotAnApplications503Or500()
    {
        var conditions = RetryConditions.IstioDefault;
        Assert.True(conditions.ShouldRetry(null, AttemptFailure.ConnectFailure, true));
        Assert.False(conditions.ShouldRetry(Response(503), AttemptFailure.None, true));
        Assert.True(conditions.ShouldRetry(Response(200, 14), AttemptFailure.None, true));
        Assert.False(conditions.ShouldRetry(Response(500), AttemptFailure.None, true));
        Assert.False(conditions.ShouldRetry(null, AttemptFailure.Reset, true));
    }

    [Fact]
    public void RetriesWithoutRetryOn_KeepIstiosDefaultConditions()
    {
        // Istio starts from its default policy and replaces retryOn only when one is given: `retries: { attempts: 3 }`
        // retries what the default does, three times.
        var pipelines = new RouteResilience.Pipelines(TimeProvider.System);
        var attemptsOnly = RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 3 } }, pipelines);
        Assert.Equal(3, attemptsOnly.Attempts);
        Assert.True(attemptsOnly.Conditions.ShouldRetry(null, AttemptFailure.ConnectFailure, true));
        Assert.True(attemptsOnly.Conditions.ShouldRetry(Response(200, 14), AttemptFailure.None, true));
        Assert.False(attemptsOnly.Conditions.ShouldRetry(Response(503), AttemptFailure.None, true));

        // A retryOn replaces the conditions; bare codes alone are the whole list (Istio adds retriable-status-codes).
        var fiveXx = RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 3, RetryOn = { "5xx" } } }, pipelines);
        Assert.True(fiveXx.Conditions.ShouldRetry(Response(500), AttemptFailure.None, true));
        var codesOnly = RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 3, RetriableStatusCodes = { 409 } } }, pipelines);
        Assert.True(codesOnly.Conditions.ShouldRetry(Response(409), AttemptFailure.None, true));
        Assert.False(codesOnly.Conditions.ShouldRetry(Response(503), AttemptFailure.None, true));
        Assert.False(codesOnly.Conditions.ShouldRetry(null, AttemptFailure.ConnectFailure, true));
    }

    [Fact]
    public void RetryIgnorePreviousHosts_False_LetsARetryReturnToAnEndpointTried()
    {
        var pipelines = new RouteResilience.Pipelines(TimeProvider.System);
        Assert.True(RouteResilience.Create(new HttpRoute(), pipelines).AvoidTried);
        Assert.True(RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 2 } }, pipelines).AvoidTried);
        Assert.True(RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 2, RetryIgnorePreviousHosts = true } }, pipelines).AvoidTried);
        Assert.False(RouteResilience.Create(new HttpRoute { Retries = new RetryPolicy { Attempts = 2, RetryIgnorePreviousHosts = false } }, pipelines).AvoidTried);
    }

    [Fact]
    public void FullJitter_StaysUnderTheExponentialCeiling()
    {
        foreach (var baseDelay in new[] { 25, 100 })
        {
            for (var attempt = 0; attempt < 8; attempt++)
            {
                var ceiling = Math.Min(10 * baseDelay, baseDelay * Math.Pow(2, attempt));
                Assert.All(Enumerable.Range(0, 100).Select(_ => RouteResilience.FullJitter(attempt, TimeSpan.FromMilliseconds(baseDelay)).TotalMilliseconds), d => Assert.InRange(d, 0, ceiling));
            }
        }
    }
}
