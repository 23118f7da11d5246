using System.Text;
using Google.Protobuf;
using BenchmarkDotNet.Attributes;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.Extensions.Options;

namespace MeshKit.Benchmarks;

/// <summary>
/// Route matching on a large mesh: 1,000 services with 10 endpoints each (10,000 endpoints), every service with a
/// VirtualService of five rules (header, prefix, regex, query and a weighted default). The benchmark resolves the
/// host and walks the rules to the last one, the worst case of first-match order.
/// </summary>
[MemoryDiagnoser]
public class RoutingBenchmarks
{
    private const int Services = 1000;
    private const int EndpointsPerService = 10;
    private MeshSnapshot _snapshot = null!;
    private HttpRequestMessage[] _requests = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        _snapshot = LargeMesh.Build(Services, EndpointsPerService).Snapshot;
        _requests = Enumerable.Range(0, 64)
            .Select(i => new HttpRequestMessage(HttpMethod.Get, $"http://svc-{i * 997 % Services}:9080/api/v1/items/{i}"))
            .ToArray();
    }

    /// <summary>Host lookup plus first-match over five rules, ending on the weighted default and its pick.</summary>
    [Benchmark]
    public string? ResolveMatchAndPick()
    {
        var request = _requests[_next++ & 63];
        var uri = request.RequestUri!;
        if (!_snapshot.TryResolve(uri.Host, out var service))
        {
            return null;
        }

        foreach (var route in service.Routes)
        {
            if (route.TryMatch(request, uri, out _))
            {
                return route.PickTarget()?.Endpoints?.Pick(request, uri, out _)?.Key;
            }
        }

        return null;
    }
}

/// <summary>The large mesh of the routing benchmark, as a workload receives it: the resources and the compiled snapshot.</summary>
internal static class LargeMesh
{
    public static (IReadOnlyDictionary<string, IReadOnlyDictionary<string, Resource>> Resources, MeshSnapshot Snapshot) Build(int services, int endpointsPerService)
    {
        var yaml = new StringBuilder();
        var workloads = new List<WorkloadAnnouncement>(services * endpointsPerService);
        for (var i = 0; i < services; i++)
        {
            yaml.Append($$"""
                apiVersion: networking.istio.io/v1
                kind: DestinationRule
                metadata: { name: svc-{{i}} }
                spec:
                  host: svc-{{i}}
                  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
                ---
                apiVersion: networking.istio.io/v1
                kind: VirtualService
                metadata: { name: svc-{{i}} }
                spec:
                  hosts: [svc-{{i}}]
                  http:
                  - match: [{ headers: { end-user: { exact: jason } } }]
                    route: [{ destination: { host: svc-{{i}}, subset: v2 } }]
                  - match: [{ uri: { prefix: /admin/ } }]
                    route: [{ destination: { host: svc-{{i}}, subset: v2 } }]
                  - match: [{ uri: { regex: "/api/v[0-9]+/beta/.*" } }]
                    route: [{ destination: { host: svc-{{i}}, subset: v2 } }]
                  - match: [{ queryParams: { canary: { exact: "true" } } }]
                    route: [{ destination: { host: svc-{{i}}, subset: v2 } }]
                  - route:
                    - { destination: { host: svc-{{i}}, subset: v1 }, weight: 90 }
                    - { destination: { host: svc-{{i}}, subset: v2 }, weight: 10 }
                ---

                """);
            for (var e = 0; e < endpointsPerService; e++)
            {
                var w = new WorkloadAnnouncement { Service = $"svc-{i}", Namespace = "default", InstanceId = $"{i}-{e}", Address = $"10.{i / 250}.{i % 250}.{e + 1}" };
                w.Labels["version"] = e % 2 == 0 ? "v1" : "v2";
                w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
                workloads.Add(w);
            }
        }

        var parsed = ConfigParser.Parse(yaml.ToString(), "routing.yaml");
        var view = MeshCompiler.Compile(new ConfigSet(parsed.Resources), workloads).ViewFor("default");

        // As a workload holds them: parsed from the bytes it received, not the control plane's objects (a view refers
        // to the whole compiled mesh, which a workload never has).
        var received = view.Resources.ToDictionary(
            t => t.Key,
            t => (IReadOnlyDictionary<string, Resource>)t.Value.ToDictionary(r => r.Key, r => Resource.Parser.ParseFrom(r.Value.ToByteArray())));
        return (received, SnapshotBuilder.Build(received, new SourceWorkload("default", new Dictionary<string, string>()), "1", ready: true));
    }

    /// <summary>
    /// Heap a workload holds for the large mesh: the resources as received and the compiled snapshot, measured as the
    /// growth of the collected heap when building them (the control plane's compile happens in another process
    /// in a real mesh, so its garbage is collected before the second reading).
    /// </summary>
    /// <remarks>
    /// A small build first makes what the process creates once whatever the config (protobuf descriptors, the regex
    /// engine's tables, the runtime's caches); it is dropped before measuring, and the compiled patterns go with it
    /// (they are held weakly), so the measured build pays for its own.
    /// </remarks>
    public static Result MeasureMemory(int services, int endpointsPerService)
    {
        Build(2, 2);
        var before = GC.GetTotalMemory(forceFullCollection: true);
        var held = Build(services, endpointsPerService);
        var after = GC.GetTotalMemory(forceFullCollection: true);
        GC.KeepAlive(held.Resources);
        GC.KeepAlive(held.Snapshot);
        return new Result($"memory.config.{services}_services", (after - before) / 1024.0 / 1024.0, "MiB",
            $"{services} services, {services * endpointsPerService} endpoints: resources and compiled snapshot held by a workload");
    }
}

/// <summary>Picking one endpoint of a set of <see cref="Endpoints"/> with each load balancer, as a request does.</summary>
[MemoryDiagnoser]
public class LoadBalancerBenchmarks
{
    private EndpointSet _set = null!;
    private HttpRequestMessage _request = null!;

    [Params("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV")]
    public string Policy { get; set; } = "ROUND_ROBIN";

    [Params(10, 100)]
    public int Endpoints { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var endpoints = MakeEndpoints(Endpoints);
        ConsistentHash? hash = Policy switch
        {
            "RING_HASH" => new ConsistentHash { HeaderName = "x-user", MinimumRingSize = 1024 },
            "MAGLEV" => new ConsistentHash { HeaderName = "x-user", MaglevTableSize = 65537 },
            _ => null,
        };
        _set = EndpointSet.Create(endpoints, hash is null ? Policy : "CONSISTENT_HASH", hash, null, new SourceWorkload("default", new Dictionary<string, string>()));
        _request = new HttpRequestMessage(HttpMethod.Get, "http://svc:9080/items");
        _request.Headers.Add("x-user", "jason");
    }

    [Benchmark]
    public string? Pick() => _set.Pick(_request, _request.RequestUri, out _)?.Key;

    /// <summary>Makes <paramref name="count"/> endpoints of one port, at distinct addresses.</summary>
    internal static EndpointView[] MakeEndpoints(int count) => Enumerable.Range(0, count).Select(i =>
    {
        var endpoint = new Endpoint { Address = $"10.0.{i / 250}.{i % 250 + 1}", Weight = 1 };
        endpoint.Ports.Add(new EndpointPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
        return new EndpointView(endpoint);
    }).ToArray();
}

/// <summary>
/// A call with a session (strong session affinity): reading the endpoint its cookie names and finding it among the
/// destination's endpoints, by an index made once per set, as a request does before the balancer would pick.
/// </summary>
[MemoryDiagnoser]
public class SessionBenchmarks
{
    private EndpointSet _set = null!;
    private StickySession _session = null!;
    private HttpRequestMessage _request = null!;

    [Params(10, 1000)]
    public int Endpoints { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var endpoints = LoadBalancerBenchmarks.MakeEndpoints(Endpoints);
        _set = EndpointSet.Create(endpoints, "ROUND_ROBIN", null, null, new SourceWorkload("default", new Dictionary<string, string>()));
        _session = StickySession.Create(new SessionPersistence { CookieName = "session", CookiePath = "/" })!;
        _request = new HttpRequestMessage(HttpMethod.Get, "http://svc:9080/items");
        var last = endpoints[^1].AuthorityFor(9080)!;
        _request.Headers.Add("Cookie", $"theme=dark; session=\"{Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(last))}\"");
    }

    [Benchmark]
    public string? PinnedEndpoint() => _session.Pinned(_request) is { } pinned ? _set.Pinned(pinned, 9080)?.Key : null;
}
