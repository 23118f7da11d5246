using MeshKit.Protocol.V1;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Conformance;

/// <summary>DestinationRule load balancing, field by field: consistent hashing and locality-aware balancing.</summary>
public class DestinationRuleConformanceTests
{
    // Backends of "cart" answer with their address:port, so a test sees exactly which endpoint got the call.
    private static IEnumerable<WorkloadAnnouncement> Cart(params string[] localities) => localities.Select((locality, i) =>
    {
        var w = new WorkloadAnnouncement { Service = "cart", Namespace = "default", InstanceId = $"cart-{i}", Address = $"10.0.1.{i + 1}" };
        w.Labels["version"] = "v1";
        w.Locality = MeshKit.Config.Compilation.Localities.Parse(locality);
        w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 80, TargetPort = 8080 });
        return w;
    });

    private static HttpMessageInvoker Mesh(string trafficPolicy, string? callerLocality = null, params string[] localities) =>
        InMemoryMesh.Create($$"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: cart }
            spec:
              host: cart
              trafficPolicy:
                {{trafficPolicy}}
            """, extraWorkloads: Cart(localities.Length > 0 ? localities : ["", "", "", ""]), locality: callerLocality, withReviews: false);

    private static async Task<string> Call(HttpMessageInvoker mesh, string url = "http://cart/", params (string, string)[] headers) =>
        await mesh.SendAsync(url, headers: headers);

    [Fact]
    public async Task PortLevelSettings_WithoutABalancer_KeepTheRulesBalancer()
    {
        // Port 80 gets a connection pool of its own; its calls are still balanced by the rule's consistent hash.
        using var mesh = Mesh("""
            loadBalancer: { consistentHash: { httpHeaderName: x-user } }
                portLevelSettings: [{ port: { number: 80 }, connectionPool: { http: { http2MaxRequests: 100 } } }]
            """);

        var first = await Call(mesh, headers: ("x-user", "alice"));
        for (var i = 0; i < 30; i++)
        {
            Assert.Equal(first, await Call(mesh, headers: ("x-user", "alice")));
        }
    }

    [Theory]
    [InlineData("loadBalancer: { consistentHash: { httpHeaderName: x-user } }")]
    [InlineData("loadBalancer: { consistentHash: { httpHeaderName: x-user, maglev: { tableSize: 65537 } } }")]
    [InlineData("loadBalancer: { consistentHash: { httpHeaderName: x-user, ringHash: { minimumRingSize: 64 } } }")]
    public async Task ConsistentHash_ByHeader_SameKeySameEndpoint_KeysSpread_NoKeySpreads(string policy)
    {
        using var mesh = Mesh(policy);

        var first = await Call(mesh, headers: ("x-user", "alice"));
        for (var i = 0; i < 30; i++)
        {
            Assert.Equal(first, await Call(mesh, headers: ("x-user", "alice")));
        }

        var byKey = new HashSet<string>();
        for (var i = 0; i < 100; i++)
        {
            byKey.Add(await Call(mesh, headers: ("x-user", $"user-{i}")));
        }

        Assert.Equal(4, byKey.Count);
        var keyless = new HashSet<string>();
        for (var i = 0; i < 100; i++)
        {
            keyless.Add(await Call(mesh));
        }

        Assert.Equal(4, keyless.Count);
    }

    [Fact]
    public async Task ConsistentHash_SameKeyReachesTheSameEndpointFromEveryCaller()
    {
        const string Policy = "loadBalancer: { consistentHash: { httpQueryParameterName: cart } }";
        using var one = Mesh(Policy);
        using var two = Mesh(Policy);

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(await Call(one, $"http://cart/?cart=c{i}"), await Call(two, $"http://cart/?cart=c{i}"));
        }
    }

    [Fact]
    public async Task ConsistentHash_Cookie_IsGeneratedWhenMissing_AndThenSticks()
    {
        using var mesh = Mesh("loadBalancer: { consistentHash: { httpCookie: { name: session, path: /, ttl: 3600s, attributes: [{ name: SameSite, value: Strict }, { name: Secure }] } } }");

        using var first = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://cart/"), CancellationToken.None);
        var setCookie = first.Headers.GetValues("Set-Cookie").Single();
        Assert.Matches("^session=\"[0-9a-f]{16}\"; Max-Age=3600; Path=/; HttpOnly; SameSite=Strict; Secure$", setCookie);
        var cookie = setCookie.Split(';')[0];
        var endpoint = await first.Content.ReadAsStringAsync();
        for (var i = 0; i < 20; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "http://cart/");
            request.Headers.Add("Cookie", "other=1; " + cookie);
            using var response = await mesh.SendAsync(request, CancellationToken.None);
            Assert.Equal(endpoint, await response.Content.ReadAsStringAsync());
            Assert.False(response.Headers.Contains("Set-Cookie"));
        }
    }

    [Fact]
    public async Task ConsistentHash_CookieWithoutTtl_IsNeverGenerated()
    {
        using var mesh = Mesh("loadBalancer: { consistentHash: { httpCookie: { name: session } } }");
        using var response = await mesh.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://cart/"), CancellationToken.None);
        Assert.False(response.Headers.Contains("Set-Cookie"));
    }

    [Fact]
    public async Task ConsistentHash_SourceIp_PinsEachCallerToOneEndpoint()
    {
        using var mesh = Mesh("loadBalancer: { consistentHash: { useSourceIp: true } }");
        var first = await Call(mesh);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(first, await Call(mesh));
        }
    }

    [Fact]
    public async Task Locality_TrafficStaysInTheCallersZone_ThenRegion_ThenAnywhere()
    {
        const string Policy = "loadBalancer: { localityLbSetting: { enabled: true } }";
        using var sameZone = Mesh(Policy, "us-east/a", "us-east/a", "us-east/b", "eu-west/a");
        using var noZoneMatch = Mesh(Policy, "us-east/c", "eu-west/a", "us-east/b", "eu-west/b");
        using var remoteOnly = Mesh(Policy, "ap-south/a", "eu-west/a", "eu-west/a");

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("10.0.1.1:8080", await Call(sameZone));
            Assert.Equal("10.0.1.2:8080", await Call(noZoneMatch));
        }

        var spread = new HashSet<string>();
        for (var i = 0; i < 40; i++)
        {
            spread.Add(await Call(remoteOnly));
        }

        Assert.Equal(2, spread.Count);
    }

    [Fact]
    public async Task MeshConfigsLocalityLbSetting_AppliesToDestinationsWhoseRuleSetsNone()
    {
        const string MeshConfig = """
            apiVersion: meshkit.dev/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { localityLbSetting: { enabled: true } }
            ---

            """;
        string[] localities = ["us-east/a", "us-east/b", "eu-west/a", "eu-west/b"];

        // No DestinationRule at all: the caller's zone serves.
        using var meshWide = InMemoryMesh.Create(MeshConfig, extraWorkloads: Cart(localities), locality: "us-east/a", withReviews: false);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("10.0.1.1:8080", await Call(meshWide));
        }

        // A rule's own setting replaces it: turned off, calls spread again.
        using var ruleOff = InMemoryMesh.Create(MeshConfig + """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: cart }
            spec: { host: cart, trafficPolicy: { loadBalancer: { localityLbSetting: { enabled: false } } } }
            """, extraWorkloads: Cart(localities), locality: "us-east/a", withReviews: false);
        var spread = new HashSet<string>();
        for (var i = 0; i < 40; i++)
        {
            spread.Add(await Call(ruleOff));
        }

        Assert.Equal(4, spread.Count);
    }

    [Fact]
    public async Task Locality_Failover_PrefersTheNamedRegion()
    {
        using var mesh = Mesh("loadBalancer: { localityLbSetting: { failover: [{ from: us-east, to: eu-west }] } }", "us-east/a", "ap-south/a", "eu-west/a", "ap-south/b");
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("10.0.1.2:8080", await Call(mesh));
        }
    }

    [Fact]
    public async Task Locality_FailoverPriority_OrdersByMatchingLeadingLabels()
    {
        using var mesh = InMemoryMesh.Create("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: cart }
            spec:
              host: cart
              trafficPolicy:
                loadBalancer:
                  localityLbSetting:
                    failoverPriority: [topology.kubernetes.io/region, rack]
            """, labels: new Dictionary<string, string> { ["rack"] = "r1" }, locality: "us-east/a", withReviews: false,
            extraWorkloads: Cart("us-east/a", "us-east/b", "eu-west/a").Select((w, i) =>
            {
                w.Labels["rack"] = i == 1 ? "r1" : "r2";
                return w;
            }));

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("10.0.1.2:8080", await mesh.SendAsync("http://cart/"));
        }
    }

    [Fact]
    public async Task Locality_Distribute_SharesTrafficByWeight()
    {
        using var mesh = Mesh("""
            loadBalancer:
                  localityLbSetting:
                    distribute:
                    - from: us-east/*
                      to: { "us-east/a": 80, "eu-west/*": 20 }
            """, "us-east/a", "us-east/a", "eu-west/a", "ap-south/a");

        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 1000; i++)
        {
            var endpoint = await Call(mesh);
            counts[endpoint] = counts.GetValueOrDefault(endpoint) + 1;
        }

        Assert.InRange(counts.GetValueOrDefault("10.0.1.1:8080"), 730, 870);
        Assert.InRange(counts.GetValueOrDefault("10.0.1.2:8080"), 130, 270);
        Assert.False(counts.ContainsKey("10.0.1.3:8080"));
    }

    [Fact]
    public async Task PortLevelSettings_BalanceCallsToThatPortOnly()
    {
        var workloads = Cart("", "", "", "").Select(w =>
        {
            w.Ports.Add(new WorkloadPort { Name = "admin", ServicePort = 81, TargetPort = 8081 });
            return w;
        });
        using var mesh = InMemoryMesh.Create("""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: cart }
            spec:
              host: cart
              trafficPolicy:
                loadBalancer: { simple: ROUND_ROBIN }
                portLevelSettings:
                - port: { number: 81 }
                  loadBalancer: { consistentHash: { httpHeaderName: x-user } }
            """, extraWorkloads: workloads, withReviews: false);

        var admin = new HashSet<string>();
        var http = new HashSet<string>();
        for (var i = 0; i < 8; i++)
        {
            admin.Add(await mesh.SendAsync("http://cart:81/", headers: ("x-user", "alice")));
            http.Add(await mesh.SendAsync("http://cart:80/", headers: ("x-user", "alice")));
        }

        Assert.Single(admin);
        Assert.EndsWith(":8081", admin.Single(), StringComparison.Ordinal);
        Assert.Equal(4, http.Count);
    }

    [Fact]
    public async Task NoLocalitySetting_BalancesAcrossLocalities()
    {
        using var mesh = Mesh("loadBalancer: { simple: ROUND_ROBIN }", "us-east/a", "us-east/a", "eu-west/a");
        var seen = new HashSet<string>();
        for (var i = 0; i < 10; i++)
        {
            seen.Add(await Call(mesh));
        }

        Assert.Equal(2, seen.Count);
    }
}
