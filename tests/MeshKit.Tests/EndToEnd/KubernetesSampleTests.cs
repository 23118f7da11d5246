using System.Net;
using MeshKit.Config.Parsing;
using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Registry;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Tests.EndToEnd;

/// <summary>
/// The Kubernetes manifests of <c>samples/Kubernetes</c> (docs/kubernetes.md) run as written, but for Kubernetes
/// itself: the control plane with the Deployment's arguments and environment and the ConfigMap's files, and the
/// workload with its Deployment's environment, its downward API volume, its projected service-account token (signed by
/// a key standing in for the cluster's) and the mesh root's ConfigMap, on 127.0.0.1. A
/// setting a manifest names that MeshKit does not have fails here, as would the workload's start.
/// </summary>
public sealed class KubernetesSampleTests : IDisposable
{
    private const string AdminToken = "s3cret-admin-token";

    private readonly string _scratch = Directory.CreateTempSubdirectory("meshkit-k8s-").FullName;

    // The cluster's service-account signing key, standing in for the API server's.
    private readonly System.Security.Cryptography.RSA _clusterKey = System.Security.Cryptography.RSA.Create(2048);

    public void Dispose()
    {
        _clusterKey.Dispose();
        Directory.Delete(_scratch, recursive: true);
    }

    [Fact]
    public void TheManifests_AreValidMeshConfiguration_KubernetesOwnKindsSkippedWithWarnings()
    {
        var folder = Path.Combine(RepositoryRoot(), "samples", "Kubernetes");
        foreach (var file in Directory.GetFiles(folder, "*.yaml"))
        {
            var result = ConfigParser.ParseFile(file);
            Assert.False(result.HasErrors, string.Join(System.Environment.NewLine, result.Diagnostics));
            Assert.All(result.Diagnostics, d => Assert.Contains("is a Kubernetes resource, not mesh configuration", d.Message, StringComparison.Ordinal));
        }

        // The ConfigMap's files are the mesh's configuration: valid, without a finding.
        foreach (var (name, yaml) in ConfigMapFiles())
        {
            var result = ConfigParser.Parse(yaml, name);
            Assert.Empty(result.Diagnostics);
            Assert.NotEmpty(result.Resources);
        }
    }

    [Fact]
    public async Task TheControlPlaneAndAWorkload_RunWithTheManifestsSettings_AndTheWorkloadJoinsOverMutualTls()
    {
        // The API server's resources and its reviews of pods' tokens, over TLS that only the cluster's CA vouches for,
        // to the control plane's token.
        using var clusterCa = new ExternalCa();
        await using var cluster = await FakeKubernetesApi.StartAsync(JwksServer.ControlPlaneToken, clusterCa);
        cluster.Reviewer = (token, audiences) => KubernetesTokens.Review(_clusterKey, "cluster-key", token, audiences);
        cluster.Put("apis/networking.istio.io/v1/destinationrules", """{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"shop"},"spec":{"host":"reviews","trafficPolicy":{"loadBalancer":{"simple":"LEAST_REQUEST"}}}}""");
        cluster.Put("api/v1/namespaces", """{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}""");
        var controlPlane = await StartControlPlaneAsync(cluster, clusterCa);
        await using var _ = controlPlane;
        var addresses = controlPlane.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var secure = new Uri(addresses.Single(a => a.StartsWith("https://", StringComparison.Ordinal)));
        var admin = new Uri(addresses.Single(a => a.StartsWith("http://", StringComparison.Ordinal)));

        // Prometheus' annotations scrape without the token; the rest of the admin port needs it.
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(admin, "/metrics"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(new Uri(admin, "/debug/registry"))).StatusCode);
        await Eventually.TrueAsync(async () => (await http.GetAsync(new Uri(admin, "/healthz/ready"))).IsSuccessStatusCode, "the readiness probe passes");

        var workload = await StartWorkloadAsync(secure, admin);
        await using var __ = workload;
        Assert.Contains(controlPlane.Services.GetRequiredService<MeshKit.ControlPlane.Sources.IConfigStore>().Current.Resources, r => r.Kind == "DestinationRule" && r.Namespace == "shop" && r.Source.File == "kubernetes/DestinationRule/shop/reviews");

        // The root ConfigMap the workload's manifest mounts is the control plane's to keep: it is in its namespace.
        await Eventually.TrueAsync(() => cluster.Get("api/v1/configmaps", "shop", "meshkit-root-cert") is not null, "the root ConfigMap is written");
        Assert.Contains("BEGIN CERTIFICATE", cluster.Get("api/v1/configmaps", "shop", "meshkit-root-cert")!["data"]!["root-cert.pem"]!.GetValue<string>(), StringComparison.Ordinal);
        var registry = controlPlane.Services.GetRequiredService<IWorkloadRegistry>();
        await Eventually.TrueAsync(() => registry.Workloads.Count == 1, "the workload registered");
        var registered = registry.Workloads.Single();
        Assert.Equal(("reviews", "shop", "reviews", "v1"), (registered.Service, registered.Namespace, registered.ServiceAccount, registered.Labels["version"]));
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/reviews", registered.Identity);
        Assert.Equal(["istio-ca"], Assert.Single(cluster.Reviews).Audiences);
        Assert.Equal(9080u, registered.Ports.Single().ServicePort);

        // A call to the Service's name and port goes through the mesh, over mutual TLS (the ConfigMap's STRICT).
        var client = workload.Services.GetRequiredService<IHttpClientFactory>().CreateClient();
        await Eventually.TrueAsync(async () => (await client.GetAsync("http://reviews.shop:9080/")).IsSuccessStatusCode, "the workload reaches itself");
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/reviews", await client.GetStringAsync("http://reviews.shop:9080/"));
    }

    private async Task<WebApplication> StartControlPlaneAsync(FakeKubernetesApi cluster, ExternalCa clusterCa)
    {
        var container = Container(Manifest("controlplane.yaml").Single(d => Scalar(d, "kind") == "Deployment"));
        var config = Directory.CreateDirectory(Path.Combine(_scratch, "config")).FullName;
        foreach (var (name, yaml) in ConfigMapFiles())
        {
            File.WriteAllText(Path.Combine(config, name), yaml);
        }

        // The arguments as written, but the pod's paths and ports: the scratch folders, and ports of the system's choice.
        var replacements = new Dictionary<string, string>
        {
            ["in-cluster"] = cluster.Address.ToString(),
            ["/etc/meshkit/config"] = config,
            ["/var/lib/meshkit/ca"] = Path.Combine(_scratch, "ca"),
            ["https://0.0.0.0:15012"] = "https://127.0.0.1:0",
            ["http://0.0.0.0:15014"] = "http://127.0.0.1:0",
        };
        var args = Scalars(container, "args").Select(a => replacements.GetValueOrDefault(a, a)).ToList();
        foreach (var flag in args.Where(a => a.StartsWith("--", StringComparison.Ordinal)))
        {
            Assert.True(ControlPlaneApp.Switches.ContainsKey(flag), $"{flag} is no switch of the control plane's");
        }

        // Its environment, as configuration keys (MESHKIT_ControlPlane__ServingNames__0 is ControlPlane:ServingNames:0).
        foreach (var (name, value) in Environment(container, secret: AdminToken))
        {
            Assert.StartsWith("MESHKIT_ControlPlane__", name, StringComparison.Ordinal);
            var key = name["MESHKIT_".Length..].Replace("__", ":", StringComparison.Ordinal);
            Assert.NotNull(typeof(ControlPlaneOptions).GetProperty(key.Split(':')[1]));
            args.Add($"--{key}={value}");
        }

        // What the kubelet mounts in every pod: its service-account token and the cluster's CA.
        args.Add($"--ControlPlane:KubernetesApiTokenFile={clusterCa.WritePem("token", JwksServer.ControlPlaneToken)}");
        args.Add($"--ControlPlane:KubernetesApiCaFile={clusterCa.WritePem("ca.crt", clusterCa.Root.ExportCertificatePem())}");
        var app = ControlPlaneApp.Build([.. args]);
        await app.StartAsync();
        return app;
    }

    private async Task<WebApplication> StartWorkloadAsync(Uri controlPlane, Uri admin)
    {
        var deployment = Manifest("reviews.yaml").Single(d => Scalar(d, "kind") == "Deployment");
        var pod = Map(Map(deployment, "spec"), "template");
        var podSpec = Map(pod, "spec");
        var container = Container(deployment);
        var ns = Scalar(Map(deployment, "metadata"), "namespace");

        // What the kubelet would mount where the container mounts it: the pod's projected service-account token (signed
        // by the cluster's key), the mesh's root (the ConfigMap the docs tell to make from meshctl ca root), and
        // the downward API's files.
        var mounts = Items(container, "volumeMounts", m => (Name: Scalar(m, "name"), Path: Scalar(m, "mountPath")));
        var volumes = ((YamlSequenceNode)podSpec.Children[new YamlScalarNode("volumes")]).Children.Cast<YamlMappingNode>().ToDictionary(v => Scalar(v, "name"));
        var paths = new Dictionary<string, string>();
        foreach (var (name, mountPath) in mounts)
        {
            var local = Directory.CreateDirectory(Path.Combine(_scratch, name)).FullName;
            paths[mountPath] = local;
            var volume = volumes[name];
            if (volume.Children.ContainsKey(new YamlScalarNode("projected")))
            {
                var projected = Map(Assert.Single(Items(Map(volume, "projected"), "sources", source => source)), "serviceAccountToken");
                var token = KubernetesTokens.Token(_clusterKey, "cluster-key", ns, Scalar(podSpec, "serviceAccountName"), audience: Scalar(projected, "audience"));
                File.WriteAllText(Path.Combine(local, Scalar(projected, "path")), token);
                continue;
            }

            if (volume.Children.ContainsKey(new YamlScalarNode("configMap")))
            {
                Assert.Equal("meshkit-root-cert", Scalar(Map(volume, "configMap"), "name"));
                // As meshctl ca root prints it.
                using var http = new HttpClient();
                using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(admin, "/ca/root"));
                request.Headers.Authorization = new("Bearer", AdminToken);
                using var response = await http.SendAsync(request);
                File.WriteAllText(Path.Combine(local, "root-cert.pem"), await response.EnsureSuccessStatusCode().Content.ReadAsStringAsync());
                continue;
            }

            foreach (var item in ((YamlSequenceNode)Map(volume, "downwardAPI").Children[new YamlScalarNode("items")]).Children.Cast<YamlMappingNode>())
            {
                var text = Scalar(Map(item, "fieldRef"), "fieldPath") switch
                {
                    "metadata.labels" => string.Concat(Map(Map(pod, "metadata"), "labels").Children.Append(new(new YamlScalarNode("pod-template-hash"), new YamlScalarNode("7d9c6b5f4")))
                        .Select(l => $"{((YamlScalarNode)l.Key).Value}=\"{((YamlScalarNode)l.Value).Value}\"\n")),
                    "metadata.namespace" => Scalar(Map(deployment, "metadata"), "namespace"),
                    var other => throw new InvalidOperationException($"no downward API file for {other}"),
                };
                File.WriteAllText(Path.Combine(local, Scalar(item, "path")), text);
            }
        }

        var settings = new Dictionary<string, string?>();
        foreach (var (name, value) in Environment(container, fieldRefs: new() { ["spec.serviceAccountName"] = Scalar(podSpec, "serviceAccountName") }))
        {
            if (!name.StartsWith("Mesh__", StringComparison.Ordinal))
            {
                continue; // the application's own (ASPNETCORE_HTTP_PORTS): Kestrel listens on 127.0.0.1 here
            }

            var key = name["Mesh__".Length..];
            Assert.NotNull(typeof(MeshOptions).GetProperty(key));
            settings[$"Mesh:{key}"] = key switch
            {
                // The control plane's Service, on its TLS port, under a name its certificate carries.
                "ControlPlaneAddress" => Assert.IsType<string>(ExpectControlPlane(value, controlPlane)),
                _ when value.StartsWith('/') => paths.Where(p => value.StartsWith(p.Key, StringComparison.Ordinal)).Select(p => p.Value + value[p.Key.Length..]).Single(),
                _ => value,
            };
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddMesh();
        var app = builder.Build();
        app.UseMesh();
        app.MapGet("/", (HttpContext context) => MeshKit.Security.MeshPeer.Of(context)?.ToString() ?? "plain");
        await app.StartAsync();
        return app;
    }

    // The manifest's control-plane URL names the control plane's Service and its TLS port, which its certificate names.
    private string ExpectControlPlane(string written, Uri running)
    {
        var url = new Uri(written);
        var controlPlane = Manifest("controlplane.yaml");
        var service = controlPlane.Single(d => Scalar(d, "kind") == "Service");
        Assert.Equal($"{Scalar(Map(service, "metadata"), "name")}.{Scalar(Map(service, "metadata"), "namespace")}.svc", url.Host);
        Assert.Contains(url.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), Items(Map(service, "spec"), "ports", p => Scalar(p, "port")));
        Assert.Contains(Environment(Container(controlPlane.Single(d => Scalar(d, "kind") == "Deployment")), secret: AdminToken), e => e.Value == url.Host);
        return running.ToString();
    }

    private static IEnumerable<(string Name, string Yaml)> ConfigMapFiles() =>
        Map(Manifest("controlplane.yaml").Single(d => Scalar(d, "kind") == "ConfigMap"), "data").Children
            .Select(e => (((YamlScalarNode)e.Key).Value!, ((YamlScalarNode)e.Value).Value!));

    private static List<YamlMappingNode> Manifest(string name)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(Path.Combine(RepositoryRoot(), "samples", "Kubernetes", name));
        stream.Load(reader);
        return [.. stream.Documents.Select(d => (YamlMappingNode)d.RootNode)];
    }

    private static YamlMappingNode Container(YamlMappingNode deployment) =>
        (YamlMappingNode)((YamlSequenceNode)Map(Map(Map(deployment, "spec"), "template"), "spec").Children[new YamlScalarNode("containers")]).Children.Single();

    // A container's env: literal values, a secret's (the given one), and the downward API's fields (the given ones).
    private static List<(string Name, string Value)> Environment(YamlMappingNode container, string? secret = null, Dictionary<string, string>? fieldRefs = null) =>
        Items(container, "env", e =>
        {
            var name = Scalar(e, "name");
            if (e.Children.TryGetValue(new YamlScalarNode("value"), out var literal))
            {
                return (name, ((YamlScalarNode)literal).Value!);
            }

            var from = Map(e, "valueFrom");
            return from.Children.ContainsKey(new YamlScalarNode("secretKeyRef"))
                ? (name, secret ?? throw new InvalidOperationException($"{name} is a secret"))
                : (name, fieldRefs![Scalar(Map(from, "fieldRef"), "fieldPath")]);
        });

    private static List<string> Scalars(YamlMappingNode node, string key) =>
        [.. ((YamlSequenceNode)node.Children[new YamlScalarNode(key)]).Children.Select(n => ((YamlScalarNode)n).Value!)];

    private static List<T> Items<T>(YamlMappingNode node, string key, Func<YamlMappingNode, T> read) =>
        [.. ((YamlSequenceNode)node.Children[new YamlScalarNode(key)]).Children.Cast<YamlMappingNode>().Select(read)];

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node.Children[new YamlScalarNode(key)];

    private static string Scalar(YamlMappingNode node, string key) => ((YamlScalarNode)node.Children[new YamlScalarNode(key)]).Value!;

    private static string RepositoryRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "MeshKit.sln")))
        {
            root = root.Parent;
        }

        return Assert.IsType<DirectoryInfo>(root).FullName;
    }
}
