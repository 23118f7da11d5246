using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using MeshKit.Protocol.ExtAuthz;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Security;

/// <summary>
/// AuthorizationPolicy action CUSTOM with an HTTP external authorization service (MeshConfig extensionProviders
/// envoyExtAuthzHttp), the service itself a workload of the mesh, as in Istio's ext-authz task.
/// </summary>
public sealed class ExtAuthzEndToEndTests : MeshTestBase
{
    // What the authorization service saw: method, path and query, Host, and the x-ext-authz and x-other headers.
    private readonly ConcurrentQueue<string> _checks = new();

    // Istio's sample ext-authz server: "x-ext-authz: allow" is allowed (and the user named), anything else denied.
    private Task<IResult?> Decide(HttpContext context)
    {
        var headers = context.Request.Headers;
        _checks.Enqueue($"{context.Request.Method} {context.Request.Path}{context.Request.QueryString} host={context.Request.Host} x-ext-authz={headers["x-ext-authz"]} x-other={headers["x-other"]} x-fixed={headers["x-fixed"]} authorization={headers.Authorization}");
        if (headers["x-ext-authz"] == "allow")
        {
            context.Response.Headers["x-current-user"] = "alice";
            context.Response.Headers["x-ext-authz-check-result"] = "allowed";
            return Task.FromResult<IResult?>(Results.Ok());
        }

        if (headers["x-ext-authz"] == "crash")
        {
            return Task.FromResult<IResult?>(Results.StatusCode(500));
        }

        context.Response.Headers["x-ext-authz-check-result"] = "denied";
        context.Response.Headers["x-internal-detail"] = "not for the caller";
        return Task.FromResult<IResult?>(Results.Text("denied by ext_authz", statusCode: 403));
    }

    // The application echoes what the authorization service told it about the caller.
    private static Task<IResult?> Echo(HttpContext context) =>
        Task.FromResult<IResult?>(Results.Text($"user={context.Request.Headers["x-current-user"]}"));

    private void WriteConfig(string provider, string policy = "rules: [{ to: [{ operation: { paths: [\"/headers*\"] } }] }]") => ControlPlane.WriteConfig("ext-authz.yaml", $$"""
        apiVersion: meshkit.dev/v1alpha1
        kind: MeshConfig
        metadata: { name: mesh }
        spec:
          extensionProviders:
          - name: sample-ext-authz
            envoyExtAuthzHttp:
              service: ext-authz.default.svc.cluster.local
              port: 9080
        {{string.Join('\n', provider.Split('\n').Select(l => "      " + l))}}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: ext-authz, namespace: default }
        spec:
          selector: { matchLabels: { app: reviews } }
          action: CUSTOM
          provider: { name: sample-ext-authz }
          {{policy}}
        """);

    private async Task<(TestWorkload Reviews, HttpClient Http)> StartMeshAsync(string provider)
    {
        var authz = await StartAsync("ext-authz", "v1");
        authz.Behavior = Decide;
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = Echo;
        reviews.Services.GetRequiredService<MeshKit.Telemetry.IstioMetrics>().EnableStats();
        var productpage = await StartAsync("productpage", "v1");
        WriteConfig(provider);
        await Eventually.TrueAsync(() => reviews.Snapshot.Authorization.HasCustom && reviews.Endpoints("ext-authz.default.svc.cluster.local") == 1 && productpage.Endpoints(ReviewsHost) == 1, "the policy and the services apply");
        return (reviews, productpage.CreateClient());
    }

    private static async Task<HttpResponseMessage> GetAsync(HttpClient http, string path, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews" + path);
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        return await http.SendAsync(request);
    }

    [Fact]
    public async Task Custom_AsksTheProvider_AllowsWithItsHeaders_AndDeniesWithItsAnswer()
    {
        var (reviews, http) = await StartMeshAsync("""
            pathPrefix: /check
            includeRequestHeadersInCheck: [x-ext-authz, "x-oth*"]
            includeAdditionalHeadersInCheck: { x-fixed: from-mesh }
            headersToUpstreamOnAllow: [x-current-user]
            headersToDownstreamOnAllow: [x-ext-authz-check-result]
            headersToDownstreamOnDeny: [x-ext-authz-check-result]
            """);

        // Allowed: the provider's user reaches the application, its result the caller.
        using (var allowed = await GetAsync(http, "/headers?a=1", ("x-ext-authz", "allow"), ("x-other", "o"), ("x-unlisted", "u"), ("Authorization", "Bearer t")))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Equal("user=alice", await allowed.Content.ReadAsStringAsync());
            Assert.Equal("allowed", allowed.Headers.GetValues("x-ext-authz-check-result").Single());
        }

        Assert.True(_checks.TryDequeue(out var check));
        Assert.Equal("GET /check/headers?a=1 host=reviews x-ext-authz=allow x-other=o x-fixed=from-mesh authorization=Bearer t", check);

        // Denied: the provider's status, body and the headers it may show; the others stay with it.
        using (var denied = await GetAsync(http, "/headers", ("x-ext-authz", "deny")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            Assert.Equal("denied by ext_authz", await denied.Content.ReadAsStringAsync());
            Assert.Equal("denied", denied.Headers.GetValues("x-ext-authz-check-result").Single());
            Assert.False(denied.Headers.Contains("x-internal-detail"));
        }

        // The server's report says why, with Envoy's flag for a refusal by the external service.
        var istio = reviews.Services.GetRequiredService<MeshKit.Telemetry.IstioMetrics>();
        await Eventually.TrueAsync(() =>
        {
            istio.Flush();
            var text = new System.Text.StringBuilder();
            istio.Stats!.WriteTo(text);
            return text.ToString().Split('\n').Any(l => l.StartsWith("istio_requests_total{reporter=\"destination\"", StringComparison.Ordinal)
                && l.Contains("response_code=\"403\"", StringComparison.Ordinal) && l.Contains("response_flags=\"UAEX\"", StringComparison.Ordinal));
        }, "the server reported the refusal with UAEX");

        // A request the policy's rules do not match is not checked; a caller cannot name itself the user.
        _checks.Clear();
        using (var unchecked_ = await GetAsync(http, "/other", ("x-current-user", "mallory")))
        {
            Assert.Equal(HttpStatusCode.OK, unchecked_.StatusCode);
            Assert.Equal("user=mallory", await unchecked_.Content.ReadAsStringAsync());
        }

        Assert.Empty(_checks);
        using (var overridden = await GetAsync(http, "/headers", ("x-ext-authz", "allow"), ("x-current-user", "mallory")))
        {
            Assert.Equal("user=alice", await overridden.Content.ReadAsStringAsync());
        }
    }

    [Theory]
    [InlineData("", HttpStatusCode.Forbidden)]
    [InlineData("statusOnError: \"503\"", HttpStatusCode.ServiceUnavailable)]
    [InlineData("failOpen: true", HttpStatusCode.OK)]
    public async Task AFailingProvider_RefusesWithStatusOnError_UnlessFailOpen(string settings, HttpStatusCode expected)
    {
        var (_, http) = await StartMeshAsync("includeRequestHeadersInCheck: [x-ext-authz]\n" + settings);

        // A 5xx answer is a failure of the service, not a denial.
        using var crashed = await GetAsync(http, "/headers", ("x-ext-authz", "crash"));

        Assert.Equal(expected, crashed.StatusCode);
        Assert.NotEmpty(_checks); // a 503 is retried by the caller's mesh (Istio's default retry policy)
        Assert.All(_checks, c => Assert.Contains("x-ext-authz=crash", c, StringComparison.Ordinal));
    }

    [Fact]
    public async Task AnUndefinedProvider_DeniesTheRequestsItsPolicyMatches()
    {
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = Echo;
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("ext-authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: ext-authz, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              action: CUSTOM
              provider: { name: nowhere }
              rules: [{ to: [{ operation: { paths: ["/headers*"] } }] }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.Authorization.HasCustom && productpage.Endpoints(ReviewsHost) == 1, "the policy applies");
        var http = productpage.CreateClient();

        using var matched = await GetAsync(http, "/headers", ("x-ext-authz", "allow"));
        using var other = await GetAsync(http, "/other");

        Assert.Equal(HttpStatusCode.Forbidden, matched.StatusCode);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task TheBody_IsSentWhenAsked_AndStillReachesTheApplication()
    {
        var authz = await StartAsync("ext-authz", "v1");
        var bodies = new ConcurrentQueue<string>();
        authz.Behavior = async context =>
        {
            bodies.Enqueue($"{await new StreamReader(context.Request.Body).ReadToEndAsync()}|{context.Request.Headers["x-envoy-auth-partial-body"]}");
            return Results.Ok();
        };
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = async context => Results.Text($"app got {await new StreamReader(context.Request.Body).ReadToEndAsync()}");
        var productpage = await StartAsync("productpage", "v1");
        WriteConfig("includeRequestBodyInCheck: { maxRequestBytes: 5, allowPartialMessage: true }", "rules: [{ to: [{ operation: { methods: [POST] } }] }]");
        await Eventually.TrueAsync(() => reviews.Snapshot.Authorization.HasCustom && reviews.Endpoints("ext-authz.default.svc.cluster.local") == 1 && productpage.Endpoints(ReviewsHost) == 1, "the policy applies");
        var http = productpage.CreateClient();

        using var small = await http.PostAsync("http://reviews/x", new StringContent("abc"));
        using var large = await http.PostAsync("http://reviews/x", new StringContent("abcdefgh"));

        Assert.Equal("app got abc", await small.Content.ReadAsStringAsync());
        Assert.Equal("app got abcdefgh", await large.Content.ReadAsStringAsync());
        Assert.Equal(["abc|false", "abcde|true"], bodies);
    }

    [Fact]
    public async Task ABodyOverTheLimit_IsRefusedWith413_UnlessItMayBeCut()
    {
        var authz = await StartAsync("ext-authz", "v1");
        authz.Behavior = _ => Task.FromResult<IResult?>(Results.Ok());
        var reviews = await StartAsync("reviews", "v1");
        var productpage = await StartAsync("productpage", "v1");
        WriteConfig("includeRequestBodyInCheck: { maxRequestBytes: 5 }", "rules: [{ to: [{ operation: { methods: [POST] } }] }]");
        await Eventually.TrueAsync(() => reviews.Snapshot.Authorization.HasCustom && reviews.Endpoints("ext-authz.default.svc.cluster.local") == 1 && productpage.Endpoints(ReviewsHost) == 1, "the policy applies");
        var http = productpage.CreateClient();

        using var small = await http.PostAsync("http://reviews/x", new StringContent("abc"));
        using var large = await http.PostAsync("http://reviews/x", new StringContent("abcdefgh"));

        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, large.StatusCode);
        Assert.Equal(1, authz.Served);
        Assert.Equal(1, reviews.Served);
    }

    [Fact]
    public async Task Custom_WithAGrpcProvider_SpeaksEnvoysCheckApi()
    {
        await using var server = await GrpcAuthzServer.StartAsync(_checks);
        var reviews = await StartAsync("reviews", "v1");
        reviews.Behavior = context => Task.FromResult<IResult?>(Results.Text($"user={context.Request.Headers["x-current-user"]} removed={context.Request.Headers["x-remove-me"]}"));
        var productpage = await StartAsync("productpage", "v1");
        ControlPlane.WriteConfig("ext-authz.yaml", $$"""
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh }
            spec:
              extensionProviders:
              - name: grpc-authz
                envoyExtAuthzGrpc: { service: authz.example.test, port: 9000, timeout: 5s }
            ---
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: authz }
            spec:
              hosts: [authz.example.test]
              location: MESH_INTERNAL
              ports: [{ number: 9000, name: grpc, protocol: GRPC, targetPort: {{server.Port}} }]
              resolution: STATIC
              endpoints: [{ address: 127.0.0.1 }]
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: ext-authz, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              action: CUSTOM
              provider: { name: grpc-authz }
              rules: [{ to: [{ operation: { paths: ["/headers*"] } }] }]
            """);
        await Eventually.TrueAsync(() => reviews.Snapshot.Authorization.HasCustom && reviews.Endpoints("authz.example.test") == 1 && productpage.Endpoints(ReviewsHost) == 1, "the policy applies");
        var http = productpage.CreateClient();

        using (var allowed = await GetAsync(http, "/headers?a=1", ("x-ext-authz", "allow"), ("x-remove-me", "secret")))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Equal("user=alice removed=", await allowed.Content.ReadAsStringAsync());
            Assert.Equal("allowed", allowed.Headers.GetValues("x-ext-authz-check-result").Single());
        }

        Assert.True(_checks.TryDequeue(out var check));
        Assert.Equal("GET /headers?a=1 host=reviews x-ext-authz=allow", check);

        using (var denied = await GetAsync(http, "/headers", ("x-ext-authz", "deny")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
            Assert.Equal("denied by grpc ext_authz", await denied.Content.ReadAsStringAsync());
            Assert.Equal("denied", denied.Headers.GetValues("x-ext-authz-check-result").Single());
        }
    }

    /// <summary>An Envoy gRPC external authorization server outside the mesh, on plain-text HTTP/2.</summary>
    private sealed class GrpcAuthzServer(WebApplication app, int port) : IAsyncDisposable
    {
        public int Port { get; } = port;

        public static async Task<GrpcAuthzServer> StartAsync(ConcurrentQueue<string> checks)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(checks);
            var app = builder.Build();
            app.MapGrpcService<Checker>();
            await app.StartAsync();
            return new GrpcAuthzServer(app, new Uri(app.Urls.First()).Port);
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        private sealed class Checker(ConcurrentQueue<string> checks) : MeshKit.Protocol.ExtAuthz.Authorization.AuthorizationBase
        {
            public override Task<CheckResponse> Check(CheckRequest request, ServerCallContext context)
            {
                var http = request.Attributes.Request.Http;
                var verdict = http.Headers.GetValueOrDefault("x-ext-authz");
                checks.Enqueue($"{http.Method} {http.Path} host={http.Host} x-ext-authz={verdict}");
                static HeaderValueOption Header(string key, string value) => new() { Header = new HeaderValue { Key = key, Value = value } };
                if (verdict == "allow")
                {
                    var ok = new OkHttpResponse { HeadersToRemove = { "x-remove-me" } };
                    ok.Headers.Add(Header("x-current-user", "alice"));
                    ok.ResponseHeadersToAdd.Add(Header("x-ext-authz-check-result", "allowed"));
                    return Task.FromResult(new CheckResponse { Status = new RpcStatus { Code = 0 }, OkResponse = ok });
                }

                var denied = new DeniedHttpResponse { Status = new HttpStatus { Code = 401 }, Body = "denied by grpc ext_authz" };
                denied.Headers.Add(Header("x-ext-authz-check-result", "denied"));
                return Task.FromResult(new CheckResponse { Status = new RpcStatus { Code = 7 }, DeniedResponse = denied });
            }
        }
    }
}
