using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshKit.Tests.Samples;

/// <summary>The README's first command, as a user runs it: the Bookinfo launcher as a real process tree.</summary>
public sealed class BookinfoSampleTests
{
    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task Launcher_StartsTheMesh_ServesTheProductPage_AndStopsCleanly()
    {
        var sample = Path.Combine(AppContext.BaseDirectory, "bookinfo", "Bookinfo.dll");
        Assert.True(File.Exists(sample), $"the sample is built next to the tests ({sample})");
        var port = FreePort();
        var controlPlanePort = FreePort();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { sample, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--control-plane-port", controlPlanePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--stop-on-stdin-close", "--duration", "240" })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }

            if (e.Data?.Contains("Bookinfo is running", StringComparison.Ordinal) == true)
            {
                running.TrySetResult();
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await running.Task.WaitAsync(TimeSpan.FromSeconds(120));

            using var http = new HttpClient();
            var page = await http.GetStringAsync($"http://127.0.0.1:{port}/productpage");
            Assert.Contains("William Shakespeare", page, StringComparison.Ordinal);
            Assert.Contains("Reviews served by: reviews-v", page, StringComparison.Ordinal);
            Assert.DoesNotContain("unavailable", page, StringComparison.Ordinal);

            // No VirtualService: the reviews calls spread over v1, v2 and v3.
            var served = new HashSet<string>();
            for (var i = 0; i < 12; i++)
            {
                var body = await http.GetStringAsync($"http://127.0.0.1:{port}/productpage");
                served.Add(body[(body.IndexOf("Reviews served by: ", StringComparison.Ordinal) + 19)..].Split('<')[0]);
            }

            Assert.Equal(["reviews-v1", "reviews-v2", "reviews-v3"], served.Order());
        }
        catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
        {
            lock (output)
            {
                Assert.Fail($"{ex.GetType().Name}: {ex.Message}{Environment.NewLine}{output}");
            }
        }
        finally
        {
            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        Assert.Equal(0, process.ExitCode);
        lock (output)
        {
            Assert.Contains("Stopped.", output.ToString(), StringComparison.Ordinal);
        }

        using var probe = new TcpClient();
        await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(IPAddress.Loopback, port));
    }
}
