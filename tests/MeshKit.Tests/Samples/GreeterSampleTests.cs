using System.Diagnostics;

namespace MeshKit.Tests.Samples;

/// <summary>The gRPC sample as a user runs it: calls routed by method and by header, then a clean exit.</summary>
public sealed class GreeterSampleTests
{
    [Fact]
    public async Task GreeterSample_RoutesByMethodAndHeader()
    {
        var sample = Path.Combine(AppContext.BaseDirectory, "greeter", "Greeter.dll");
        Assert.True(File.Exists(sample), $"the sample is built next to the tests ({sample})");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(sample);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        var output = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(process.ExitCode == 0, output + await error);
        Assert.Contains("Hello Ada from greeter v1", output, StringComparison.Ordinal);
        Assert.Contains("Goodbye Ada from greeter v2", output, StringComparison.Ordinal);
        Assert.Contains("Hello Ada from greeter v2", output, StringComparison.Ordinal);
    }
}
