using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Sources;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MeshKit.Tests.ControlPlane;

/// <summary>The config folder as Kubernetes mounts a ConfigMap into it: files that are links into a folder the kubelet swaps.</summary>
public sealed class DirectoryConfigStoreTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("meshkit-configmap-");

    public void Dispose() => _folder.Delete(recursive: true);

    private static string VirtualService(string subset) => $$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews, namespace: default }
        spec:
          hosts: [reviews]
          http: [{ route: [{ destination: { host: reviews, subset: {{subset}} } }] }]
        """;

    // The kubelet's atomic writer: the data in a timestamped folder, "..data" linking to it, the visible names linking
    // through "..data"; an update writes a new folder and renames a new "..data" link over the old one.
    private void Publish(string version, string content)
    {
        var data = Path.Combine(_folder.FullName, "..2026_11_27_" + version);
        Directory.CreateDirectory(data);
        File.WriteAllText(Path.Combine(data, "reviews.yaml"), content);
        var next = Path.Combine(_folder.FullName, "..data_tmp");
        File.CreateSymbolicLink(next, Path.GetFileName(data));
        Rename(next, Path.Combine(_folder.FullName, "..data"));
        var visible = Path.Combine(_folder.FullName, "reviews.yaml");
        if (!Path.Exists(visible))
        {
            File.CreateSymbolicLink(visible, Path.Combine("..data", "reviews.yaml"));
        }
    }

    // rename(2) over the old link, as the kubelet does (mv -T renames the link itself, never into its target).
    private static void Rename(string from, string to)
    {
        using var mv = System.Diagnostics.Process.Start("mv", ["-T", from, to])!;
        mv.WaitForExit();
        Assert.Equal(0, mv.ExitCode);
    }

    [Fact]
    public async Task AConfigMapVolume_IsReadOnce_AndItsUpdatesApply()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the kubelet's layout, with rename(2) over a link, is Linux's
        }

        Publish("00_00_00.1", VirtualService("v1"));
        using var store = new DirectoryConfigStore(
            Options.Create(new ControlPlaneOptions { ConfigDirectory = _folder.FullName, ConfigPollInterval = TimeSpan.FromMilliseconds(200) }),
            NullLogger<DirectoryConfigStore>.Instance,
            TimeProvider.System);
        await store.StartAsync(CancellationToken.None);

        // One file, one resource, no "already defined" reports of the copies under ..data and the timestamped folder.
        var source = Assert.Single(store.Sources);
        Assert.Equal("reviews.yaml", source.Name);
        Assert.Empty(source.Diagnostics);
        Assert.Equal("v1", Assert.Single(store.Current.VirtualServices).Http[0].Route[0].Destination.Subset);

        // An update changes no stamp of the link the store lists: it must still apply.
        Publish("00_00_05.2", VirtualService("v2"));
        await Eventually.TrueAsync(() => store.Current.VirtualServices is [{ } vs] && vs.Http[0].Route[0].Destination.Subset == "v2", "the ConfigMap's update applies");
        Assert.Single(store.Sources);
    }
}
