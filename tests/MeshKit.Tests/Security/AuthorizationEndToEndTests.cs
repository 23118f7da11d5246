using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MeshKit.Tests.Security;

/// <summary>AuthorizationPolicy and RequestAuthentication enforced by real workloads.</summary>
public sealed class AuthorizationEndToEndTests : MeshTestBase, IDisposable
{
    private const string Issuer = TestIdentityProvider.Issuer;
    private readonly TestIdentityProvider _idp = new();

    public override async Task InitializeAsync() =>
        ControlPlane = await TestControlPlane.StartAsync(configure: o => o.AllowLocalJwksUris = true);

    public void Dispose() => _idp.Dispose();

    private static Func<HttpContext, Task<IResult?>> Secret => context =>
        Task.FromResult<IResult?>(context.Request.Path.Value!.StartsWith("/admin", StringComparison.Ordinal) ? Results.Text("SECRET") : null);

    private void WriteDenyAdmin() => ControlPlane.WriteConfig("authz.yaml", """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: deny-admin, namespace: default }
        spec:
          selector: { matchLabels: { app: reviews } }
          action: DENY
          rules:
          - to: [{ operation: { paths: ["/admin*"] } }]
        """);

    [Fact]
    public async Task PathTraversalAndEncodingVariants_NeverReachTheProtectedContent()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Secret;
        WriteDenyAdmin();
        await Eventually.TrueAsync(() => !backend.Snapshot.Authorization.IsEmpty, "the policy applies");
        var port = backend.Address.Port;

        Assert.Equal((200, false), await RawGetAsync(port, "/public"));
        string[] variants =
        [
            "/admin/secret", "/admin", "/./admin/secret", "/x/../admin/secret", "/x/./../admin/secret", "/%61dmin/secret",
            "/%2e%2e/admin/secret", "/x/%2e%2e/admin/secret", "/x/%2E%2E/admin/secret", "/admin%2fsecret", "/admin%2Fsecret",
            "/x/..%2fadmin/secret", "/x/..%5cadmin/secret", "/x/..\\admin/secret", "\\admin\\secret", "/x\\..\\admin/secret",
            "//admin/secret", "///admin/secret", "/admin/secret?x=1", "/admin/secret#top", "/admin;x=1/secret", "/admin%00",
            "/admin%00/secret", "/%00/../admin/secret", "/admin%", "/admin%zz/secret", "/admin%c0%af/secret",
            "/admin/secret/..", "/admin/.", "/ADMIN/../admin/secret", "/x/..%2f..%2fadmin/secret", "/%2fadmin/secret",
            "http://reviews/admin/secret", "/admin\t/secret", "/admin%09/secret",
        ];

        foreach (var target in variants)
        {
            var (status, secret) = await RawGetAsync(port, target);
            Assert.False(secret, $"'{target}' served the protected content ({status})");
        }
    }

    [Theory]
    [InlineData("principals: [\"cluster.local/ns/default/sa/productpage\"]")]
    [InlineData("serviceAccounts: [default/productpage]")] // Istio 1.25: the account, whatever the trust domain
    public async Task AllowByPrincipal_OverMutualTls_LetsOnlyThatCallerIn(string source)
    {
        var reviews = await StartSecureAsync("reviews");
        var productpage = await StartSecureAsync("productpage");
        var ratings = await StartSecureAsync("ratings");
        var seen = new List<string?>();
        reviews.Behavior = context =>
        {
            lock (seen)
            {
                seen.Add(MeshIdentity.Get(context)?.PeerPrincipal);
            }

            return Task.FromResult<IResult?>(null);
        };
        ControlPlane.WriteConfig("authz.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: reviews-viewer, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              rules:
              - from: [{ source: { {{source}} } }]
                to: [{ operation: { methods: ["GET"] } }]
            """);
        await Eventually.TrueAsync(() => !reviews.Snapshot.Authorization.IsEmpty, "the policy applies");
        foreach (var client in new[] { productpage, ratings })
        {
            await KnowsIdentityAsync(client);
        }

        using var allowed = await productpage.CreateClient().GetAsync("http://reviews/");
        using var wrongMethod = await productpage.CreateClient().PostAsync("http://reviews/", new StringContent("x"));
        using var denied = await ratings.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, wrongMethod.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Equal("RBAC: access denied", await denied.Content.ReadAsStringAsync());
        Assert.Equal(["cluster.local/ns/default/sa/productpage"], seen);
    }

    [Fact]
    public async Task ConnectionSni_IsTheServerNameTheCallersHandshakeAskedFor()
    {
        var reviews = await StartSecureAsync("reviews");
        var productpage = await StartSecureAsync("productpage");
        ControlPlane.WriteConfig("authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: reviews-by-name, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              rules:
              - from: [{ source: { principals: ["cluster.local/ns/default/sa/productpage"] } }]
                when: [{ key: connection.sni, values: ["reviews.default.svc.*"] }]
            """);
        await Eventually.TrueAsync(() => !reviews.Snapshot.Authorization.IsEmpty, "the policy applies");
        await KnowsIdentityAsync(productpage);

        // The caller's certificate, over TLS to the workload's port, asking for a server name of its choice.
        async Task<HttpStatusCode> AskingForAsync(string serverName)
        {
            using var handler = new SocketsHttpHandler();
            handler.SslOptions.ClientCertificates = [productpage.Services.GetRequiredService<MeshKit.Security.WorkloadIdentity>().Current!.Certificate];
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true; // the mesh CA's chain; who answers is not the question here
            using var client = new HttpClient(handler);
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"https://127.0.0.1:{reviews.Address.Port}/"));
            request.Headers.Host = serverName; // the socket handler asks for the Host header's name in its handshake
            using var response = await client.SendAsync(request);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await AskingForAsync("reviews.default.svc.cluster.local"));
        Assert.Equal(HttpStatusCode.Forbidden, await AskingForAsync("ratings.default.svc.cluster.local"));

        // A mesh caller connects to the endpoint's address, and a handshake to an IP address names no server.
        using var meshCall = await productpage.CreateClient().GetAsync("http://reviews/");
        Assert.Equal(HttpStatusCode.Forbidden, meshCall.StatusCode);
    }

    [Fact]
    public async Task Jwt_ValidTokensAuthenticate_InvalidOnesAreRefused_AndPolicyDecidesForAnonymousOnes()
    {
        var backend = await StartAsync("reviews", "v1");
        string? principal = null;
        string? authorization = null;
        backend.Behavior = context =>
        {
            principal = MeshIdentity.Get(context)?.RequestPrincipal;
            authorization = context.Request.Headers.Authorization.ToString();
            return Task.FromResult<IResult?>(null);
        };
        WriteJwtPolicy($$"""jwks: '{{Jwks("k1")}}'""");
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty && !backend.Snapshot.Authorization.IsEmpty, "the policies apply");
        var now = DateTimeOffset.UtcNow;

        Assert.Equal(HttpStatusCode.OK, await CallAsync(backend, "/private", Token(now)));
        Assert.Equal($"{Issuer}/alice", principal);
        Assert.Equal(string.Empty, authorization); // forwardOriginalToken is false

        Assert.Equal(HttpStatusCode.Forbidden, await CallAsync(backend, "/private", null));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(backend, "/public", null));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/public", Token(now.AddHours(-2))));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(backend, "/private", Token(now.AddSeconds(-3600 - 30)))); // within the 60 s skew
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(now, issuer: "https://evil.example")));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(now, audience: "someone-else")));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(now, kid: "unknown")));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(now, notBefore: now.AddMinutes(10))));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Unsigned(now)));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Hs256WithThePublicKey(now)));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(now, padding: new string('x', 20_000))));
        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", "not-a-jwt"));
    }

    [Fact]
    public async Task Jwt_Locations_AndOutputs_AsTheRuleSays_AndOutputHeadersCannotBeSpoofed()
    {
        var backend = await StartAsync("reviews", "v1");
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        backend.Behavior = context =>
        {
            var h = context.Request.Headers;
            seen.Enqueue($"{MeshIdentity.Get(context)?.RequestPrincipal}|{h["x-jwt-token"]}|{h["x-user"]}|{h["x-payload"].ToString().Length > 0}|{context.Request.Query["token"]}");
            return Task.FromResult<IResult?>(null);
        };
        ControlPlane.WriteConfig("jwt.yaml", $$"""
            apiVersion: security.istio.io/v1
            kind: RequestAuthentication
            metadata: { name: jwt, namespace: default }
            spec:
              jwtRules:
              - issuer: {{Issuer}}
                jwks: '{{Jwks("k1")}}'
                fromHeaders: [{ name: x-jwt-token, prefix: "Token " }]
                fromParams: [token]
                fromCookies: [session]
                forwardOriginalToken: true
                outputPayloadToHeader: x-payload
                outputClaimToHeaders: [{ header: x-user, claim: sub }]
            """);
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty, "the rule applies");
        var token = Token(DateTimeOffset.UtcNow);
        using var http = new HttpClient();

        using (var fromHeader = new HttpRequestMessage(HttpMethod.Get, new Uri(backend.Address, "/")) { Headers = { { "x-jwt-token", "Token " + token } } })
        {
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(fromHeader)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(backend.Address, "/?token=" + token))).StatusCode);
        using (var spoofed = new HttpRequestMessage(HttpMethod.Get, new Uri(backend.Address, "/")) { Headers = { { "x-user", "admin" }, { "x-payload", "e30" } } })
        {
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(spoofed)).StatusCode);
        }

        using (var fromCookie = new HttpRequestMessage(HttpMethod.Get, new Uri(backend.Address, "/")) { Headers = { { "Cookie", "theme=dark; session=" + token } } })
        {
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(fromCookie)).StatusCode);
        }

        // The default Authorization header is not a location of this rule: its token is not read.
        using (var bearer = new HttpRequestMessage(HttpMethod.Get, new Uri(backend.Address, "/")) { Headers = { { "Authorization", "Bearer " + token } } })
        {
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(bearer)).StatusCode);
        }

        Assert.Equal(
            [
                $"{Issuer}/alice|Token {token}|alice|True|",
                $"{Issuer}/alice||alice|True|{token}",
                "|||False|",
                $"{Issuer}/alice||alice|True|",
                "|||False|",
            ],
            seen);
    }

    [Fact]
    public async Task Jwt_KeysFromAJwksUri_AreFetchedByTheControlPlane()
    {
        await using var jwks = await JwksServer.StartAsync(Jwks("k1"));
        var backend = await StartAsync("reviews", "v1");
        WriteJwtPolicy($"jwksUri: {jwks.Uri}");
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty, "the policies apply");

        await Eventually.TrueAsync(async () => await CallAsync(backend, "/private", Token(DateTimeOffset.UtcNow)) == HttpStatusCode.OK, "a valid token is accepted once the keys arrive");
    }

    [Fact]
    public async Task Jwt_TheRulesTimeout_BoundsTheFetchOfItsKeys()
    {
        // The keys take 3 s; a 1 s timeout cuts every fetch (long enough for a request to arrive on a loaded machine,
        // where a shorter one could expire before the server counted it), a 10 s one lets them through.
        await using var jwks = await JwksServer.StartAsync(Jwks("k1"), delay: TimeSpan.FromSeconds(3));
        var backend = await StartAsync("reviews", "v1");
        WriteJwtPolicy($"jwksUri: {jwks.Uri}\n    timeout: 1s");
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty && jwks.Requests > 0, "the keys are asked for");
        await Task.Delay(TimeSpan.FromSeconds(4));

        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(DateTimeOffset.UtcNow)));

        WriteJwtPolicy($"jwksUri: {jwks.Uri}\n    timeout: 10s");
        await Eventually.TrueAsync(async () => await CallAsync(backend, "/private", Token(DateTimeOffset.UtcNow)) == HttpStatusCode.OK, "the slow keys arrive within the longer timeout");
    }

    [Fact]
    public async Task Jwt_AJwksUriOnLoopback_IsNotFetched_UnlessAllowed()
    {
        await using var jwks = await JwksServer.StartAsync(Jwks("k1"));
        await ControlPlane.DisposeAsync();
        ControlPlane = await TestControlPlane.StartAsync(); // AllowLocalJwksUris left false
        var backend = await StartAsync("reviews", "v1");
        WriteJwtPolicy($"jwksUri: {jwks.Uri}");
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty, "the policies apply");
        await Task.Delay(500);

        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(DateTimeOffset.UtcNow)));
        Assert.Equal(0, jwks.Requests);
    }

    [Fact]
    public async Task Jwt_AnIssuerWhoseKeysWereNeverFetched_IsRefused()
    {
        var backend = await StartAsync("reviews", "v1");
        WriteJwtPolicy("jwksUri: http://127.0.0.1:1/jwks.json");
        await Eventually.TrueAsync(() => !backend.Snapshot.Jwt.IsEmpty, "the policies apply");

        Assert.Equal(HttpStatusCode.Unauthorized, await CallAsync(backend, "/private", Token(DateTimeOffset.UtcNow)));
    }

    [Fact]
    public async Task RemoteIpBlocks_BehindTrustedProxies_AreTheClientsAddress_AsTheProxiesAppendedIt()
    {
        // Two services behind one load balancer that appends the client's address; only one trusts it.
        var edge = await StartAsync("reviews", "v1", configure: o => o.NumTrustedProxies = 1);
        var untrusting = await StartAsync("ratings", "v1");
        ControlPlane.WriteConfig("authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: office-only, namespace: default }
            spec:
              action: ALLOW
              rules:
              - from: [{ source: { remoteIpBlocks: [203.0.113.0/24] } }]
            """);
        await Eventually.TrueAsync(() => !edge.Snapshot.Authorization.IsEmpty && !untrusting.Snapshot.Authorization.IsEmpty, "the policy applies");
        using var http = new HttpClient();

        async Task<HttpStatusCode> GetAsync(TestWorkload to, string? forwardedFor)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(to.Address, "/"));
            if (forwardedFor is not null)
            {
                request.Headers.Add("X-Forwarded-For", forwardedFor);
            }

            using var response = await http.SendAsync(request);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await GetAsync(edge, "198.51.100.1, 203.0.113.7"));
        Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(edge, "203.0.113.7, 198.51.100.1")); // the client wrote the office's address itself
        Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(edge, null)); // the peer (loopback) is not in the office
        Assert.Equal(HttpStatusCode.Forbidden, await GetAsync(untrusting, "198.51.100.1, 203.0.113.7"));
    }

    [Fact]
    public async Task DryRun_IsReported_NotEnforced()
    {
        var backend = await StartAsync("reviews", "v1");
        backend.Behavior = Secret;
        ControlPlane.WriteConfig("authz.yaml", """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata:
              name: deny-all
              namespace: default
              annotations: { "istio.io/dry-run": "true" }
            spec:
              action: DENY
              rules: [{}]
            """);
        await Eventually.TrueAsync(() => !backend.Snapshot.Authorization.IsEmpty, "the policy applies");

        Assert.Equal((200, true), await RawGetAsync(backend.Address.Port, "/admin"));
    }

    private void WriteJwtPolicy(string keys) => ControlPlane.WriteConfig("jwt.yaml", $$"""
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: { name: jwt, namespace: default }
        spec:
          selector: { matchLabels: { app: reviews } }
          jwtRules:
          - issuer: {{Issuer}}
            audiences: [bookinfo]
            {{keys}}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: { name: require-jwt, namespace: default }
        spec:
          selector: { matchLabels: { app: reviews } }
          rules:
          - from: [{ source: { requestPrincipals: ["{{Issuer}}/*"] } }]
            to: [{ operation: { paths: ["/private"] } }]
          - to: [{ operation: { notPaths: ["/private"] } }]
        """);

    private static async Task<HttpStatusCode> CallAsync(TestWorkload backend, string path, string? token)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(backend.Address, path));
        if (token is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        }

        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    private string Jwks(string kid) => _idp.Jwks(kid);

    private string Token(DateTimeOffset now, string issuer = Issuer, string audience = "bookinfo", string kid = "k1", DateTimeOffset? notBefore = null, string? padding = null) =>
        _idp.Token(now, issuer, audience, kid, notBefore, padding);

    private static string Unsigned(DateTimeOffset now)
    {
        static string B64(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));
        return $"{B64("""{"alg":"none","typ":"JWT"}""")}.{B64($$"""{"iss":"{{Issuer}}","sub":"alice","aud":"bookinfo","exp":{{now.AddHours(1).ToUnixTimeSeconds()}}}""")}.";
    }

    // The classic confusion: an HMAC token keyed with the RSA public key.
    private string Hs256WithThePublicKey(DateTimeOffset now) =>
        new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = "bookinfo",
            Expires = now.AddHours(1).UtcDateTime,
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(_idp.Key.ExportRSAPublicKey()) { KeyId = "k1" }, SecurityAlgorithms.HmacSha256),
        });

    /// <summary>Sends a request with a raw request-target (no client-side normalization) and reads the answer.</summary>
    private static async Task<(int Status, bool Secret)> RawGetAsync(int port, string target)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var stream = client.GetStream();
        var request = Encoding.Latin1.GetBytes($"GET {target} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(request);
        using var reader = new StreamReader(stream, Encoding.Latin1);
        var response = await reader.ReadToEndAsync();
        var status = response.Length >= 12 && int.TryParse(response.AsSpan(9, 3), out var code) ? code : 0;
        return (status, response.Contains("SECRET", StringComparison.Ordinal));
    }

    /// <summary>A JWKS endpoint on loopback, as an identity provider would serve it.</summary>
    private sealed class JwksServer : IAsyncDisposable
    {
        private readonly Microsoft.AspNetCore.Builder.WebApplication _app;

        private JwksServer(Microsoft.AspNetCore.Builder.WebApplication app, Uri uri)
        {
            _app = app;
            Uri = uri;
        }

        public Uri Uri { get; }

        public int Requests => Volatile.Read(ref _requests);

        private int _requests;

        public static async Task<JwksServer> StartAsync(string jwks, TimeSpan? delay = null)
        {
            var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            JwksServer? server = null;
            app.MapGet("/jwks.json", async () =>
            {
                Interlocked.Increment(ref server!._requests);
                await Task.Delay(delay ?? TimeSpan.Zero);
                return Results.Text(jwks, "application/json");
            });
            await app.StartAsync();
            var address = app.Urls.First();
            server = new JwksServer(app, new Uri(new Uri(address), "/jwks.json"));
            return server;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
