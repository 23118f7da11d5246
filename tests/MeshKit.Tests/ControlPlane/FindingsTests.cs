using MeshKit.ControlPlane.Discovery;
using MeshKit.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Tests.ControlPlane;

/// <summary>The control plane's cross-resource findings, which depend on the registry as well as the config.</summary>
public sealed class FindingsTests : MeshTestBase
{
    [Fact]
    public async Task AHostNoServiceHas_IsReportedOnlyOnceSomethingIsRegistered()
    {
        var publisher = ControlPlane.Services.GetRequiredService<MeshStatePublisher>();
        await Eventually.TrueAsync(() => publisher.Current is not null, "first publish");
        var version = publisher.Current!.Version;
        ControlPlane.WriteConfig("reviews.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: reviews }
            spec:
              hosts: [reviews]
              http: [{ timeout: 2s, route: [{ destination: { host: reviews } }] }]
            """);
        await Eventually.TrueAsync(() => publisher.Current!.Version > version, "the route is published");
        Assert.Equal(0, publisher.Current!.WorkloadCount);

        // Started before its workloads, the control plane knows no service at all: every host would be "unknown".
        Assert.DoesNotContain(publisher.Current!.Mesh.Diagnostics, d => d.Path == "spec.hosts[0]");

        // Once workloads register, a host none of them serves is worth saying.
        await StartAsync("productpage", "v1");
        await Eventually.TrueAsync(() => publisher.Current!.WorkloadCount == 1, "productpage registered");
        var finding = Assert.Single(publisher.Current!.Mesh.Diagnostics, d => d.Path == "spec.hosts[0]");
        Assert.Contains("host 'reviews.default.svc.cluster.local' names no known service yet", finding.Message, StringComparison.Ordinal);
        Assert.Equal((5, 11), (finding.Line, finding.Column));
    }
}
