using System.Net;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.EndToEnd;

public sealed class StaticModeTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("meshkit-static-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            await owned.DisposeAsync();
        }

        Directory.Delete(_directory, recursive: true);
    }

    private async Task<TestWorkload> Start(string service, string version, Action<MeshOptions>? configure = null)
    {
        var workload = await TestWorkload.StartAsync(service, version, null, configure);
        _owned.Add(workload);
        return workload;
    }

    private string Write(string yaml)
    {
        var path = Path.Combine(_directory, "mesh.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    private static string Entry(Uri v1, Uri v2, int weightV1) => $$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: { name: reviews }
        spec:
          hosts: [reviews.default.svc.cluster.local]
          location: MESH_INTERNAL
          ports: [{ number: 9080, name: http }]
          resolution: STATIC
          endpoints:
          - { address: 127.0.0.1, ports: { http: {{v1.Port}} }, labels: { version: v1 } }
          - { address: 127.0.0.1, ports: { http: {{v2.Port}} }, labels: { version: v2 } }
        ---
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
          - route:
            - { destination: { host: reviews, subset: v1 }, weight: {{weightV1}} }
            - { destination: { host: reviews, subset: v2 }, weight: {{100 - weightV1}} }
        """;

    [Fact]
    public async Task StaticFile_RoutesWithoutAControlPlane_AndReloadsWhenItChanges()
    {
        var placeholder = Write("apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\n");
        var v1 = await Start("reviews", "v1", o => o.ConfigFile = placeholder);
        var v2 = await Start("reviews", "v2", o => o.ConfigFile = placeholder);
        var file = Write(Entry(v1.Address, v2.Address, 100));
        var client = await Start("productpage", "v1", o => o.ConfigFile = file);
        var http = client.CreateClient();

        for (var i = 0; i < 10; i++)
        {
            Assert.StartsWith("reviews|v1|", await http.GetStringAsync("http://reviews/"), StringComparison.Ordinal);
        }

        File.WriteAllText(file, Entry(v1.Address, v2.Address, 0));
        await Eventually.TrueAsync(async () => (await http.GetStringAsync("http://reviews/")).StartsWith("reviews|v2|", StringComparison.Ordinal), "the changed file applies");

        // An invalid change is rejected and the previous config stays.
        File.WriteAllText(file, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: reviews }\nspec: { hosts: [] }\n");
        await Task.Delay(500);
        for (var i = 0; i < 10; i++)
        {
            Assert.StartsWith("reviews|v2|", await http.GetStringAsync("http://reviews/"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task InvalidStaticFile_FailsTheStart_WithEveryError()
    {
        var file = Write("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: r }\nspec:\n  hosts: []\n  bogus: 1\n");
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => Start("productpage", "v1", o => o.ConfigFile = file));
        Assert.Contains("mesh.yaml:5:", ex.Message, StringComparison.Ordinal);
        Assert.Contains("spec.hosts", ex.Message, StringComparison.Ordinal);
        Assert.Contains("spec.bogus: unknown field", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreachableControlPlane_WithoutStaticFile_FailsFastAfterTheInitialFetchTimeout()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var closedPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var client = await Start("productpage", "v1", o =>
        {
            o.ControlPlaneAddress = new Uri($"http://127.0.0.1:{closedPort}");
            o.InitialFetchTimeout = TimeSpan.FromMilliseconds(300);
        });
        await Task.Delay(400);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var response = await client.CreateClient().GetAsync("http://reviews/");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("NC", response.Headers.GetValues(MeshHandler.ResponseFlagsHeader).Single());
        Assert.Contains("initial fetch timeout", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), "fails fast once the deadline passed");
    }

    [Fact]
    public async Task MissingServiceName_FailsTheStart_WithAClearMessage()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddMesh(o => o.ControlPlaneAddress = new Uri("ftp://nowhere"));
        await using var app = builder.Build();

        var ex = await Assert.ThrowsAnyAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => app.StartAsync());
        Assert.Contains("Mesh:ServiceName", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Mesh:ControlPlaneAddress 'ftp://nowhere/'", ex.Message, StringComparison.Ordinal);
    }
}
