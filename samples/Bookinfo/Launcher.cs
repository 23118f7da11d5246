using System.Diagnostics;

namespace Bookinfo;

/// <summary>Starts the control plane and every Bookinfo service as separate processes on loopback, and stops them all cleanly.</summary>
internal static class Launcher
{
    private static readonly (string Role, string Version)[] Workloads =
        [("details", "v1"), ("ratings", "v1"), ("reviews", "v1"), ("reviews", "v2"), ("reviews", "v3"), ("ext-authz", "v1"), ("productpage", "v1")];

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Contains("--help") || args.Contains("-h"))
        {
            Console.WriteLine("""
                Runs the Bookinfo sample mesh on loopback: a MeshKit control plane and productpage, details,
                reviews v1/v2/v3 and ratings, each in its own process, and the external authorization service
                of Istio's ext-authz task (ext-authz).

                Options:
                  --port N                productpage port (default 9080)
                  --control-plane-port N  discovery port (default 15010; TLS is this + 2, admin this + 4)
                  --ca-dir DIR            the control plane's CA folder (default: the user's local app data, meshkit/ca)
                  --plaintext             run without certificates (no mutual TLS, no peer identities)
                  --config-dir DIR        the control plane's config folder (default: a new temporary folder
                                          seeded with config/base; copy config/tasks files into it to apply them)
                  --duration SECONDS      stop by itself after this long (for scripts); default: until Ctrl+C
                  --stop-on-stdin-close   stop when standard input closes (for programs that run the sample)
                """);
            return 0;
        }

        var port = Args.GetInt(args, "--port", 9080);
        var cpPort = Args.GetInt(args, "--control-plane-port", 15010);

        // A port already taken (often by a Bookinfo still running) would fail a child with a bind error among the
        // others' logs: said once, up front.
        foreach (var (taken, what, option) in new[] { (port, "the product page", "--port"), (cpPort, "the control plane's discovery port", "--control-plane-port"), (cpPort + 2, "the control plane's TLS port", "--control-plane-port"), (cpPort + 4, "the control plane's admin port", "--control-plane-port") })
        {
            if (InUse(taken))
            {
                Console.Error.WriteLine($"Port {taken} ({what}) is in use on 127.0.0.1: is Bookinfo already running? Stop it, or choose other ports with {option}.");
                return 1;
            }
        }

        var duration = Args.GetInt(args, "--duration", 0);
        var configDir = Args.Get(args, "--config-dir") ?? SeedConfig();
        var plaintext = args.Contains("--plaintext");

        // Services join on the TLS port with a join token each (mutual TLS, identities bookinfo-<service>), unless
        // --plaintext asks for the plain-text port.
        var controlPlane = plaintext ? $"http://127.0.0.1:{cpPort}" : $"https://127.0.0.1:{cpPort + 2}";
        var admin = $"http://127.0.0.1:{cpPort + 4}";

        using var stop = new CancellationTokenSource();
        var stopped = false; // asked to stop (Ctrl+C, standard input closed), as opposed to running out of --duration
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stopped = true;
            stop.Cancel();
        };
        if (duration > 0)
        {
            stop.CancelAfter(TimeSpan.FromSeconds(duration));
        }

        // A program that runs us stops us cleanly by closing our standard input.
        if (args.Contains("--stop-on-stdin-close"))
        {
            StdinWatcher.OnClose(() =>
            {
                stopped = true;
                stop.Cancel();
            });
        }

        var children = new List<Child>();
        try
        {
            string[] controlPlaneArgs = ["--config-dir", configDir, "--listen", $"http://127.0.0.1:{cpPort}", "--secure-listen", $"https://127.0.0.1:{cpPort + 2}", "--admin-listen", $"http://127.0.0.1:{cpPort + 4}"];
            if (Args.Get(args, "--ca-dir") is { } caDir)
            {
                controlPlaneArgs = [.. controlPlaneArgs, "--ca-dir", caDir];
            }

            children.Add(Child.Start("controlplane", "-", controlPlaneArgs));
            if (!await WaitForPortAsync(cpPort, children, stop.Token))
            {
                if (stopped)
                {
                    return 0; // stopped while starting: not a failure to report
                }

                Console.Error.WriteLine($"The control plane did not start listening on port {cpPort}; see the output above.");
                return 1;
            }

            foreach (var (role, version) in Workloads)
            {
                var listen = role == "productpage" ? port : 0;
                var environment = new Dictionary<string, string>();
                if (!plaintext)
                {
                    // The token goes in the environment, not on the command line where any user could read it.
                    environment["Mesh__JoinToken"] = await JoinTokenAsync(admin, $"bookinfo-{role}", children, stop.Token);
                }

                children.Add(Child.Start(role, version, ["--version", version, "--port", listen.ToString(System.Globalization.CultureInfo.InvariantCulture), "--control-plane", controlPlane], environment));
            }

            var page = $"http://127.0.0.1:{port}/productpage";
            if (!await WaitForAsync(page, children, stop.Token))
            {
                if (stopped)
                {
                    return 0;
                }

                Console.Error.WriteLine("Bookinfo did not come up; see the output above.");
                return 1;
            }

            Console.WriteLine($"""

                Bookinfo is running in a MeshKit mesh.
                  product page:   {page}   (log in as 'jason' to send the end-user header)
                  control plane:  {controlPlane}  (debug: {admin}/debug/registry)
                  security:       {(plaintext ? "plain text (--plaintext)" : "mutual TLS with SPIFFE identities cluster.local/ns/default/sa/bookinfo-<service>")}
                  config folder:  {configDir}
                    copy a file from samples/Bookinfo/config/tasks into it to route live, e.g. virtual-service-all-v1.yaml
                  processes:      {string.Join(", ", children.Select(c => c.Name))}
                {(duration > 0 ? $"Stopping after {duration} s." : "Press Ctrl+C to stop.")}
                """);
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }

            foreach (var dead in children.Where(c => c.Process.HasExited))
            {
                Console.Error.WriteLine($"{dead.Name} exited early with code {dead.Process.ExitCode}");
            }

            return children.Any(c => c.Process.HasExited) ? 1 : 0;
        }
        catch (OperationCanceledException) when (stopped)
        {
            return 0; // stopped while a join token was being made
        }
        finally
        {
            Console.WriteLine("Stopping Bookinfo...");

            // Services first (they leave the registry with a clean close and drain), the control plane once they
            // are gone: stopped together, it would see their streams break instead.
            var services = children.Skip(1).ToList();
            foreach (var child in services)
            {
                child.RequestStop();
            }

            await Task.WhenAll(services.Select(child => child.WaitAsync(TimeSpan.FromSeconds(15))));
            if (children.Count > 0)
            {
                children[0].RequestStop();
                await children[0].WaitAsync(TimeSpan.FromSeconds(15));
            }

            Console.WriteLine("Stopped.");
        }
    }

    private static string SeedConfig()
    {
        var dir = Directory.CreateTempSubdirectory("bookinfo-mesh-config-").FullName;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "config", "base"), "*.yaml"))
        {
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        }

        return dir;
    }

    private static async Task<bool> WaitForPortAsync(int port, List<Child> children, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30) && !cancellationToken.IsCancellationRequested && !children.Any(c => c.Process.HasExited))
        {
            try
            {
                using var socket = new System.Net.Sockets.TcpClient();
                await socket.ConnectAsync(System.Net.IPAddress.Loopback, port, cancellationToken);
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(100, CancellationToken.None);
            }
        }

        return false;
    }

    /// <summary>Asks the control plane's admin port for a join token, as <c>meshctl token create</c> does.</summary>
    private static async Task<string> JoinTokenAsync(string admin, string serviceAccount, List<Child> children, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await http.PostAsync(new Uri($"{admin}/tokens?namespace=default&serviceAccount={serviceAccount}&ttl=720h"), null, cancellationToken);
                response.EnsureSuccessStatusCode();
                using var json = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
                return json.RootElement.GetProperty("token").GetString()!;
            }
            catch (HttpRequestException) when (deadline.Elapsed < TimeSpan.FromSeconds(30) && !children.Any(c => c.Process.HasExited))
            {
                await Task.Delay(200, cancellationToken);
            }
        }
    }

    private static bool InUse(int port)
    {
        try
        {
            var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
            listener.Start();
            listener.Stop();
            return false;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return true;
        }
    }

    private static async Task<bool> WaitForAsync(string url, List<Child> children, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60) && !cancellationToken.IsCancellationRequested)
        {
            if (children.Any(c => c.Process.HasExited))
            {
                return false;
            }

            try
            {
                var body = await http.GetStringAsync(url, cancellationToken);
                if (body.Contains("Book Details", StringComparison.Ordinal) && body.Contains("Book Reviews", StringComparison.Ordinal) && !body.Contains("unavailable", StringComparison.Ordinal))
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
            }

            await Task.Delay(250, CancellationToken.None);
        }

        return false;
    }

    private sealed class Child
    {
        private Child(string name, Process process)
        {
            Name = name;
            Process = process;
        }

        public string Name { get; }

        public Process Process { get; }

        public static Child Start(string role, string version, string[] args, IReadOnlyDictionary<string, string>? environment = null)
        {
            var name = version == "-" ? role : $"{role}-{version}";
            var start = new ProcessStartInfo(Environment.ProcessPath!)
            {
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
            {
                start.ArgumentList.Add(typeof(Launcher).Assembly.Location);
            }

            start.ArgumentList.Add("--role");
            start.ArgumentList.Add(role);
            foreach (var arg in args)
            {
                start.ArgumentList.Add(arg);
            }

            foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            {
                start.Environment[key] = value;
            }

            var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {name}");
            return new Child(name, process);
        }

        // Children stop when their standard input closes: a clean shutdown on every OS.
        public void RequestStop()
        {
            try
            {
                Process.StandardInput.Close();
            }
            catch (IOException)
            {
            }
        }

        public async Task WaitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await Process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Process.Kill(entireProcessTree: true);
            }
        }
    }
}
