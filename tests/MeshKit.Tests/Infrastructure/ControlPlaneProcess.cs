using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// The control-plane executable as a separate process (the build output next to the tests), so that a test can kill
/// it outright (SIGKILL): no shutdown code runs, exactly as when a machine dies.
/// </summary>
public sealed class ControlPlaneProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;

    private ControlPlaneProcess(Process process, string directory, Uri discovery, Uri admin)
    {
        _process = process;
        _directory = directory;
        DiscoveryAddress = discovery;
        AdminAddress = admin;
    }

    public Uri DiscoveryAddress { get; }

    public Uri AdminAddress { get; }

    public static async Task<ControlPlaneProcess> StartAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var directory = Directory.CreateTempSubdirectory("meshkit-cp-process-").FullName;
        var discovery = new Uri($"http://127.0.0.1:{FreePorts.Next()}");
        var admin = new Uri($"http://127.0.0.1:{FreePorts.Next()}");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "meshkit-controlplane.dll"),
            "--listen", discovery.ToString().TrimEnd('/'), "--secure-listen", string.Empty, "--admin-listen", admin.ToString().TrimEnd('/'),
            "--config-dir", Path.Combine(directory, "config"), "--ca-dir", Path.Combine(directory, "ca"),
            "--startup-sync-delay", "00:00:00", "--debounce", "00:00:00.050",
        }.Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var started = new ControlPlaneProcess(process, directory, discovery, admin);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        await Eventually.TrueAsync(async () => process.HasExited
            ? throw new InvalidOperationException($"the control plane exited with {process.ExitCode}: {string.Join('\n', output.TakeLast(30))}")
            : (await http.GetAsync(new Uri(admin, "/healthz/ready"))).IsSuccessStatusCode, "the control-plane process is ready", TimeSpan.FromSeconds(60));
        return started;
    }

    /// <summary>Kills the process at once.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        await Task.Yield();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
