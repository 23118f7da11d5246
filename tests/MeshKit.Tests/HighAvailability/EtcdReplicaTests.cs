using System.Net.Http.Json;
using System.Text.Json;
using MeshKit.ControlPlane;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.HighAvailability;

/// <summary>
/// Several control-plane replicas sharing state through a real etcd on loopback: config, registrations (with leases)
/// and the CA; workloads configured with every replica that fail over between them.
/// </summary>
[Collection(nameof(EtcdReplicaTests))]
public sealed class EtcdReplicaTests : IAsyncLifetime
{
    private const string ReviewsHost = "reviews.default.svc.cluster.local";
    private const string Passphrase = "test-passphrase-not-a-secret";

    private readonly List<IAsyncDisposable> _owned = [];
    private EtcdServer _etcd = null!;

    public async Task InitializeAsync() => _etcd = await EtcdServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            await owned.DisposeAsync();
        }

        await _etcd.DisposeAsync();
    }

    [Fact]
    public async Task ConfigAppliedThroughOneReplica_ReachesWorkloadsOnTheOthers()
    {
        var replicas = await StartReplicasAsync(3);
        var v1 = await StartWorkloadAsync("reviews", "v1", replicas[1]);
        var v2 = await StartWorkloadAsync("reviews", "v2", replicas[1]);
        var caller = await StartWorkloadAsync("productpage", "v1", replicas[2]);

        // Registrations are shared: the caller on replica 3 sees both instances registered through replica 2.
        await Eventually.TrueAsync(() => Endpoints(caller) == 2, "the caller on replica 3 sees the endpoints registered on replica 2");
        foreach (var replica in replicas)
        {
            var registry = await replica.GetAdminJsonAsync("/debug/registry");
            Assert.Equal(3, registry.GetArrayLength());
        }

        var applied = await ApplyAsync(replicas[0], "reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]
            """);
        Assert.True(applied.IsSuccessStatusCode, await applied.Content.ReadAsStringAsync());

        await Eventually.TrueAsync(() => caller.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Any(r => r.Targets.Any(t => t.Subset == "v2")), "the route applied on replica 1 reaches the caller on replica 3");
        var http = caller.CreateClient();
        for (var i = 0; i < 10; i++)
        {
            Assert.StartsWith("reviews|v2|", await http.GetStringAsync("http://reviews:9080/"));
        }

        // Every replica lists the same resources, from etcd.
        foreach (var replica in replicas)
        {
            var resources = await replica.GetAdminJsonAsync("/config/resources");
            Assert.Equal(2, resources.GetArrayLength());
        }

        // A source another one already defines is refused, and nothing of it is stored.
        var conflict = await ApplyAsync(replicas[2], "other.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews } }] }]
            """);
        Assert.Equal(System.Net.HttpStatusCode.Conflict, conflict.StatusCode);
        Assert.Contains("already defined in reviews.yaml", await conflict.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Deleting through another replica withdraws the route everywhere.
        using var admin = new HttpClient { BaseAddress = replicas[1].AdminAddress };
        Assert.True((await admin.DeleteAsync("/config?name=reviews.yaml")).IsSuccessStatusCode);
        await Eventually.TrueAsync(() => caller.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.All(r => r.Targets.All(t => t.Subset.Length == 0)), "the deletion reaches the caller");
        GC.KeepAlive(v1);
        GC.KeepAlive(v2);
    }

    [Fact]
    public async Task KillingTheReplicaOfAGroupOfWorkloads_FailsNoRequest_AndLaterChangesStillReachThem()
    {
        var replicas = await StartReplicasAsync(3);
        var addresses = replicas.Select(r => r.DiscoveryAddress).ToArray();

        // Every workload knows all replicas and starts on a random one.
        var v1 = await StartWorkloadAsync("reviews", "v1", replicas[0], addresses);
        var v2 = await StartWorkloadAsync("reviews", "v2", replicas[0], addresses);
        var caller = await StartWorkloadAsync("productpage", "v1", replicas[0], addresses);
        await Eventually.TrueAsync(() => Endpoints(caller) == 2, "caller sees both reviews");

        var traffic = Traffic.Start(caller.CreateClient(), "http://reviews:9080/");

        await Eventually.TrueAsync(() => traffic.Sent > 20, "traffic flows");

        // Kill the replica most of them are connected to.
        var counts = new List<int>();
        foreach (var replica in replicas)
        {
            counts.Add((await replica.GetAdminJsonAsync("/debug/connections")).GetProperty("connections").GetArrayLength());
        }

        Assert.Equal(3, counts.Sum());
        var victim = replicas[counts.IndexOf(counts.Max())];
        await victim.StopAsync();
        var survivors = replicas.Where(r => r != victim).ToArray();
        await Eventually.TrueAsync(async () =>
        {
            var connected = 0;
            foreach (var replica in survivors)
            {
                var connections = await replica.GetAdminJsonAsync("/debug/connections");
                connected += connections.GetProperty("connections").GetArrayLength();
            }

            return connected == 3;
        }, "the three workloads reconnected to the other replicas");

        var applied = await ApplyAsync(survivors[0], "reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]
            """);
        Assert.True(applied.IsSuccessStatusCode);
        await Eventually.TrueAsync(() => caller.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Any(r => r.Targets.Any(t => t.Subset == "v1")), "a change made after the kill reaches the caller");
        var before = v1.Served;
        await Eventually.TrueAsync(() => v1.Served > before + 10, "traffic follows the new route");

        Assert.Equal(0, await traffic.StopAsync());
        GC.KeepAlive(v2);
    }

    [Fact]
    public async Task AReplicaProcessKilledOutright_LosesNoRequestAndNoRegistration()
    {
        // The workloads can only reach the process replica at first, so that is where they connect.
        await using var victim = await ControlPlaneProcess.StartAsync(
            new Dictionary<string, string> { ["MESHKIT_ControlPlane__CaKeyPassphrase"] = Passphrase },
            "--store", "etcd", "--etcd-endpoints", _etcd.Endpoints, "--etcd-lease-ttl", "00:00:05", "--registration-grace", "00:00:01");
        // The replicas that start later are known up front, as a DNS name or an address list would be.
        int[] later = [FreePorts.Next(), FreePorts.Next()];
        void Replicas(MeshOptions o)
        {
            foreach (var port in later)
            {
                o.ControlPlaneAddresses.Add(new Uri($"http://127.0.0.1:{port}"));
            }
        }

        var reviews = await TestWorkload.StartAsync("reviews", "v1", victim.DiscoveryAddress, Replicas);
        _owned.Add(reviews);
        var caller = await TestWorkload.StartAsync("productpage", "v1", victim.DiscoveryAddress, Replicas);
        _owned.Add(caller);
        await Eventually.TrueAsync(() => Endpoints(caller) == 1, "caller sees reviews through the process replica");

        var traffic = Traffic.Start(caller.CreateClient(), "http://reviews:9080/");

        var survivors = await StartReplicasAsync(2, leaseTtl: TimeSpan.FromSeconds(5), ports: later);
        await Eventually.TrueAsync(() => traffic.Sent > 20, "traffic flows");
        victim.Kill();

        // Both reconnect to the in-process replicas; their entries never leave the registry.
        await Eventually.TrueAsync(async () =>
        {
            var connected = 0;
            foreach (var replica in survivors)
            {
                connected += (await replica.GetAdminJsonAsync("/debug/connections")).GetProperty("connections").GetArrayLength();
            }

            return connected == 2;
        }, "the workloads reconnected to the surviving replicas");
        await Task.Delay(TimeSpan.FromSeconds(6)); // past the dead replica's lease
        Assert.True((await RegisteredServicesAsync(survivors[0])).SetEquals(["reviews", "productpage"]));

        var applied = await ApplyAsync(survivors[1], "reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews } }], timeout: 4s }]
            """);
        Assert.True(applied.IsSuccessStatusCode);
        await Eventually.TrueAsync(() => caller.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 1 && s.Routes[0].Resilience is not null, "a change made after the kill reaches the caller");

        Assert.Equal(0, await traffic.StopAsync());
    }

    [Fact]
    public async Task ARegistrationSurvivesAReplicaRestart_AndADeadWorkloadExpiresWithItsLease()
    {
        var replicas = await StartReplicasAsync(2, leaseTtl: TimeSpan.FromSeconds(5));
        var a = replicas[0];
        var b = replicas[1];
        var survivor = await StartWorkloadAsync("ratings", "v1", a, [a.DiscoveryAddress, b.DiscoveryAddress]);
        var doomed = await StartWorkloadAsync("details", "v1", a, [a.DiscoveryAddress]);
        await Eventually.TrueAsync(async () => (await RegisteredServicesAsync(b)).SetEquals(["ratings", "details"]), "replica 2 sees both registrations");

        // Replica 1 goes away: its lease keeps both entries while the survivor reconnects to replica 2.
        await a.StopAsync();
        Assert.True((await RegisteredServicesAsync(b)).SetEquals(["ratings", "details"]));

        // The doomed workload dies too, without a clean goodbye reaching anyone.
        await doomed.DisposeAsync();

        // After the lease TTL (5 s here), only the workload that reconnected is still registered.
        await Task.Delay(TimeSpan.FromSeconds(5));
        await Eventually.TrueAsync(async () => (await RegisteredServicesAsync(b)).SetEquals(["ratings"]), "the dead workload's entry expired with replica 1's lease");
        await Eventually.TrueAsync(async () => (await b.GetAdminJsonAsync("/debug/connections")).GetProperty("connections").GetArrayLength() == 1, "the survivor is connected to replica 2");

        // A replica started afresh finds the registry as it is, from etcd.
        var restarted = (await StartReplicasAsync(1, leaseTtl: TimeSpan.FromSeconds(5)))[0];
        Assert.True((await RegisteredServicesAsync(restarted)).SetEquals(["ratings"]));
        GC.KeepAlive(survivor);
    }

    [Fact]
    public async Task TheCaIsShared_ATokenFromOneReplicaWorksOnAnother()
    {
        var replicas = await StartReplicasAsync(2);
        var ca0 = replicas[0].Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>();
        var ca1 = replicas[1].Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>();
        Assert.Equal(ca0.RootPin, ca1.RootPin);
        Assert.NotEqual(ca0.Directory, ca1.Directory);

        // The private key never sits in etcd in the clear.
        using var http = new HttpClient();
        var key = Convert.ToBase64String("/meshkit/ca/files"u8.ToArray());
        var stored = await (await http.PostAsync($"{_etcd.Endpoints.Split(',')[0]}/v3/kv/range", new StringContent($$"""{"key":"{{key}}"}"""))).Content.ReadFromJsonAsync<JsonElement>();
        var value = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(stored.GetProperty("kvs")[0].GetProperty("value").GetString()!));
        Assert.DoesNotContain("PRIVATE KEY", value, StringComparison.Ordinal);

        var token = replicas[0].CreateJoinToken("default", "reviews");
        var workload = await TestWorkload.StartAsync("reviews", "v1", replicas[1].SecureAddress, o =>
        {
            o.ServiceAccount = "reviews";
            o.JoinToken = token;
        });
        _owned.Add(workload);
        await Eventually.TrueAsync(() => workload.Services.GetRequiredService<MeshKit.Security.WorkloadIdentity>().Current is not null, "the workload got a certificate from replica 2 with replica 1's token");
    }

    [Fact]
    public async Task LosingOneEtcdMemberOfThree_GoesUnnoticed_AndTheMemberCatchesUp()
    {
        await _etcd.DisposeAsync();
        _etcd = await EtcdServer.StartAsync(members: 3);
        var replicas = await StartReplicasAsync(2);
        var reviews = await StartWorkloadAsync("reviews", "v1", replicas[0]);
        var caller = await StartWorkloadAsync("productpage", "v1", replicas[1]);
        await Eventually.TrueAsync(() => Endpoints(caller) == 1, "caller sees reviews");

        _etcd.Kill(0);
        var applied = await ApplyAsync(replicas[0], "reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ route: [{ destination: { host: reviews } }], timeout: 3s }]
            """);
        Assert.True(applied.IsSuccessStatusCode, await applied.Content.ReadAsStringAsync());
        await Eventually.TrueAsync(() => caller.Snapshot.Services.TryGetValue(ReviewsHost, out var s) && s.Routes.Length == 1 && s.Routes[0].Resilience is not null, "the change made with a member down reaches the caller");
        Assert.StartsWith("reviews|v1|", await caller.CreateClient().GetStringAsync("http://reviews:9080/"));

        await _etcd.RestartAsync(0);
        var expected = await _etcd.CountOnMemberAsync(1, "/meshkit/");
        await Eventually.TrueAsync(async () => await _etcd.CountOnMemberAsync(0, "/meshkit/") == expected, "the member that came back caught up");
        GC.KeepAlive(reviews);
    }

    private static int Endpoints(TestWorkload client) => client.Endpoints(ReviewsHost);

    private static async Task<HashSet<string>> RegisteredServicesAsync(TestControlPlane replica)
    {
        var registry = await replica.GetAdminJsonAsync("/debug/registry");
        return registry.EnumerateArray().Select(e => e.GetProperty("service").GetString()!).ToHashSet();
    }

    private static async Task<HttpResponseMessage> ApplyAsync(TestControlPlane replica, string name, string yaml)
    {
        using var admin = new HttpClient { BaseAddress = replica.AdminAddress };
        return await admin.PostAsync($"/config?name={name}", new StringContent(yaml));
    }

    private async Task<TestControlPlane[]> StartReplicasAsync(int count, TimeSpan? leaseTtl = null, int[]? ports = null)
    {
        var replicas = new TestControlPlane[count];
        for (var i = 0; i < count; i++)
        {
            replicas[i] = await TestControlPlane.StartAsync(discoveryPort: ports?[i] ?? 0, configure: o =>
            {
                o.Store = "etcd";
                o.EtcdEndpoints = _etcd.Endpoints;
                o.EtcdLeaseTtl = leaseTtl ?? TimeSpan.FromSeconds(3);
                o.CaKeyPassphrase = Passphrase;
                o.RegistrationGrace = TimeSpan.FromSeconds(1);
            });
            _owned.Add(replicas[i]);
        }

        return replicas;
    }

    private async Task<TestWorkload> StartWorkloadAsync(string service, string version, TestControlPlane replica, Uri[]? all = null)
    {
        var workload = await TestWorkload.StartAsync(service, version, replica.DiscoveryAddress, o =>
        {
            foreach (var other in (all ?? []).Where(a => a != replica.DiscoveryAddress))
            {
                o.ControlPlaneAddresses.Add(other);
            }
        });
        _owned.Add(workload);
        return workload;
    }

    /// <summary>Requests one after another until stopped, counting the ones that failed.</summary>
    private sealed class Traffic
    {
        private readonly CancellationTokenSource _stop = new();
        private Task _loop = Task.CompletedTask;
        private int _sent;
        private int _failures;

        public int Sent => Volatile.Read(ref _sent);

        public static Traffic Start(HttpClient http, string url)
        {
            var traffic = new Traffic();
            traffic._loop = Task.Run(async () =>
            {
                while (!traffic._stop.IsCancellationRequested)
                {
                    try
                    {
                        using var response = await http.GetAsync(url);
                        if (!response.IsSuccessStatusCode)
                        {
                            Interlocked.Increment(ref traffic._failures);
                        }
                    }
                    catch (HttpRequestException)
                    {
                        Interlocked.Increment(ref traffic._failures);
                    }

                    Interlocked.Increment(ref traffic._sent);
                    await Task.Delay(5);
                }
            });
            return traffic;
        }

        /// <summary>Stops the traffic and returns how many requests failed.</summary>
        public async Task<int> StopAsync()
        {
            await _stop.CancelAsync();
            await _loop;
            _stop.Dispose();
            return Volatile.Read(ref _failures);
        }
    }
}
