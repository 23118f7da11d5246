using System.Net;
using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Http;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.Extensions.Options;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// The real compile path (YAML → control-plane compiler → snapshot) and the real handler, over a terminal handler that
/// records where each request was sent. Workloads of <c>reviews</c> v1, v2, v3 listen on 10.0.0.1 ports 1001–1003, so
/// the port tells which subset answered.
/// </summary>
internal static class InMemoryMesh
{
    public const string Subsets = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: { name: reviews }
        spec:
          host: reviews
          subsets:
          - { name: v1, labels: { version: v1 } }
          - { name: v2, labels: { version: v2 } }
          - { name: v3, labels: { version: v3 } }
          - { name: none, labels: { version: v9 } }
        ---

        """;

    public static HttpMessageInvoker Create(string yaml, string ns = "default", IReadOnlyDictionary<string, string>? labels = null, IEnumerable<WorkloadAnnouncement>? extraWorkloads = null, string? locality = null, bool withReviews = true, MeshKit.Telemetry.MeshMetrics? metrics = null, HttpMessageHandler? upstream = null)
    {
        var parsed = ConfigParser.Parse(yaml, "routes.yaml");
        Assert.False(parsed.HasErrors, string.Join(Environment.NewLine, parsed.Diagnostics));
        var workloads = (withReviews ? ["v1", "v2", "v3"] : Array.Empty<string>()).Select((v, i) =>
        {
            var w = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = v, Address = "10.0.0.1" };
            w.Labels["version"] = v;
            w.Ports.Add(new WorkloadPort { Name = "http", ServicePort = 9080, TargetPort = (uint)(1001 + i) });
            return w;
        }).Concat(extraWorkloads ?? []);
        var source = new SourceWorkload(ns, labels ?? new Dictionary<string, string> { ["app"] = "productpage" }, Localities.Parse(locality), "productpage-1");
        var view = MeshCompiler.Compile(new ConfigSet(parsed.Resources), workloads).ViewFor(ns, source.Labels);
        var snapshot = SnapshotBuilder.Build(view.Resources, source, "1", ready: true);
        var provider = new MeshSnapshotProvider(Options.Create(new MeshOptions()), TimeProvider.System);
        provider.PublishFromFile(snapshot);
        return new HttpMessageInvoker(new MeshHandler(provider, metrics) { InnerHandler = upstream ?? new Recorder() });
    }

    public static string VirtualService(string http) => $$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews }
        spec:
          hosts: [reviews]
          http:
        {{http}}
        """;

    /// <summary>Sends and returns the subset that answered ("v1"…), "not-mesh", or "status flag" for a mesh-made answer.</summary>
    public static async Task<string> SendAsync(this HttpMessageInvoker mesh, string url, string method = "GET", params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await mesh.SendAsync(request, CancellationToken.None);
        if (response.Headers.TryGetValues(MeshHandler.ResponseFlagsHeader, out var flags))
        {
            return $"{(int)response.StatusCode} {flags.Single()}";
        }

        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>Answers with the subset the endpoint port encodes and echoes what it received in x-sent-* headers.</summary>
    private sealed class Recorder : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var uri = request.RequestUri!;
            var body = uri.Host == "10.0.0.1" ? $"v{uri.Port - 1000}" : uri.Host.StartsWith("10.", StringComparison.Ordinal) ? uri.Authority : "not-mesh";
            var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(body) };
            response.Headers.Add("x-sent-to", uri.ToString());
            response.Headers.Add("x-sent-host", request.Headers.Host ?? string.Empty);
            foreach (var header in request.Headers)
            {
                response.Headers.TryAddWithoutValidation("x-sent-header-" + header.Key.ToLowerInvariant(), header.Value);
            }

            return Task.FromResult(response);
        }
    }
}
