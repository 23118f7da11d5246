using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Samples;

/// <summary>The README's first command, as a user runs it: the Bookinfo launcher as a real process tree.</summary>
public sealed class BookinfoSampleTests
{
    private static readonly string SampleDirectory = Path.Combine(AppContext.BaseDirectory, "bookinfo");

    /// <summary>
    /// Puts a task's file into the live config folder as a deployment tool would: written beside it, then renamed over
    /// it. A plain overwrite can collide with the control plane reading the old file (the runtime's file locks on Unix
    /// refuse a writer while a reader has the file open).
    /// </summary>
    private static void Apply(string configDir, string task, string asName)
    {
        var temp = Path.Combine(configDir, "." + asName + ".tmp");
        File.Copy(Path.Combine(SampleDirectory, "config", "tasks", task), temp, overwrite: true);
        File.Move(temp, Path.Combine(configDir, asName), overwrite: true);
    }

    private static async Task<string> Page(HttpClient http, int port, string? user = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}/productpage");
        if (user is not null)
        {
            request.Headers.Add("Cookie", $"user={user}");
        }

        using var response = await http.SendAsync(request);
        return await response.Content.ReadAsStringAsync();
    }

    // Round robin can give the expected answer by chance before a change converges: ask for six in a row.
    private static Task Converged(Func<Task<bool>> check, string what, TimeSpan? timeout = null) => Eventually.TrueAsync(async () =>
    {
        for (var i = 0; i < 6; i++)
        {
            if (!await check())
            {
                return false;
            }
        }

        return true;
    }, what, timeout);

    private static string ServedBy(string page) => page.Contains("Reviews served by: ", StringComparison.Ordinal)
        ? page[(page.IndexOf("Reviews served by: ", StringComparison.Ordinal) + 19)..].Split('<')[0]
        : "error";

    private static string NewConfigDir()
    {
        var configDir = Directory.CreateTempSubdirectory("bookinfo-test-").FullName;
        foreach (var file in Directory.GetFiles(Path.Combine(SampleDirectory, "config", "base"), "*.yaml"))
        {
            File.Copy(file, Path.Combine(configDir, Path.GetFileName(file)));
        }

        return configDir;
    }

    /// <summary>Starts the launcher as the README's command does, collecting what it prints into <paramref name="output"/>.</summary>
    private static Process StartLauncher(int port, int controlPlanePort, string configDir, StringBuilder output, Action<string?>? onOutputLine = null)
    {
        var sample = Path.Combine(SampleDirectory, "Bookinfo.dll");
        Assert.True(File.Exists(sample), $"the sample is built next to the tests ({sample})");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { sample, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--control-plane-port", controlPlanePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--config-dir", configDir, "--ca-dir", configDir + "-ca", "--stop-on-stdin-close", "--duration", "300" })
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.AppendLine(e.Data);
            }

            onOutputLine?.Invoke(e.Data);
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
        return process;
    }

    /// <summary>Stops the launcher as a program that runs it does (closing its standard input); killed after a minute.</summary>
    private static async Task StopAsync(Process process)
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
            await process.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Launcher_StoppedWhileStarting_StopsCleanly_WithoutReportingAFailure()
    {
        // Ctrl+C (here: standard input closed) before the mesh is up is the user's choice, not a failed start.
        var output = new StringBuilder();
        using var process = StartLauncher(FreePorts.Next(), FreePorts.Next(), NewConfigDir(), output);
        await StopAsync(process);

        lock (output)
        {
            Assert.True(process.ExitCode == 0, output.ToString());
            Assert.Contains("Stopped.", output.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("did not", output.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Launcher_APortInUse_IsSaidUpFront_AndNothingStarts()
    {
        // As when a Bookinfo is still running: one clear line instead of a child's bind error among the logs.
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var taken = ((IPEndPoint)holder.LocalEndpoint).Port;
        var output = new StringBuilder();
        using var process = StartLauncher(taken, FreePorts.Next(), NewConfigDir(), output);
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        lock (output)
        {
            Assert.True(process.ExitCode == 1, output.ToString());
            Assert.Contains($"Port {taken} (the product page) is in use", output.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", output.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Launcher_StartsTheMesh_ServesTheProductPage_AndStopsCleanly()
    {
        var port = FreePorts.Next();
        var controlPlanePort = FreePorts.Next();
        var configDir = NewConfigDir();
        var output = new StringBuilder();
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var process = StartLauncher(port, controlPlanePort, configDir, output, line =>
        {
            if (line?.Contains("Bookinfo is running", StringComparison.Ordinal) == true)
            {
                running.TrySetResult();
            }
        });
        try
        {
            await running.Task.WaitAsync(TimeSpan.FromSeconds(120));

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
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

            // Each service serves Istio's metrics for Prometheus: productpage's calls to reviews over mutual TLS, by version.
            var stats = await http.GetStringAsync($"http://127.0.0.1:{port}/stats/prometheus");
            foreach (var version in new[] { "v1", "v2", "v3" })
            {
                Assert.Matches($"(?m)^istio_requests_total\\{{reporter=\"source\",source_workload=\"productpage-v1\",.*destination_workload=\"reviews-{version}\",.*response_code=\"200\".*\\}} [1-9][0-9]*$", stats);
            }

            // Istio's request routing task: everything to v1 (no stars), then jason to v2 (black stars).
            Apply(configDir, "virtual-service-all-v1.yaml", "reviews.yaml");
            await Converged(async () => ServedBy(await Page(http, port)) == "reviews-v1", "all reviews traffic goes to v1");
            for (var i = 0; i < 5; i++)
            {
                var v1Page = await Page(http, port);
                Assert.Equal("reviews-v1", ServedBy(v1Page));
                Assert.DoesNotContain("class=\"stars\"", v1Page, StringComparison.Ordinal);
            }

            Apply(configDir, "virtual-service-reviews-test-v2.yaml", "reviews.yaml");
            await Converged(async () => ServedBy(await Page(http, port, "jason")) == "reviews-v2", "jason is routed to v2");
            Assert.Contains("color:black", await Page(http, port, "jason"), StringComparison.Ordinal);
            Assert.Equal("reviews-v1", ServedBy(await Page(http, port)));

            // Traffic shifting: half to v3.
            Apply(configDir, "virtual-service-reviews-50-v3.yaml", "reviews.yaml");
            await Eventually.TrueAsync(async () => ServedBy(await Page(http, port)) == "reviews-v3", "the split reaches v3");
            var v3 = 0;
            for (var i = 0; i < 60; i++)
            {
                v3 += ServedBy(await Page(http, port)) == "reviews-v3" ? 1 : 0;
            }

            Assert.InRange(v3, 15, 45);

            // Request routing with Gateway API: an HTTPRoute attached to the reviews Service, to the version Services.
            Apply(configDir, "bookinfo-versions.yaml", "bookinfo-versions.yaml");
            Apply(configDir, "httproute-reviews-test-v2.yaml", "reviews.yaml");
            await Converged(async () => ServedBy(await Page(http, port, "jason")) == "reviews-v2", "the HTTPRoute routes jason to v2");
            await Converged(async () => ServedBy(await Page(http, port)) == "reviews-v1", "the HTTPRoute routes everyone else to v1");
            File.Delete(Path.Combine(configDir, "bookinfo-versions.yaml"));

            // Fault injection: ratings aborts for jason (reviews v2 for him shows the ratings error), then a 7 s delay
            // that outlasts productpage's timeout on reviews.
            Apply(configDir, "virtual-service-reviews-test-v2.yaml", "reviews.yaml");
            Apply(configDir, "virtual-service-ratings-test-abort.yaml", "ratings.yaml");
            await Converged(async () => (await Page(http, port, "jason")).Contains("Ratings service is currently unavailable", StringComparison.Ordinal), "jason sees the ratings error");
            Assert.DoesNotContain("currently unavailable", await Page(http, port), StringComparison.Ordinal);

            Apply(configDir, "virtual-service-ratings-test-delay.yaml", "ratings.yaml");
            await Eventually.TrueAsync(async () => (await Page(http, port, "jason")).Contains("Error fetching product reviews", StringComparison.Ordinal), "the delay makes productpage give up on reviews", TimeSpan.FromSeconds(60));
            Assert.Contains("William Shakespeare", await Page(http, port, "jason"), StringComparison.Ordinal);

            // Security tasks. Every service joined with a certificate of its own identity...
            File.Delete(Path.Combine(configDir, "ratings.yaml"));
            Apply(configDir, "virtual-service-all-v1.yaml", "reviews.yaml");
            var registry = await http.GetStringAsync($"http://127.0.0.1:{controlPlanePort + 4}/debug/registry");
            Assert.Contains("\"serviceAccount\":\"bookinfo-reviews\"", registry, StringComparison.Ordinal);

            // ...so STRICT mutual TLS changes nothing visible: every call is already mutual TLS.
            Apply(configDir, "peer-authentication-strict.yaml", "peer-authentication.yaml");
            await Task.Delay(TimeSpan.FromSeconds(1));
            await Converged(async () => (await Page(http, port)).Contains("Reviews served by: reviews-v1", StringComparison.Ordinal) && !(await Page(http, port)).Contains("unavailable", StringComparison.Ordinal), "the page works under STRICT");

            // Authorization: nothing allowed, then each service its callers (details and reviews: productpage's
            // identity; ratings: reviews').
            Apply(configDir, "authorization-policy-deny-all.yaml", "authz-deny-all.yaml");
            await Eventually.TrueAsync(async () => (await Page(http, port)).Contains("RBAC: access denied", StringComparison.Ordinal), "deny-all applies");
            Apply(configDir, "authorization-policy-viewers.yaml", "authz-viewers.yaml");
            Apply(configDir, "virtual-service-reviews-test-v2.yaml", "reviews.yaml");
            await Converged(async () => (await Page(http, port, "jason")).Contains("color:black", StringComparison.Ordinal), "the viewers' policies let the whole call graph through");
            Assert.DoesNotContain("unavailable", await Page(http, port, "jason"), StringComparison.Ordinal);

            // External authorization: the product page asks the ext-authz service (a CUSTOM policy) first.
            async Task<(HttpStatusCode Status, string Body, string? Result)> AskedAsync(string value)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}/productpage") { Headers = { { "x-ext-authz", value } } };
                using var response = await http.SendAsync(request);
                return (response.StatusCode, await response.Content.ReadAsStringAsync(), response.Headers.TryGetValues("x-ext-authz-check-result", out var r) ? r.Single() : null);
            }

            Apply(configDir, "authorization-policy-ext-authz.yaml", "authz-ext-authz.yaml");
            await Eventually.TrueAsync(async () => (await AskedAsync("deny")).Status == HttpStatusCode.Forbidden, "the CUSTOM policy applies");
            var denied = await AskedAsync("deny");
            Assert.Contains("denied by ext_authz", denied.Body, StringComparison.Ordinal);
            Assert.Equal("denied", denied.Result);
            var allowed = await AskedAsync("allow");
            Assert.Equal(HttpStatusCode.OK, allowed.Status);
            Assert.Contains("William Shakespeare", allowed.Body, StringComparison.Ordinal);
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
            await StopAsync(process);
        }

        Assert.Equal(0, process.ExitCode);
        lock (output)
        {
            Assert.Contains("Stopped.", output.ToString(), StringComparison.Ordinal);

            // The services left the registry with a clean close before the control plane stopped (stopped together,
            // the control plane saw their streams break).
            Assert.Contains("clean close: True", output.ToString(), StringComparison.Ordinal);
            Assert.DoesNotContain("clean close: False", output.ToString(), StringComparison.Ordinal);
        }

        using var probe = new TcpClient();
        await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(IPAddress.Loopback, port));
    }
}
