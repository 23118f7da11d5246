using MeshKit.ControlPlane.Registry;
using MeshKit.Sync;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Sync;

/// <summary>
/// A pod's downward API volume (Mesh:PodInfoDirectory): its labels, canonical service, locality and namespace become
/// the workload's, as a sidecar takes them from its pod.
/// </summary>
public sealed class PodInfoTests : MeshTestBase, IDisposable
{
    private readonly string _podInfo = Directory.CreateTempSubdirectory("meshkit-podinfo-").FullName;

    public void Dispose() => Directory.Delete(_podInfo, recursive: true);

    [Fact]
    public void TheDownwardApisFormat_IsReadAsKubernetesWritesIt()
    {
        // Go-quoted values: escapes, and the bytes of non-ASCII text as \x escapes.
        var text = "app=\"reviews\"\npod-template-hash=\"5d4b8f9c7\"\nnote=\"say \\\"hi\\\"\\\\now\\n\"\ncity=\"Z\\xc3\\xbcrich\"\nsmile=\"\\u263a\"\n";

        Assert.True(PodInfo.TryRead(text, out var labels, out var error), error);
        Assert.Equal("reviews", labels["app"]);
        Assert.Equal("5d4b8f9c7", labels["pod-template-hash"]);
        Assert.Equal("say \"hi\"\\now\n", labels["note"]);
        Assert.Equal("Zürich", labels["city"]);
        Assert.Equal("☺", labels["smile"]);

        Assert.False(PodInfo.TryRead("app=\"reviews\"\nversion=v1\n", out _, out error));
        Assert.StartsWith("2: 'version=v1' is not key=\"value\"", error, StringComparison.Ordinal);
        Assert.False(PodInfo.TryRead("app=\"re\\qviews\"", out _, out _));
    }

    [Fact]
    public async Task APodsLabelsAndNamespace_AreTheWorkloads_ItsCanonicalNameItsService()
    {
        File.WriteAllText(Path.Combine(_podInfo, "labels"), """
            app.kubernetes.io/name="ratings"
            app="ratings-legacy"
            version="v2"
            topology.kubernetes.io/region="eu-west-1"
            topology.kubernetes.io/zone="eu-west-1b"
            team="shop"

            """);
        File.WriteAllText(Path.Combine(_podInfo, "namespace"), "shop\n");

        await StartAsync("ignored", "v9", o =>
        {
            // Nothing said of the service, namespace or locality: the pod says them; a label set here wins over the pod's.
            o.ServiceName = string.Empty;
            o.Labels.Clear();
            o.Labels["team"] = "payments";
            o.PodInfoDirectory = _podInfo;
        });

        var registry = ControlPlane.Services.GetRequiredService<IWorkloadRegistry>();
        await Eventually.TrueAsync(() => registry.Workloads.Count == 1, "the workload registered");
        var workload = registry.Workloads.Single();
        Assert.Equal(("ratings", "shop"), (workload.Service, workload.Namespace));
        Assert.Equal(("eu-west-1", "eu-west-1b", ""), (workload.Locality.Region, workload.Locality.Zone, workload.Locality.Subzone));
        Assert.Equal(("v2", "payments", "ratings-legacy"), (workload.Labels["version"], workload.Labels["team"], workload.Labels["app"]));
    }

    [Theory]
    [InlineData("topology.istio.io/locality=\"eu.eu-1c\"\nistio-locality=\"us-east.us-east-1a.rack7\"\n", "eu/eu-1c")]
    [InlineData("istio-locality=\"us-east.us-east-1a.rack7\"\napp=\"reviews\"\n", "us-east/us-east-1a/rack7")]
    [InlineData("app=\"reviews\"\ntopology.kubernetes.io/region=\"us-east\"\n", "us-east")]
    public async Task IstiosLocalityLabel_ComesFirst_ThenThePodsTopology(string labels, string locality)
    {
        File.WriteAllText(Path.Combine(_podInfo, "labels"), labels);
        await StartAsync("reviews", "v1", o => o.PodInfoDirectory = _podInfo);

        var registry = ControlPlane.Services.GetRequiredService<IWorkloadRegistry>();
        await Eventually.TrueAsync(() => registry.Workloads.Count == 1, "the workload registered");
        var announced = registry.Workloads.Single().Locality;
        Assert.Equal(locality, string.Join('/', announced.Region, announced.Zone, announced.Subzone).TrimEnd('/'));
    }

    [Fact]
    public async Task AFolderWithoutLabels_OrWithBadOnes_FailsTheStart_NamingTheFileAndLine()
    {
        async Task<string> StartFailingAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Services.AddMesh(o => (o.ServiceName, o.ControlPlaneAddress, o.PodInfoDirectory) = ("reviews", ControlPlane.DiscoveryAddress, _podInfo));
            await using var app = builder.Build();
            var ex = await Assert.ThrowsAnyAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => app.StartAsync());
            return ex.Message;
        }

        Assert.Contains($"Mesh:PodInfoDirectory '{_podInfo}' has no 'labels' file", await StartFailingAsync(), StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_podInfo, "labels"), "app=\"reviews\"\nversion: v1\n");
        Assert.Contains($"{Path.Combine(_podInfo, "labels")}:2: 'version: v1' is not key=\"value\"", await StartFailingAsync(), StringComparison.Ordinal);

        // A locality of more parts than region/zone/subzone (an istio-locality label with one dot too many).
        File.WriteAllText(Path.Combine(_podInfo, "labels"), "app=\"reviews\"\nistio-locality=\"us.east.1a.rack.7\"\n");
        Assert.Contains("Mesh:Locality 'us/east/1a/rack/7' must be region/zone/subzone (at most three parts).", await StartFailingAsync(), StringComparison.Ordinal);
    }
}
