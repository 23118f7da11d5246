namespace MeshKit.Tests.DependencyInjection;

/// <summary>The options a workload starts with are checked at once, every problem reported together.</summary>
public sealed class MeshOptionsValidatorTests
{
    [Fact]
    public void NegativeTrustedProxies_AreRefused_WithTheOthersProblems()
    {
        var result = new MeshOptionsValidator().Validate(null, new MeshOptions { ServiceName = "reviews", ControlPlaneAddress = new Uri("http://127.0.0.1:15010"), NumTrustedProxies = -1, AccessLogSampling = 2 });

        Assert.True(result.Failed);
        Assert.Contains("Mesh:NumTrustedProxies -1 must be 0 or more.", result.Failures!);
        Assert.Contains("Mesh:AccessLogSampling 2 must be between 0 and 1.", result.Failures!);
        Assert.True(new MeshOptionsValidator().Validate(null, new MeshOptions { ServiceName = "reviews", ControlPlaneAddress = new Uri("http://127.0.0.1:15010"), NumTrustedProxies = 2 }).Succeeded);
    }
}
