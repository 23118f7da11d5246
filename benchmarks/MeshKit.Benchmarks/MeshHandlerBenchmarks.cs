using System.Net;
using BenchmarkDotNet.Attributes;
using MeshKit;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Http;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.Extensions.Options;

namespace MeshKit.Benchmarks;

/// <summary>
/// The cost MeshHandler adds to one outbound call: the same in-memory transport with and without the mesh, on a mesh
/// of <see cref="Services"/> services where the called one has a header-matched route and an 80/20 split.
/// </summary>
[MemoryDiagnoser]
public class MeshHandlerBenchmarks
{
    private HttpMessageInvoker _plain = null!;
    private HttpMessageInvoker _mesh = null!;

    [Params(10, 1000)]
    public int Services { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: reviews }
            spec:
              host: reviews
              subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http:
              - match: [{ headers: { end-user: { exact: jason } } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - match: [{ uri: { regex: "/admin/.*" } }]
                route: [{ destination: { host: reviews, subset: v2 } }]
              - route:
                - { destination: { host: reviews, subset: v1 }, weight: 80 }
                - { destination: { host: reviews, subset: v2 }, weight: 20 }
            """;
        var parsed = ConfigParser.Parse(yaml, "bench.yaml");
        var workloads = new List<WorkloadAnnouncement>();
        for (var i = 0; i < Services; i++)
        {
            for (var v = 1; v <= 2; v++)
            {
                var w = new WorkloadAnnouncement { Service = i == 0 ? "reviews" : $"svc-{i}", Namespace = "default", InstanceId = $"{i}-{v}", Address = $"10.0.{i % 250}.{v}" };
                w.Labels["version"] = $"v{v}";
                w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = 8080 });
                workloads.Add(w);
            }
        }

        var view = MeshCompiler.Compile(new ConfigSet(parsed.Resources), workloads).ViewFor("default");
        var provider = new MeshSnapshotProvider(Options.Create(new MeshOptions()), TimeProvider.System);
        provider.PublishFromFile(SnapshotBuilder.Build(view.Resources, new SourceWorkload("default", new Dictionary<string, string> { ["app"] = "productpage" }), "1", ready: true));
        _plain = new HttpMessageInvoker(new Terminal());
        _mesh = new HttpMessageInvoker(new MeshHandler(provider) { InnerHandler = new Terminal() });
    }

    [Benchmark(Baseline = true)]
    public async Task<HttpStatusCode> Plain()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://10.0.0.1:8080/reviews/1");
        using var response = await _plain.SendAsync(request, CancellationToken.None);
        return response.StatusCode;
    }

    [Benchmark]
    public async Task<HttpStatusCode> Mesh()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews:9080/reviews/1");
        using var response = await _mesh.SendAsync(request, CancellationToken.None);
        return response.StatusCode;
    }

    private sealed class Terminal : HttpMessageHandler
    {
        // Reads what a client transport reads to write the request line (which parses the URI's components).
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage(request.RequestUri!.PathAndQuery.Length > 0 ? HttpStatusCode.OK : HttpStatusCode.BadRequest));
    }
}
