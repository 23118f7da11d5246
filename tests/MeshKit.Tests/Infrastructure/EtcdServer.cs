using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// Real etcd members on loopback (ports picked free, data in a temporary folder), one process each, so a test can kill
/// and restart a member. etcd comes from the distribution (<c>etcd-server</c>); when it is missing and this runs as
/// root with apt-get, it is installed once, as <c>.ci/run</c> does.
/// </summary>
public sealed class EtcdServer : IAsyncDisposable
{
    private static readonly SemaphoreSlim InstallLock = new(1, 1);
    private readonly Member[] _members;
    private readonly string _directory;

    private EtcdServer(Member[] members, string directory)
    {
        _members = members;
        _directory = directory;
    }

    /// <summary>Gets the client URLs of every member, comma-separated (the form of ControlPlane:EtcdEndpoints).</summary>
    public string Endpoints => string.Join(",", _members.Select(m => m.ClientUrl));

    public int Count => _members.Length;

    public static async Task<EtcdServer> StartAsync(int members = 1)
    {
        var binary = await FindOrInstallAsync();
        var directory = Directory.CreateTempSubdirectory("meshkit-etcd-").FullName;
        var all = Enumerable.Range(0, members).Select(i => new Member($"m{i}", FreePorts.Next(), FreePorts.Next(), Path.Combine(directory, $"m{i}"))).ToArray();
        var cluster = string.Join(",", all.Select(m => $"{m.Name}=http://127.0.0.1:{m.PeerPort}"));
        var server = new EtcdServer(all, directory);
        foreach (var member in all)
        {
            member.Start(binary, cluster, "new");
        }

        await server.WaitHealthyAsync();
        return server;
    }

    /// <summary>Kills a member (SIGKILL: no clean leave).</summary>
    public void Kill(int member) => _members[member].Kill();

    /// <summary>Starts a killed member again with its data: it rejoins and catches up.</summary>
    public async Task RestartAsync(int member)
    {
        var binary = await FindOrInstallAsync();
        var cluster = string.Join(",", _members.Select(m => $"{m.Name}=http://127.0.0.1:{m.PeerPort}"));
        _members[member].Start(binary, cluster, "existing");
        await Eventually.TrueAsync(() => IsHealthyAsync(_members[member]), $"etcd member {member} healthy again", TimeSpan.FromSeconds(60));
    }

    /// <summary>Reads a member's key count under a prefix from that member alone (serializable read): whether it caught up.</summary>
    public async Task<long> CountOnMemberAsync(int member, string prefix)
    {
        using var http = new HttpClient();
        var key = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(prefix));
        var end = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(MeshKit.ControlPlane.Store.EtcdCluster.RangeEnd(prefix)));
        using var response = await http.PostAsync($"{_members[member].ClientUrl}/v3/kv/range",
            new StringContent($$"""{"key":"{{key}}","range_end":"{{end}}","count_only":true,"serializable":true}"""));
        var json = await response.Content.ReadFromJsonAsync<System.Text.Json.JsonElement>();
        return json.TryGetProperty("count", out var count) ? long.Parse(count.GetString()!, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in _members)
        {
            member.Kill();
        }

        await Task.Yield();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task WaitHealthyAsync()
    {
        foreach (var member in _members)
        {
            await Eventually.TrueAsync(() => IsHealthyAsync(member), $"etcd member {member.Name} healthy", TimeSpan.FromSeconds(60));
        }
    }

    private static async Task<bool> IsHealthyAsync(Member member)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        try
        {
            var body = await http.GetStringAsync($"{member.ClientUrl}/health");
            return body.Contains("\"true\"", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private static async Task<string> FindOrInstallAsync()
    {
        await InstallLock.WaitAsync();
        try
        {
            if (Find() is { } found)
            {
                return found;
            }

            if (File.Exists("/usr/bin/apt-get") && Environment.UserName == "root")
            {
                var install = Process.Start(new ProcessStartInfo("/usr/bin/apt-get", "install -y --no-install-recommends etcd-server")
                {
                    Environment = { ["DEBIAN_FRONTEND"] = "noninteractive" },
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                })!;
                await Task.WhenAll(install.StandardOutput.ReadToEndAsync(), install.StandardError.ReadToEndAsync(), install.WaitForExitAsync());
            }

            return Find() ?? throw new InvalidOperationException("etcd is not installed and could not be installed: install the 'etcd-server' package (or put etcd on PATH)");
        }
        finally
        {
            InstallLock.Release();
        }
    }

    private static string? Find() =>
        new[] { "/usr/bin/etcd", "/usr/local/bin/etcd" }
            .Concat((Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries).Select(p => Path.Combine(p, "etcd")))
            .FirstOrDefault(File.Exists);

    private sealed class Member(string name, int clientPort, int peerPort, string dataDirectory)
    {
        private Process? _process;

        public string Name { get; } = name;

        public int PeerPort { get; } = peerPort;

        public string ClientUrl { get; } = $"http://127.0.0.1:{clientPort}";

        public void Start(string binary, string cluster, string state)
        {
            var info = new ProcessStartInfo(binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var arg in new[]
            {
                "--name", Name, "--data-dir", dataDirectory,
                "--listen-client-urls", ClientUrl, "--advertise-client-urls", ClientUrl,
                "--listen-peer-urls", $"http://127.0.0.1:{PeerPort}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{PeerPort}",
                "--initial-cluster", cluster, "--initial-cluster-state", state, "--initial-cluster-token", "meshkit-test",
                "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap", "--log-level", "error",
            })
            {
                info.ArgumentList.Add(arg);
            }

            _process = Process.Start(info)!;
            _process.OutputDataReceived += (_, _) => { };
            _process.ErrorDataReceived += (_, _) => { };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public void Kill()
        {
            if (_process is { HasExited: false } process)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }

            _process?.Dispose();
            _process = null;
        }
    }
}
