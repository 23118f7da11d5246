using Grpc.Core;
using Grpc.Net.Client;
using MeshKit.Config.Compilation;
using MeshKit.Protocol.V1;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.ControlPlane;

/// <summary>The discovery protocol as a raw gRPC client sees it, against the real control plane.</summary>
public sealed class DiscoveryProtocolTests : IAsyncLifetime
{
    private TestControlPlane _controlPlane = null!;
    private GrpcChannel _channel = null!;

    public async Task InitializeAsync()
    {
        _controlPlane = await TestControlPlane.StartAsync(configure: o => o.RegistrationGrace = TimeSpan.FromSeconds(30));
        _channel = GrpcChannel.ForAddress(_controlPlane.DiscoveryAddress);
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _controlPlane.DisposeAsync();
    }

    private static WorkloadAnnouncement Workload(string service, string ns = "default", uint port = 1000)
    {
        var w = new WorkloadAnnouncement { Service = service, Namespace = ns, ServiceAccount = service, InstanceId = $"{service}-{ns}-{port}", Address = "127.0.0.1", MeshkitVersion = "test" };
        w.Ports.Add(new WorkloadPort { Name = "http", TargetPort = port, ServicePort = 80, Protocol = "http" });
        return w;
    }

    private sealed class Stream(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call) : IDisposable
    {
        public async Task<DiscoveryResponse> NextAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.True(await call.ResponseStream.MoveNext(timeout.Token), "the stream ended");
            return call.ResponseStream.Current;
        }

        /// <summary>Reads (and ACKs) until every type arrived and the routes hold <paramref name="host"/>; returns the accumulated state.</summary>
        public async Task<Dictionary<string, DiscoveryResponse>> InitialAsync(string? host = null)
        {
            var responses = new Dictionary<string, DiscoveryResponse>();
            while (responses.Count < ResourceTypes.All.Count
                || (host is not null && !responses[ResourceTypes.Routes].Resources.Any(r => r.Name == host)))
            {
                var response = await NextAsync();
                if (responses.TryGetValue(response.TypeUrl, out var held))
                {
                    var merged = held.Resources.Where(r => !response.RemovedResources.Contains(r.Name) && !response.Resources.Any(n => n.Name == r.Name)).ToList();
                    response = response.Clone();
                    response.Resources.AddRange(merged);
                }

                responses[response.TypeUrl] = response;
                await AckAsync(response);
            }

            return responses;
        }

        public Task AckAsync(DiscoveryResponse response, string? error = null) => call.RequestStream.WriteAsync(new DiscoveryRequest
        {
            TypeUrl = response.TypeUrl,
            ResponseNonce = response.Nonce,
            VersionInfo = response.SystemVersionInfo,
            ErrorDetail = error is null ? null : new ErrorDetail { Message = error },
        });

        public Task CloseAsync() => call.RequestStream.CompleteAsync();

        public void Dispose() => call.Dispose();
    }

    private async Task<Stream> ConnectAsync(WorkloadAnnouncement workload, params ResourceVersions[] held)
    {
        var call = new MeshDiscovery.MeshDiscoveryClient(_channel).StreamResources();
        var hello = new DiscoveryRequest { Workload = workload };
        hello.InitialResourceVersions.AddRange(held);
        await call.RequestStream.WriteAsync(hello);
        return new Stream(call);
    }

    private async Task<int> RegisteredAsync() => (await _controlPlane.GetAdminJsonAsync("/debug/registry")).GetArrayLength();

    [Fact]
    public async Task FirstResponses_CarryEveryType_ThenOnlyChangedResourcesAreResent()
    {
        using var a = await ConnectAsync(Workload("a"));
        var initial = await a.InitialAsync("a.default.svc.cluster.local");
        using var b = await ConnectAsync(Workload("b", port: 2000));
        await b.InitialAsync("b.default.svc.cluster.local");

        // a learns about b: exactly b's two resources change, nothing about a is resent.
        var clusters = await a.NextAsync();
        Assert.Equal(ResourceTypes.Cluster, clusters.TypeUrl);
        Assert.Equal(["b.default.svc.cluster.local"], clusters.Resources.Select(r => r.Name));
        await a.AckAsync(clusters);
        var routes = await a.NextAsync();
        Assert.Equal(ResourceTypes.Routes, routes.TypeUrl);
        Assert.Equal(["b.default.svc.cluster.local"], routes.Resources.Select(r => r.Name));
        Assert.True(long.Parse(routes.SystemVersionInfo, System.Globalization.CultureInfo.InvariantCulture) > long.Parse(initial[ResourceTypes.Routes].SystemVersionInfo, System.Globalization.CultureInfo.InvariantCulture));
        await a.AckAsync(routes);

        // b leaves cleanly: a is told to remove it.
        await b.CloseAsync();
        var removed = await a.NextAsync();
        Assert.Equal(["b.default.svc.cluster.local"], removed.RemovedResources);
        Assert.Empty(removed.Resources);
    }

    [Fact]
    public async Task Reconnect_WithHeldVersions_ResendsNothingUnchanged()
    {
        using var first = await ConnectAsync(Workload("a"));
        var initial = await first.InitialAsync("a.default.svc.cluster.local");
        first.Dispose();

        var held = initial.Select(kv =>
        {
            var versions = new ResourceVersions { TypeUrl = kv.Key };
            foreach (var r in kv.Value.Resources)
            {
                versions.Versions[r.Name] = r.Version;
            }

            return versions;
        }).ToArray();
        using var resumed = await ConnectAsync(Workload("a"), held);

        // Only a change produces a response: the new service, alone.
        _controlPlane.WriteConfig("se.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: ext }\nspec:\n  hosts: [api.example.com]\n  ports: [{ number: 80, name: http }]\n  resolution: DNS\n");
        var next = await resumed.NextAsync();
        Assert.Equal(ResourceTypes.Cluster, next.TypeUrl);
        Assert.Equal(["api.example.com"], next.Resources.Select(r => r.Name));
    }

    [Fact]
    public async Task Workload_ReceivesOnlyWhatItsNamespaceCanSee()
    {
        _controlPlane.WriteConfig("se.yaml", """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: { name: private, namespace: team-a }
            spec:
              hosts: [private.example.com]
              exportTo: ["."]
              ports: [{ number: 80, name: http }]
              resolution: DNS
            """);
        await Task.Delay(400);
        using var inside = await ConnectAsync(Workload("x", "team-a"));
        using var outside = await ConnectAsync(Workload("y", "team-b", port: 2000));

        var insideRoutes = (await inside.InitialAsync())[ResourceTypes.Routes].Resources.Select(r => r.Name).ToList();
        var outsideRoutes = (await outside.InitialAsync())[ResourceTypes.Routes].Resources.Select(r => r.Name).ToList();

        Assert.Contains("private.example.com", insideRoutes);
        Assert.DoesNotContain("private.example.com", outsideRoutes);
    }

    [Fact]
    public async Task Nack_IsRecorded_AndTheRegistryFollowsTheStreamLifetime()
    {
        using var a = await ConnectAsync(Workload("a"));
        var initial = await a.InitialAsync();
        Assert.Equal(1, await RegisteredAsync());

        using var b = await ConnectAsync(Workload("b", port: 2000));
        var delta = await a.NextAsync();
        await a.AckAsync(delta, error: "cannot apply: test");
        await Eventually.TrueAsync(async () =>
        {
            var status = await _controlPlane.GetAdminJsonAsync("/debug/connections");
            return status.GetProperty("connections").EnumerateArray().Any(c => c.GetProperty("lastNack").GetString()?.Contains("cannot apply: test", StringComparison.Ordinal) == true);
        }, "the NACK shows in the connection status");

        // A broken stream keeps the registration for the grace period; a clean close removes it at once.
        a.Dispose();
        await Task.Delay(500);
        Assert.Equal(2, await RegisteredAsync());
        await b.CloseAsync();
        await Eventually.TrueAsync(async () => await RegisteredAsync() == 1, "b leaves the registry on a clean close");
        Assert.NotEmpty(initial);
    }

    [Fact]
    public async Task FirstMessageWithoutAnnouncement_IsRejected()
    {
        var call = new MeshDiscovery.MeshDiscoveryClient(_channel).StreamResources();
        await call.RequestStream.WriteAsync(new DiscoveryRequest { TypeUrl = ResourceTypes.Routes });
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("announcement", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AStreamNotYetAnnounced_WhenTheControlPlaneStops_EndsUnavailable_NotAsAHandlerError()
    {
        // Before, the handler's cancellation escaped it: the workload saw Unknown ("exception was thrown by handler")
        // and the control plane logged an error for every such stream at each restart.
        var call = new MeshDiscovery.MeshDiscoveryClient(_channel).StreamResources();
        await Task.Delay(TimeSpan.FromSeconds(1)); // the handler is waiting for the announcement
        await _controlPlane.StopAsync();

        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
    }
}
