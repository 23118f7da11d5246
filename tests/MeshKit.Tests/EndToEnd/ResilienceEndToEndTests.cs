using System.Diagnostics;
using System.Net;
using System.Text;
using System.Diagnostics.Metrics;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MeshKit.Tests.EndToEnd;

/// <summary>Timeouts, retries, fault injection and mirroring against real servers that fail on command.</summary>
public sealed class ResilienceEndToEndTests : MeshTestBase
{
    private static Func<HttpContext, Task<IResult?>> Status(int code, int times = int.MaxValue, string? retryAfter = null)
    {
        var left = times;
        return context =>
        {
            if (Interlocked.Decrement(ref left) < 0)
            {
                return Task.FromResult<IResult?>(null);
            }

            if (retryAfter is not null)
            {
                context.Response.Headers.RetryAfter = retryAfter;
            }

            return Task.FromResult<IResult?>(Results.StatusCode(code));
        };
    }

    private static Func<HttpContext, Task<IResult?>> Delay(TimeSpan delay, int times = int.MaxValue)
    {
        var left = times;
        return async context =>
        {
            if (Interlocked.Decrement(ref left) >= 0)
            {
                await Task.Delay(delay, context.RequestAborted);
            }

            return null;
        };
    }

    private static Func<HttpContext, Task<IResult?>> Reset() => context =>
    {
        context.Abort();
        return Task.FromResult<IResult?>(Results.Empty);
    };

    // The reviews DestinationRule with this trafficPolicy (YAML flow or block text).
    private void WriteRule(string trafficPolicy) => ControlPlane.WriteConfig("dr.yaml", $$"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: reviews }
        spec:
          host: reviews
          trafficPolicy:
        {{string.Join('\n', trafficPolicy.Split('\n').Select(l => "    " + l))}}
        """);

    private async Task<TestWorkload> RouteAsync(string http, int endpoints = 1, string annotations = "", Action<IServiceCollection>? services = null)
    {
        ControlPlane.WriteConfig("vs.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: reviews
              {{annotations}}
            spec:
              hosts: [reviews]
              http:
              {{http}}
            """);
        var client = await StartAsync("productpage", "v1", services: services);
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue(ReviewsHost, out var s)
            && s.Routes.Length == 1 && s.Routes[0].Matchers.Length == 0 && s.Routes[0].Targets[0].Endpoints?.Endpoints.Length == endpoints
            && s.Routes[0].Resilience is not null, "the route applies");
        return client;
    }

    [Fact]
    public async Task Retries_GoToAnotherEndpoint_SoEveryCallSucceeds()
    {
        var broken = await StartAsync("reviews", "v1");
        var healthy = await StartAsync("reviews", "v1");
        broken.Behavior = Status(503);
        var client = await RouteAsync("- { retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }", endpoints: 2);
        var http = client.CreateClient();

        for (var i = 0; i < 40; i++)
        {
            using var response = await http.GetAsync("http://reviews/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(40, healthy.Served);
        Assert.InRange(broken.Served, 1, 40);
    }

    [Fact]
    public async Task Retries_AttemptsCountRetriesAfterTheFirstTry_ThenTheFailureIsReturned()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503);
        var client = await RouteAsync("- { retries: { attempts: 3, retryOn: \"503\" }, route: [{ destination: { host: reviews } }] }");
        using var retries = new MetricCollector<long>(client.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "meshkit.client.retries");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(4, backend.Served);
        Assert.Equal("URX", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.Equal(3, retries.GetMeasurementSnapshot().EvaluateAsCounter());
    }

    [Fact]
    public async Task Retries_OnlyOnTheirConditions()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(500);
        var client = await RouteAsync("- { retries: { attempts: 3, retryOn: gateway-error }, route: [{ destination: { host: reviews } }] }");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, backend.Served);
    }

    [Fact]
    public async Task Post_IsNotRetriedAfterItReachedTheServer_UnlessTheRouteOptsIn()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503);
        var client = await RouteAsync("- { retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        using (var response = await http.PostAsync("http://reviews/orders", new StringContent("{}")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        Assert.Equal(1, backend.Served);

        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: reviews
              annotations: { meshkit.dev/retry-non-idempotent: "true" }
            spec:
              hosts: [reviews]
              http: [{ retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }]
            """);
        await Eventually.TrueAsync(async () =>
        {
            var before = backend.Served;
            using var response = await http.PostAsync("http://reviews/orders", new StringContent("{}"));
            return backend.Served - before == 3;
        }, "the opted-in route retries POST");
    }

    [Fact]
    public async Task ConnectFailure_IsRetriedElsewhere_EvenForPost_WithIstiosDefaultPolicy()
    {
        var healthy = await StartAsync("reviews", "v1");
        using var closed = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var deadPort = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        ControlPlane.WriteConfig("se.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: flaky }
            spec:
              hosts: [flaky.example]
              location: MESH_INTERNAL
              ports: [{ number: 80, name: http }]
              resolution: STATIC
              endpoints:
              - { address: 127.0.0.1, ports: { http: {{deadPort}} } }
              - { address: 127.0.0.1, ports: { http: {{healthy.Address.Port}} } }
            """);
        var client = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => client.Snapshot.Services.ContainsKey("flaky.example"), "the ServiceEntry applies");
        var http = client.CreateClient();

        for (var i = 0; i < 20; i++)
        {
            using var get = await http.GetAsync("http://flaky.example/");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            using var post = await http.PostAsync("http://flaky.example/", new StringContent("x"));
            Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        }
    }

    [Fact]
    public async Task ConnectionReset_IsRetriedOnReset()
    {
        var resetting = await StartAsync("reviews", "v1");
        var healthy = await StartAsync("reviews", "v1");
        resetting.Behavior = Reset();
        var client = await RouteAsync("- { retries: { attempts: 2, retryOn: reset }, route: [{ destination: { host: reviews } }] }", endpoints: 2);

        for (var i = 0; i < 20; i++)
        {
            using var response = await client.CreateClient().GetAsync("http://reviews/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task PerTryTimeout_MovesOnToAnotherEndpoint()
    {
        var slow = await StartAsync("reviews", "v1");
        var fast = await StartAsync("reviews", "v1");
        slow.Behavior = Delay(TimeSpan.FromSeconds(30));
        var client = await RouteAsync("- { retries: { attempts: 2, perTryTimeout: 1s, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }", endpoints: 2);
        var watch = Stopwatch.StartNew();

        for (var i = 0; i < 6; i++)
        {
            using var response = await client.CreateClient().GetAsync("http://reviews/");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(25), $"took {watch.Elapsed}");
        Assert.Equal(6, fast.Served);
    }

    [Fact]
    public async Task RouteTimeout_CoversEveryAttempt_And504sWithTheTimeoutFlag()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(10));
        var client = await RouteAsync("- { timeout: 500ms, retries: { attempts: 5, perTryTimeout: 200ms, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("UT", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
        Assert.InRange(backend.Served, 0, 4);
    }

    [Fact]
    public async Task RouteTimeout_WithoutRetries_504sWithTheTimeoutFlag()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(10));
        var client = await RouteAsync("- { timeout: 300ms, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("UT", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");

        // No retry: at most the one attempt (on a loaded machine the timeout can fire before the server has started it).
        Assert.InRange(backend.Served, 0, 1);
    }

    // The x-envoy-* headers each request carried to the server.
    private static readonly HashSet<string> MeshOwnHeaders = new(StringComparer.OrdinalIgnoreCase) { "x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms", "x-envoy-original-path" };

    private static Func<HttpContext, Task<IResult?>> RecordEnvoyHeaders(System.Collections.Concurrent.ConcurrentQueue<string> seen, Func<HttpContext, Task<IResult?>>? then = null) => context =>
    {
        // The application's x-envoy-* headers; those the mesh itself sends on every call (ProxyHeadersTests) are not counted.
        seen.Enqueue(string.Join(',', context.Request.Headers.Keys.Where(k => k.StartsWith("x-envoy-", StringComparison.OrdinalIgnoreCase) && !MeshOwnHeaders.Contains(k))));
        return then?.Invoke(context) ?? Task.FromResult<IResult?>(null);
    };

    [Fact]
    public async Task AnApplicationsTimeoutHeader_ReplacesTheRouteTimeoutForItsCall_AndIsNotSentOn()
    {
        var backend = await StartAsync("reviews", "v1");
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        backend.Behavior = RecordEnvoyHeaders(seen, Delay(TimeSpan.FromSeconds(1)));
        var client = await RouteAsync("- { timeout: 20s, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        // Shorter than the route's: the call ends at it, with Envoy's flag.
        using var shortened = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        shortened.Headers.TryAddWithoutValidation("X-Envoy-Upstream-Rq-Timeout-Ms", "200");
        using var timedOut = await http.SendAsync(shortened);
        Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
        Assert.Equal("UT", timedOut.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.Contains("00:00:00.2", await timedOut.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The application's message keeps its header (it may send it again); the server never saw it.
        Assert.True(shortened.Headers.Contains("x-envoy-upstream-rq-timeout-ms"));
        Assert.All(seen, headers => Assert.Equal(string.Empty, headers));

        // A value Envoy would not parse is ignored: the route's timeout holds.
        using var garbled = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        garbled.Headers.TryAddWithoutValidation("x-envoy-upstream-rq-timeout-ms", "soon");
        using var answered = await http.SendAsync(garbled);
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
    }

    [Fact]
    public async Task AnApplicationsTimeoutHeaderOfZero_TurnsTheRouteTimeoutOff()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(1));
        var client = await RouteAsync("- { timeout: 200ms, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        using var unbounded = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        unbounded.Headers.TryAddWithoutValidation("x-envoy-upstream-rq-timeout-ms", "0");
        using var answered = await http.SendAsync(unbounded);
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);

        using var timedOut = await http.GetAsync("http://reviews/");
        Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
    }

    [Fact]
    public async Task AnApplicationsRetryHeaders_RetryWhatTheRouteDoesNot_AsManyTimesAsTheyAsk()
    {
        var backend = await StartAsync("reviews", "v1");
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var client = await RouteAsync("- { retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        // The route retries nothing: the 503 is the caller's.
        backend.Behavior = RecordEnvoyHeaders(seen, Status(503, times: 3));
        using var plain = await http.GetAsync("http://reviews/");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, plain.StatusCode);
        Assert.Equal(1, backend.Served);

        // Conditions and a count of its own: two more 503s, then the answer, on the fourth attempt of the call.
        using var retried = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        retried.Headers.TryAddWithoutValidation("x-envoy-retry-on", "gateway-error,no-such-condition");
        retried.Headers.TryAddWithoutValidation("x-envoy-max-retries", "3");
        using var answered = await http.SendAsync(retried);
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        Assert.Equal(4, backend.Served);
        Assert.All(seen, headers => Assert.Equal(string.Empty, headers));

        // Conditions alone retry once (Envoy's default count), and a count alone retries nothing where nothing is retried.
        backend.Behavior = Status(503, times: 2);
        using var once = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        once.Headers.TryAddWithoutValidation("x-envoy-retry-on", "5xx");
        using var stillFailing = await http.SendAsync(once);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, stillFailing.StatusCode);
        Assert.Equal(6, backend.Served);

        backend.Behavior = Status(503, times: 1);
        using var countOnly = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        countOnly.Headers.TryAddWithoutValidation("x-envoy-max-retries", "5");
        using var notRetried = await http.SendAsync(countOnly);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notRetried.StatusCode);
        Assert.Equal(7, backend.Served);
    }

    [Fact]
    public async Task AnApplicationsRetriableStatusCodes_AddToIstiosDefaultPolicy()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(409, times: 1);
        var client = await RouteAsync("- { route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        request.Headers.TryAddWithoutValidation("x-envoy-retriable-status-codes", "409");
        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, backend.Served);
    }

    [Fact]
    public async Task AnApplicationsPerTryTimeoutHeader_EndsEachAttemptAtIt_AndARetryFollows()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(30), times: 1);
        var client = await RouteAsync("- { timeout: 20s, retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        request.Headers.TryAddWithoutValidation("x-envoy-upstream-rq-per-try-timeout-ms", "300");
        using var response = await client.CreateClient().SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, backend.Served);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task RouteTimeout_ShorterThanThePerTryTimeout_EndsTheCall_WithoutARetry()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(10));
        var client = await RouteAsync("- { timeout: 300ms, retries: { attempts: 3, perTryTimeout: 5s, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("UT", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.InRange(backend.Served, 0, 1); // no retry (the timeout can fire before a loaded server starts the one attempt)
    }

    [Fact]
    public async Task PerTryTimeout_UnderARouteTimeout_RetriesWithinWhatIsLeftOfIt()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(30), times: 1);
        var client = await RouteAsync("- { timeout: 20s, retries: { attempts: 2, perTryTimeout: 300ms, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, backend.Served);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task RetriesBackoff_TheRouteSetsIt_ARetryWaitsForItOnTheWorkloadsClock()
    {
        // A base interval of an hour: the first retry waits up to an hour (full jitter), on the workload's clock, which
        // the test holds still and then moves. Were the delay not taken, or taken on the real clock, the call would end
        // before the clock moves, or not within the minute after.
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503, times: 1);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var client = await RouteAsync("- { retries: { attempts: 2, retryOn: 5xx, backoff: 1h }, route: [{ destination: { host: reviews } }] }", services: s =>
        {
            s.AddSingleton<TimeProvider>(time);
            s.PostConfigure<MeshOptions>(o => o.DrainDuration = TimeSpan.Zero); // a drain would wait on the held clock
        });

        var call = client.CreateClient().GetAsync("http://reviews/");
        await Eventually.TrueAsync(() => backend.Served == 1, "the first attempt is answered");
        await Task.Delay(TimeSpan.FromSeconds(1)); // real time, in which a retry without backoff would have gone
        Assert.False(call.IsCompleted);
        Assert.Equal(1, backend.Served);

        time.Advance(TimeSpan.FromHours(1));
        using var response = await call.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, backend.Served);
    }

    [Fact]
    public async Task RouteTimeout_RunsOnThroughTheRetriesBackoff()
    {
        // Every answer is a 503 asking for a retry in 2 s: the route's 1 s ends the call during the first backoff.
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503, retryAfter: "2");
        var client = await RouteAsync("- { timeout: 1s, retries: { attempts: 3, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("UT", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.Equal(1, backend.Served);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1.9), $"took {watch.Elapsed}");
    }

    // Headers at once, then part of the body, then nothing: the route timeout must still end the call.
    private static Func<HttpContext, Task<IResult?>> StallingBody(long? declaredLength) => async context =>
    {
        context.Response.ContentLength = declaredLength;
        await context.Response.Body.WriteAsync("first part"u8.ToArray(), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
        await Task.Delay(TimeSpan.FromSeconds(60), context.RequestAborted);
        return Results.Empty;
    };

    // A body in pieces, the whole of it well within the route timeout.
    private static Func<HttpContext, Task<IResult?>> BodyInPieces(int pieces, int pieceBytes, long? declaredLength) => async context =>
    {
        context.Response.ContentLength = declaredLength;
        for (var i = 0; i < pieces; i++)
        {
            await context.Response.Body.WriteAsync(Enumerable.Repeat((byte)('a' + i), pieceBytes).ToArray(), context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(50, context.RequestAborted);
        }

        return Results.Empty;
    };

    [Theory]
    [InlineData(1000L)] // of known length
    [InlineData(null)]  // streamed (chunked)
    public async Task RouteTimeout_CoversTheBody_AStalledBody_FailsWhereItIsRead(long? declaredLength)
    {
        // Envoy's route timeout runs until the response is complete, not until its headers; headers that came in time
        // are the caller's, and the body's read is what the timeout cuts (Envoy resets the stream).
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = StallingBody(declaredLength);

        // Long enough for the headers to come in time on a loaded machine (the test is of the body).
        var client = await RouteAsync("- { timeout: 3s, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        var watch = Stopwatch.StartNew();
        using (var response = await http.GetAsync("http://reviews/", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(declaredLength, response.Content.Headers.ContentLength);
            var body = await response.Content.ReadAsStreamAsync();
            var read = await Assert.ThrowsAsync<HttpIOException>(async () =>
            {
                var buffer = new byte[64];
                while (await body.ReadAsync(buffer) > 0)
                {
                }
            });
            Assert.Equal(HttpRequestError.ResponseEnded, read.HttpRequestError);
            Assert.Contains("upstream request timeout: route", read.Message, StringComparison.Ordinal);
            Assert.IsType<TimeoutException>(read.InnerException);
        }

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");

        // Buffered by HttpClient (the default): the call itself fails.
        watch.Restart();
        var buffered = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("http://reviews/"));
        Assert.IsType<HttpIOException>(buffered.InnerException);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");
    }

    [Theory]
    [InlineData(false, 3, 10)] // streamed (no Content-Length)
    [InlineData(true, 3, 10)]  // of known length
    [InlineData(true, 4, 50_000)]
    [InlineData(false, 4, 50_000)]
    public async Task RouteTimeout_ABodyThatArrivesInTime_IsReadWhole(bool declared, int pieces, int pieceBytes)
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = BodyInPieces(pieces, pieceBytes, declared ? (long)pieces * pieceBytes : null);
        var client = await RouteAsync("- { timeout: 10s, retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        var http = client.CreateClient();

        var whole = await http.GetByteArrayAsync("http://reviews/");
        Assert.Equal(pieces * pieceBytes, whole.Length);
        Assert.Equal((byte)('a' + pieces - 1), whole[^1]);

        using var response = await http.GetAsync("http://reviews/", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(declared ? pieces * pieceBytes : null, response.Content.Headers.ContentLength);
        await using var stream = await response.Content.ReadAsStreamAsync();
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        Assert.Equal(pieces * pieceBytes, copy.Length);

        var sync = await Task.Run(() =>
        {
            using var sent = http.Send(new HttpRequestMessage(HttpMethod.Get, "http://reviews/"));
            return sent.Content.ReadAsByteArrayAsync().GetAwaiter().GetResult();
        });
        Assert.Equal(pieces * pieceBytes, sync.Length);
    }

    [Theory]
    [InlineData("api.localhost", "NONE")]
    [InlineData("\"*.localhost\"", "DYNAMIC_DNS")]
    public async Task PassThroughDestination_KeepsTheRoutesTimeoutAndRetries(string hosts, string resolution)
    {
        // A ServiceEntry with resolution NONE sends to the host the caller named (Envoy's original-destination
        // cluster), one with DYNAMIC_DNS to the name the call carries (Envoy's dynamic forward proxy); the
        // VirtualService's policy still governs the call, each retry going to that host again.
        var backend = await StartAsync("reviews", "v1");
        var port = backend.Address.Port;
        ControlPlane.WriteConfig("external.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: external }
            spec:
              hosts: [{{hosts}}]
              ports: [{ number: {{port}}, name: http, protocol: HTTP }]
              resolution: {{resolution}}
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: external }
            spec:
              hosts: [{{hosts}}]
              http:
              - match: [{ uri: { prefix: /slow } }]
                timeout: 300ms
                retries: { attempts: 0 }
                route: [{ destination: { host: {{hosts}} } }]
              - retries: { attempts: 2, retryOn: 5xx }
                route: [{ destination: { host: {{hosts}} } }]
            """);
        // The client's own handler stands in for DNS: the pass-through call goes through it to the named host.
        var resolved = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var client = await StartAsync("productpage", "v1", services: s => s.AddHttpClient("test").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancellationToken) =>
            {
                resolved.Enqueue(context.DnsEndPoint.Host);
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, context.DnsEndPoint.Port, cancellationToken);
                return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
            },
        }));
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue(hosts.Trim('"'), out var s) && s.Routes.Length == 2, "the routes apply");
        var http = client.CreateClient();

        backend.Behavior = Status(503, times: 1);
        using (var retried = await http.GetAsync($"http://api.localhost:{port}/"))
        {
            Assert.Equal(HttpStatusCode.OK, retried.StatusCode);
            Assert.Equal(2, backend.Served);
            Assert.Equal("api.localhost", Assert.Single(resolved.Distinct()));
        }

        backend.Behavior = Delay(TimeSpan.FromSeconds(10));
        var watch = Stopwatch.StartNew();
        using var timedOut = await http.GetAsync($"http://api.localhost:{port}/slow");
        Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
        Assert.Equal("UT", timedOut.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task CallerCancellation_UnderARouteTimeout_IsTheCallersNotATimeout()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(30));
        var client = await RouteAsync("- { timeout: 20s, retries: { attempts: 2, perTryTimeout: 10s, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.CreateClient().GetAsync("http://reviews/", caller.Token));
        Assert.InRange(backend.Served, 0, 1); // no retry (the caller can give up before a loaded server starts the one attempt)
    }

    [Fact]
    public async Task RetryAfter_IsHonoured()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503, times: 1, retryAfter: "1");
        var client = await RouteAsync("- { retries: { attempts: 1, retryOn: 503 }, route: [{ destination: { host: reviews } }] }");
        var watch = Stopwatch.StartNew();

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(900), $"retried after {watch.Elapsed}");
    }

    [Fact]
    public async Task ARetryAfterLongerThanFiveMinutes_IsDiscarded_AndTheRetryWaitsTheUsualBackoff()
    {
        // Envoy's rule (max_interval, 300 s): before, this call waited an hour, and a route without a timeout
        // (Istio's default) had nothing to end it.
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503, times: 1, retryAfter: "3600");
        var client = await RouteAsync("- { retries: { attempts: 1, retryOn: 503 }, route: [{ destination: { host: reviews } }] }");
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        using var response = await client.CreateClient().GetAsync("http://reviews/", bound.Token);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, backend.Served);
    }

    [Fact]
    public async Task AGrpcPushbackThatIsNegative_MeansDoNotRetry()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = context =>
        {
            context.Response.Headers["grpc-retry-pushback-ms"] = "-1";
            return Task.FromResult<IResult?>(Results.StatusCode(503));
        };
        var client = await RouteAsync("- { retries: { attempts: 3, retryOn: 503 }, route: [{ destination: { host: reviews } }] }");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(1, backend.Served);
    }

    [Fact]
    public async Task OutlierDetection_EjectsAFailingEndpoint_AndItReturnsAfterItsEjectionTime()
    {
        var broken = await StartAsync("reviews", "v1");
        var healthy = await StartAsync("reviews", "v1");
        broken.Behavior = Status(500);
        WriteRule("outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 100 }");
        var client = await RouteAsync("- { retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }", endpoints: 2);
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints!.Outlier is not null, "outlier detection applies");
        var http = client.CreateClient();
        using var ejections = new MetricCollector<long>(client.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "meshkit.client.outlier_ejections");

        var failures = 0;
        for (var i = 0; i < 30; i++)
        {
            using var response = await http.GetAsync("http://reviews/");
            failures += response.IsSuccessStatusCode ? 0 : 1;
        }

        Assert.Equal(3, failures);
        Assert.Equal(3, broken.Served);
        Assert.Equal(1, ejections.GetMeasurementSnapshot().EvaluateAsCounter());

        // Healed: after the ejection time one probe goes through, then it takes its share again.
        broken.Behavior = null;
        await Task.Delay(2500);
        for (var i = 0; i < 20; i++)
        {
            (await http.GetAsync("http://reviews/")).EnsureSuccessStatusCode();
        }

        Assert.InRange(broken.Served, 8, 17);
    }

    [Fact]
    public async Task ConnectionPoolLimit_FailsCallsOverItAtOnce_WithTheOverflowFlag()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromSeconds(2));
        WriteRule("{ connectionPool: { http: { http2MaxRequests: 2 } } }");
        var client = await RouteAsync("- { retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Limits?.MaxRequests == 2, "the limit applies");
        var http = client.CreateClient();
        using var overflowCount = new MetricCollector<long>(client.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "meshkit.client.overflows");

        var watch = Stopwatch.StartNew();
        var calls = Enumerable.Range(0, 6).Select(async _ =>
        {
            using var response = await http.GetAsync("http://reviews/");
            return (response.StatusCode, Flag: response.Headers.TryGetValues(MeshHandler.ResponseFlagsHeader, out var f) ? f.Single() : null, watch.Elapsed);
        }).ToArray();
        var results = await Task.WhenAll(calls);

        Assert.Equal(2, results.Count(r => r.StatusCode == HttpStatusCode.OK));
        var overflows = results.Where(r => r.Flag == "UO").ToList();
        Assert.Equal(4, overflows.Count);
        Assert.Equal(4, overflowCount.GetMeasurementSnapshot().EvaluateAsCounter());
        Assert.All(overflows, r => Assert.True(r.Elapsed < TimeSpan.FromSeconds(1.5), $"an overflow waited {r.Elapsed}"));
    }

    [Fact]
    public async Task SubsetPolicies_OverrideTheRules_AndEachSubsetCountsItsOwnRequests()
    {
        var v1 = await StartAsync("reviews", "v1");
        var v2 = await StartAsync("reviews", "v2");
        v1.Behavior = v2.Behavior = Delay(TimeSpan.FromSeconds(2));

        // v1 has a limit of its own and outlier detection; v2 inherits the rule's limit, which it counts alone.
        ControlPlane.WriteConfig("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              trafficPolicy:
                connectionPool: { http: { http2MaxRequests: 2 } }
              subsets:
              - name: v1
                labels: { version: v1 }
                trafficPolicy:
                  connectionPool: { http: { http2MaxRequests: 1 } }
                  outlierDetection: { consecutive5xxErrors: 3 }
              - { name: v2, labels: { version: v2 } }
            """);
        ControlPlane.WriteConfig("vs.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ headers: { x-subset: { exact: v1 } } }]
                retries: { attempts: 0 }
                route: [{ destination: { host: reviews, subset: v1 } }]
              - retries: { attempts: 0 }
                route: [{ destination: { host: reviews, subset: v2 } }]
            """);
        var client = await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 2
            && s.Routes[0].Targets[0].Endpoints?.Upstream.Limits?.MaxRequests == 1 && s.Routes[1].Targets[0].Endpoints?.Upstream.Limits?.MaxRequests == 2
            && s.Routes.All(r => r.Targets[0].Endpoints?.Endpoints.Length == 1), "the subsets' limits apply, each subset with its endpoint");
        var service = client.Snapshot.Services[ReviewsHost];
        Assert.NotNull(service.Routes[0].Targets[0].Endpoints!.Outlier);
        Assert.Null(service.Routes[1].Targets[0].Endpoints!.Outlier);

        var http = client.CreateClient();
        var calls = new[] { "v1", "v1", "v1", "v2", "v2", "v2" }.Select(async subset =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
            if (subset == "v1")
            {
                request.Headers.Add("x-subset", "v1");
            }

            using var response = await http.SendAsync(request);
            return (Subset: subset, response.StatusCode);
        }).ToArray();
        var results = await Task.WhenAll(calls);

        Assert.Equal(1, results.Count(r => r is { Subset: "v1", StatusCode: HttpStatusCode.OK }));
        Assert.Equal(2, results.Count(r => r is { Subset: "v2", StatusCode: HttpStatusCode.OK }));
        Assert.Equal(3, results.Count(r => r.StatusCode == HttpStatusCode.ServiceUnavailable));
        Assert.Equal(1, v1.Served);
        Assert.Equal(2, v2.Served);
    }

    [Theory]
    [InlineData(false, HttpStatusCode.ServiceUnavailable)]
    [InlineData(true, HttpStatusCode.OK)]
    public async Task RetryRemoteLocalities_LetsARetryLeaveTheCallersLocality(bool remote, HttpStatusCode expected)
    {
        var local = await StartAsync("reviews", "v1", o => o.Locality = "us-east/a");
        await StartAsync("reviews", "v1", o => o.Locality = "eu-west/a");
        local.Behavior = Status(503);
        WriteRule("{ loadBalancer: { localityLbSetting: { enabled: true } } }");
        ControlPlane.WriteConfig("vs.yaml", $$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ retries: { attempts: 1, retryOn: 5xx, retryRemoteLocalities: {{(remote ? "true" : "false")}} }, route: [{ destination: { host: reviews } }] }]
            """);
        var client = await StartAsync("productpage", "v1", o => o.Locality = "us-east/a");
        await Eventually.TrueAsync(() => client.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes[0].Targets[0].Endpoints?.Groups.Count == 2
            && s.Routes[0].Resilience?.Attempts == 1, "locality and retries apply");

        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(expected, response.StatusCode);
        Assert.Equal(remote ? 1 : 2, local.Served);
    }

    [Fact]
    public async Task ConnectionSettings_GiveTheClusterItsOwnPool_MaxConnectionsSerialisesHttp1()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Delay(TimeSpan.FromMilliseconds(600));
        WriteRule("{ connectionPool: { tcp: { maxConnections: 1, connectTimeout: 2s, tcpKeepalive: { time: 60s } }, http: { idleTimeout: 30s } } }");
        var client = await RouteAsync("- { retries: { attempts: 0 }, route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.MaxConnections == 1, "the cluster's pool applies");
        var http = client.CreateClient();
        var watch = Stopwatch.StartNew();

        var responses = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => http.GetAsync("http://reviews/")));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(1700), $"one connection should serialise the calls, took {watch.Elapsed}");
        foreach (var response in responses)
        {
            response.Dispose();
        }
    }

    [Fact]
    public async Task APoolNewSettingsReplace_IsDrainedAtOnce_ItsCallsFinish_AndTheirRetriesTakeTheNewPool()
    {
        var backend = await StartAsync("reviews", "v1");
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var holds = 0;
        backend.Behavior = async context =>
        {
            switch (context.Request.Path.Value)
            {
                case "/stream":
                    // A body that is still coming when the pool is retired.
                    for (var i = 0; i < 5; i++)
                    {
                        await context.Response.WriteAsync($"chunk{i};", context.RequestAborted);
                        await context.Response.Body.FlushAsync(context.RequestAborted);
                        await hold.Task.WaitAsync(context.RequestAborted);
                    }

                    return Results.Empty;
                case "/hold" when Interlocked.Increment(ref holds) == 1:
                    // The first attempt fails after the change: its retry comes after the old pool is gone.
                    await hold.Task.WaitAsync(context.RequestAborted);
                    return Results.StatusCode(503);
                default:
                    return null;
            }
        };
        WriteRule("{ connectionPool: { tcp: { maxConnections: 10 } } }");
        var client = await RouteAsync("- { retries: { attempts: 2, retryOn: 5xx }, route: [{ destination: { host: reviews } }] }");
        ClusterTransports.Transport? PoolInForce() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport;
        await Eventually.TrueAsync(() => PoolInForce()?.Settings.MaxConnections == 10, "the cluster's pool applies");
        var http = client.CreateClient();

        // Counted from this process's client sockets to the backend's port (the server's ends have it as local port).
        var port = backend.Address.Port;
        int Open() => System.Net.NetworkInformation.IPGlobalProperties.GetIPGlobalProperties().GetActiveTcpConnections()
            .Count(c => c.RemoteEndPoint.Port == port && c.State == System.Net.NetworkInformation.TcpState.Established);

        using var streaming = await http.GetAsync("http://reviews/stream", HttpCompletionOption.ResponseHeadersRead);
        var body = await streaming.Content.ReadAsStreamAsync();
        await body.ReadExactlyAsync(new byte[7]);
        var held = http.GetAsync("http://reviews/hold");
        await Eventually.TrueAsync(() => Volatile.Read(ref holds) == 1, "the held call arrived");
        (await http.GetAsync("http://reviews/idle")).EnsureSuccessStatusCode(); // a third connection, left idle in the pool
        Assert.Equal(3, Open());
        var old = PoolInForce()!;

        WriteRule("{ connectionPool: { tcp: { maxConnections: 20 } } }");
        await Eventually.TrueAsync(() => PoolInForce()?.Settings.MaxConnections == 20, "the new pool applies");

        // Envoy drains a changed cluster's pools: the idle connection closes now, not at an idle timeout (before, the
        // old pool was disposed two minutes later); the two busy ones stay.
        Assert.True(old.Retired);
        await Eventually.TrueAsync(() => Open() == 2, "the old pool's idle connection is closed", TimeSpan.FromSeconds(20));

        hold.SetResult();
        Assert.Equal("chunk0;chunk1;chunk2;chunk3;chunk4;", "chunk0;" + await new StreamReader(body).ReadToEndAsync());

        // The held call's first attempt got 503; its retry went through the new pool (the old one takes no requests).
        using var retried = await held;
        Assert.Equal(HttpStatusCode.OK, retried.StatusCode);
        Assert.Equal(2, Volatile.Read(ref holds));

        // The old pool's connections closed as their requests ended; the new pool has the retry's.
        await Eventually.TrueAsync(() => Open() == 1, "only the new pool's connection is open", TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task RetryBudget_CapsRetriesUnderSustainedFailure()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Status(503);
        WriteRule("{ retryBudget: { percent: 10, minRetryConcurrency: 1 } }");
        var client = await RouteAsync("- { retries: { attempts: 5, retryOn: \"503\" }, route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Limits?.RetryBudgetPercent == 10, "the budget applies");
        using var exhausted = new MetricCollector<long>(client.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "meshkit.client.retry_budget_exhausted");
        var http = client.CreateClient();

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => http.GetAsync("http://reviews/")));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode));
        Assert.True(backend.Served < 20 * 6 / 2, $"{backend.Served} requests reached the backend; without the budget 120 would");
        Assert.True(exhausted.GetMeasurementSnapshot().EvaluateAsCounter() > 0);
        foreach (var response in responses)
        {
            response.Dispose();
        }
    }

    [Fact]
    public async Task MaxRequestsPerConnectionOne_SendsEachRequestOnItsOwnConnection()
    {
        var backend = await StartAsync("reviews", "v1");
        var connections = new System.Collections.Concurrent.ConcurrentDictionary<string, byte>();
        backend.Behavior = context =>
        {
            connections.TryAdd(context.Connection.Id, 0);
            return Task.FromResult<IResult?>(null);
        };
        WriteRule("{ connectionPool: { http: { maxRequestsPerConnection: 1 } } }");
        var client = await RouteAsync("- { route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.CloseAfterRequest == true, "the setting applies");

        for (var i = 0; i < 5; i++)
        {
            (await client.CreateClient().GetAsync("http://reviews/")).EnsureSuccessStatusCode();
        }

        Assert.Equal(5, connections.Count);
    }

    [Fact]
    public async Task RefusedStream_FromARealHttp2Server_IsSentAgain_EvenForAPost()
    {
        var backend = await StartAsync("reviews", "v1", http2Only: true);
        var refuse = 2;
        backend.Behavior = context =>
        {
            if (Interlocked.Decrement(ref refuse) >= 0)
            {
                context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResetFeature>()!.Reset(0x7); // REFUSED_STREAM
                return Task.FromResult<IResult?>(Results.Empty);
            }

            return Task.FromResult<IResult?>(null);
        };
        WriteRule("{ connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }");
        var client = await RouteAsync("- { retries: { attempts: 3, retryOn: refused-stream }, route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.UpgradeToHttp2 == true, "the setting applies");
        using var retries = new MetricCollector<long>(client.Services.GetRequiredService<IMeterFactory>(), "MeshKit", "meshkit.client.retries");

        using var response = await client.CreateClient().PostAsync("http://reviews/", new StringContent("order"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, backend.Served);
        // .NET's HTTP/2 pool itself resends a refused stream (the server guarantees it did not process it), before the
        // mesh's retry policy sees a failure; the policy's refused-stream condition covers what reaches it.
        Assert.Equal(0, retries.GetMeasurementSnapshot().EvaluateAsCounter());
    }

    [Fact]
    public async Task MaxRequestsPerConnection_Http1_MovesToANewConnectionAfterTheLimit_WhateverTheBodies()
    {
        var backend = await StartAsync("reviews", "v1");
        var perConnection = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        backend.Behavior = async context =>
        {
            await context.Request.Body.CopyToAsync(Stream.Null);
            perConnection.AddOrUpdate(context.Connection.Id, 1, (_, n) => n + 1);
            return null;
        };
        WriteRule("{ connectionPool: { http: { maxRequestsPerConnection: 3 } } }");
        var client = await RouteAsync("- { route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.MaxRequestsPerConnection == 3, "the setting applies");
        var http = client.CreateClient();

        for (var i = 0; i < 9; i++)
        {
            // Bodies with blank lines in them, sized and chunked: the count follows HTTP framing, not guesses.
            using HttpContent content = (i % 3) switch
            {
                0 => new StringContent("a\r\n\r\nb"),
                1 => new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes("c\r\n\r\nd"))) { Headers = { ContentLength = null } },
                _ => new ByteArrayContent([]),
            };
            using var response = await http.PostAsync("http://reviews/", content);
            response.EnsureSuccessStatusCode();
        }

        Assert.Equal([3, 3, 3], perConnection.Values);
    }

    [Fact]
    public async Task MaxRequestsPerConnection_Http2_MovesToANewConnectionAfterTheLimit()
    {
        var backend = await StartAsync("reviews", "v1", http2Only: true);
        var perConnection = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        backend.Behavior = context =>
        {
            Assert.Equal("HTTP/2", context.Request.Protocol);
            perConnection.AddOrUpdate(context.Connection.Id, 1, (_, n) => n + 1);
            return Task.FromResult<IResult?>(null);
        };
        WriteRule("{ connectionPool: { http: { maxRequestsPerConnection: 2, h2UpgradePolicy: UPGRADE } } }");
        var client = await RouteAsync("- { route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.MaxRequestsPerConnection == 2, "the setting applies");
        var http = client.CreateClient();

        for (var i = 0; i < 6; i++)
        {
            using var response = await http.GetAsync("http://reviews/");
            response.EnsureSuccessStatusCode();
        }

        Assert.Equal([2, 2, 2], perConnection.Values);
    }

    [Fact]
    public async Task MaxConcurrentStreams_SpreadsConcurrentHttp2RequestsOverConnections()
    {
        var backend = await StartAsync("reviews", "v1", http2Only: true);
        var active = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var peak = 0;
        var arrived = 0;
        var release = new TaskCompletionSource();
        backend.Behavior = async context =>
        {
            if (context.Request.Path == "/warm")
            {
                return null;
            }

            var now = active.AddOrUpdate(context.Connection.Id, 1, (_, n) => n + 1);
            InterlockedMax(ref peak, now);
            Interlocked.Increment(ref arrived);
            await release.Task;
            active.AddOrUpdate(context.Connection.Id, 0, (_, n) => n - 1);
            return null;
        };
        WriteRule("{ connectionPool: { http: { maxConcurrentStreams: 2, h2UpgradePolicy: UPGRADE } } }");
        var client = await RouteAsync("- { route: [{ destination: { host: reviews } }] }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Targets[0].Endpoints?.Upstream.Transport?.Settings.MaxConcurrentStreams == 2, "the setting applies");
        var http = client.CreateClient();
        using (await http.GetAsync("http://reviews/warm"))
        {
        }

        var calls = Enumerable.Range(0, 6).Select(_ => http.GetAsync("http://reviews/")).ToArray();
        await Eventually.TrueAsync(() => Volatile.Read(ref arrived) == 6, "every request reaches the server at once, over several connections");
        release.SetResult();
        foreach (var response in await Task.WhenAll(calls))
        {
            response.EnsureSuccessStatusCode();
            response.Dispose();
        }

        Assert.Equal(2, Volatile.Read(ref peak));
        Assert.True(active.Count >= 3, $"{active.Count} connections");
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current && Interlocked.CompareExchange(ref target, value, current) != current)
        {
            current = Volatile.Read(ref target);
        }
    }

    [Fact]
    public async Task Mirror_ReceivesCopies_WithTheShadowHost_AndTheCallerDoesNotWaitForIt()
    {
        var primary = await StartAsync("reviews", "v1");
        var shadow = await StartAsync("reviews", "v2");
        shadow.Behavior = Delay(TimeSpan.FromSeconds(5));
        ControlPlane.WriteConfig("dr.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            """);
        var client = await RouteAsync("- { route: [{ destination: { host: reviews, subset: v1 } }], mirror: { host: reviews, subset: v2 }, mirrorPercentage: { value: 100 } }");
        await Eventually.TrueAsync(() => client.Snapshot.Services[ReviewsHost].Routes[0].Mirrors is [{ Target.Endpoints.Endpoints.Length: 1 }], "the mirror target is known");
        var watch = Stopwatch.StartNew();

        for (var i = 0; i < 5; i++)
        {
            using var response = await client.CreateClient().PostAsync("http://reviews:9080/", new StringContent("body"));
            Assert.StartsWith("reviews|v1|", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), $"the caller waited {watch.Elapsed}");
        await Eventually.TrueAsync(() => shadow.Served == 5, "every request was mirrored");
        Assert.All(shadow.Hosts, h => Assert.Equal("reviews-shadow:9080", h));
        Assert.Equal(5, primary.Served);
    }
}
