using MeshKit.Snapshot;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Telemetry;

/// <summary>The access-log filter as a workload receives it: compiled once per config version, or the version NACKed.</summary>
public sealed class AccessLogFilterTests
{
    private static readonly Dictionary<string, string> Labels = new() { ["app"] = "reviews" };

    private static MeshSnapshot Build(string? clientFilter)
    {
        var yaml = """
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh-default, namespace: istio-system }
            spec:
              accessLogging: [{ match: { mode: SERVER }, filter: { expression: "response.code >= 500" } }]
            """;
        var resources = PushedResources.For(yaml, Labels);
        if (clientFilter is not null)
        {
            PushedResources.SetClientAccessLogFilter(resources, clientFilter);
        }

        return SnapshotBuilder.Build(resources, new SourceWorkload("default", Labels), "1", ready: true);
    }

    [Fact]
    public void TheFilters_AreCompiledIntoTheSnapshot_PerSide()
    {
        var snapshot = Build(clientFilter: null);

        Assert.Null(snapshot.ClientAccessLogFilter);
        Assert.Equal("response.code >= 500", snapshot.ServerAccessLogFilter?.Text);
        Assert.Equal("request.method == 'GET'", Build("request.method == 'GET'").ClientAccessLogFilter?.Text);
    }

    [Fact]
    public void AFilterTheWorkloadCannotCompile_FailsTheVersion()
    {
        var error = Assert.Throws<MeshConfigException>(() => Build("request.verb == 'GET'"));

        Assert.Contains("access log filter 'request.verb == 'GET'': column 1: unknown attribute 'request.verb'", error.Message, StringComparison.Ordinal);
    }
}
