using System.Diagnostics;
using System.Globalization;
using MeshKit.ControlPlane;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Benchmarks;

/// <summary>
/// A long run that looks for what grows and for calls lost to churn: a real control plane, a caller and a pool of
/// servers under STRICT mutual TLS with certificates that renew every minute, while servers are replaced one by one
/// (new instances, new ports: endpoint churn), the routing and DestinationRule change every two seconds (snapshot churn:
/// balancers, outlier detection, connection pools), the control plane restarts every 90 s and the caller keeps four
/// calls going. Every sample forces a full collection and reads the live heap, the open file descriptors and the
/// threads; after the warm-up they must stay flat. Everything is in this one process, so a leak in any part (library,
/// control plane, CA) shows, and every call must succeed.
/// </summary>
internal static class Soak
{
    private const int Servers = 4;
    private static readonly TimeSpan RestartEvery = TimeSpan.FromSeconds(90);

    public static async Task<IReadOnlyList<Result>> RunAsync(TimeSpan duration, TextWriter log)
    {
        var dir = Directory.CreateTempSubdirectory("meshkit-soak-").FullName;
        var owned = new Stack<IAsyncDisposable>();
        using var stop = new CancellationTokenSource();
        WebApplication? controlPlane = null;
        try
        {
            WriteConfig(dir, 0);
            Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");

            // Restarted now and then on the same port, with the CA in the same folder, as a deployment restarts it.
            var port = ControlPlaneScale.FreePort();
            controlPlane = await StartControlPlaneAsync(dir, port, TimeSpan.Zero);
            var secure = new Uri($"https://127.0.0.1:{port}");

            // Join tokens come from the running control plane's CA (the same keys across restarts); while it is down,
            // a server about to start waits for the next one.
            var ca = Completed(Ca(controlPlane));

            async Task<WebApplication> Start(string service, string version)
            {
                var token = (await Volatile.Read(ref ca).Task).CreateJoinToken("default", service, TimeSpan.FromHours(1));
                return await LoadComparison.StartAppAsync(secure, o =>
                {
                    o.ServiceName = service;
                    o.ServiceAccount = service;
                    o.Labels["version"] = version;
                    o.JoinToken = token;
                    o.CertificateLifetime = TimeSpan.FromMinutes(2);
                    o.DrainDuration = TimeSpan.FromMilliseconds(500);
                }, null);
            }

            var caller = await Start("soak-caller", "v1");
            owned.Push(caller);
            var servers = new Queue<WebApplication>();
            for (var i = 0; i < Servers; i++)
            {
                servers.Enqueue(await Start("soak-server", i % 2 == 0 ? "v1" : "v2"));
            }

            var client = LoadComparison.Factory(caller);
            var target = new Uri("http://soak-server:9080/bench/1");
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!await AnswersAsync(client, target))
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new InvalidOperationException("soak-server never answered");
                }

                await Task.Delay(200);
            }

            long calls = 0, failed = 0, replaced = 0, changes = 0;
            var statuses = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
            var traffic = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    string outcome;
                    try
                    {
                        using var response = await client.GetAsync(target, stop.Token);
                        outcome = ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
                        if (!response.IsSuccessStatusCode)
                        {
                            Interlocked.Increment(ref failed);
                        }
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                        break;
                    }
                    catch (HttpRequestException e)
                    {
                        outcome = e.GetType().Name;
                        Interlocked.Increment(ref failed);
                    }

                    statuses.AddOrUpdate(outcome, 1, static (_, n) => n + 1);
                    Interlocked.Increment(ref calls);
                }
            })).ToArray();

            var churn = Task.Run(async () =>
            {
                var next = Servers;
                while (!stop.IsCancellationRequested)
                {
                    await Task.Delay(TimeSpan.FromSeconds(3));
                    if (stop.IsCancellationRequested)
                    {
                        break;
                    }

                    // The new one first, so the service always has endpoints: a rolling update.
                    servers.Enqueue(await Start("soak-server", next++ % 2 == 0 ? "v1" : "v2"));
                    var old = servers.Dequeue();
                    await old.StopAsync();
                    await old.DisposeAsync();
                    Interlocked.Increment(ref replaced);
                }
            });

            var config = Task.Run(async () =>
            {
                var version = 0;
                while (!stop.IsCancellationRequested)
                {
                    await Task.Delay(TimeSpan.FromSeconds(2));
                    WriteConfig(dir, ++version);
                    Interlocked.Increment(ref changes);
                }
            });

            long restarts = 0;
            var restart = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    await Task.Delay(RestartEvery);
                    if (stop.IsCancellationRequested)
                    {
                        break;
                    }

                    // Down for two seconds; the new one waits the default startup sync delay for the workloads to
                    // reconnect before its first push (its registry starts empty, as with the directory store).
                    var next = new TaskCompletionSource<MeshKit.ControlPlane.Ca.CertificateAuthority>(TaskCreationOptions.RunContinuationsAsynchronously);
                    Volatile.Write(ref ca, next);
                    var old = controlPlane!;
                    await old.StopAsync();
                    await old.DisposeAsync();
                    await Task.Delay(TimeSpan.FromSeconds(2));
                    var started = await StartControlPlaneAsync(dir, port, TimeSpan.FromSeconds(3));
                    Volatile.Write(ref controlPlane, started);
                    next.SetResult(Ca(started));
                    Interlocked.Increment(ref restarts);
                }
            });

            var samples = new List<SoakSample>();
            var clock = Stopwatch.StartNew();
            var interval = TimeSpan.FromSeconds(Math.Clamp(duration.TotalSeconds / 20, 5, 30));
            while (clock.Elapsed < duration)
            {
                await Task.Delay(interval);
                if (new[] { churn, config, restart }.FirstOrDefault(t => t.IsCompleted) is { } broken)
                {
                    // The run's own machinery stopped (a cancellation ends an async lambda as canceled, not faulted):
                    // what it would measure from here on means nothing.
                    await broken;
                    throw new InvalidOperationException("a churn loop ended");
                }

                // The load comparison's record of the connections its apps served (a check of its own) is not the mesh's.
                LoadComparison.Connections.Clear();
                var sample = Sample(clock.Elapsed);
                samples.Add(sample);
                log.WriteLine(FormattableString.Invariant(
                    $"{sample.At:mm\\:ss} heap {sample.Heap / 1048576.0,7:0.00} MB  fds {sample.Files,4}  threads {sample.Threads,3}  calls {Interlocked.Read(ref calls),8}  failed {Interlocked.Read(ref failed),5}  replaced {Interlocked.Read(ref replaced),4}  changes {Interlocked.Read(ref changes),4}  restarts {Interlocked.Read(ref restarts),2}"));
            }

            stop.Cancel();
            await Task.WhenAll(traffic);
            await churn;
            await config;
            await restart;
            while (servers.TryDequeue(out var server))
            {
                await server.DisposeAsync();
            }

            log.WriteLine("outcomes: " + string.Join(", ", statuses.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key} {s.Value}")));

            // Growth from the first sample after a third of the run (warm-up: pools, JIT, caches filled) to the last,
            // as a least-squares slope over those samples, so one sample's noise does not decide it.
            var steady = samples.Where(s => s.At >= duration / 3).ToList();
            var minutes = (steady[^1].At - steady[0].At).TotalMinutes;
            return
            [
                new("soak.duration", clock.Elapsed.TotalMinutes, "min"),
                new("soak.calls", calls, "calls"),
                new("soak.failed_calls", failed, "calls"),
                new("soak.server_replacements", replaced, "servers"),
                new("soak.config_changes", changes, "changes"),
                new("soak.control_plane_restarts", restarts, "restarts"),
                new("soak.heap_end", steady[^1].Heap / 1048576.0, "MB"),
                new("soak.heap_slope", Slope(steady, s => s.Heap / 1048576.0), "MB/min"),
                new("soak.fds_slope", Slope(steady, s => s.Files), "fds/min"),
                new("soak.threads_end", steady[^1].Threads, "threads"),
                new("soak.steady_minutes", minutes, "min"),
            ];
        }
        finally
        {
            stop.Cancel();
            while (owned.TryPop(out var item))
            {
                await item.DisposeAsync();
            }

            if (Volatile.Read(ref controlPlane) is { } last)
            {
                await last.DisposeAsync();
            }

            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static MeshKit.ControlPlane.Ca.CertificateAuthority Ca(WebApplication controlPlane) =>
        controlPlane.Services.GetRequiredService<MeshKit.ControlPlane.Ca.CertificateAuthority>();

    private static TaskCompletionSource<T> Completed<T>(T value)
    {
        var done = new TaskCompletionSource<T>();
        done.SetResult(value);
        return done;
    }

    private static async Task<WebApplication> StartControlPlaneAsync(string dir, int port, TimeSpan startupSyncDelay)
    {
        var app = ControlPlaneApp.Build([], o =>
        {
            o.ConfigDirectory = dir;
            o.CaDirectory = Path.Combine(dir, ".ca");
            o.Listen = string.Empty;
            o.SecureListen = $"https://127.0.0.1:{port}";
            o.AdminListen = string.Empty;
            o.StartupSyncDelay = startupSyncDelay;
            o.RegistrationGrace = TimeSpan.FromSeconds(2);
        });
        await app.StartAsync();
        return app;
    }

    private static async Task<bool> AnswersAsync(HttpClient client, Uri target)
    {
        try
        {
            using var response = await client.GetAsync(target);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            // Not in the caller's config yet: the name passes through to DNS.
            return false;
        }
    }

    private static SoakSample Sample(TimeSpan at)
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);

        // What that full collection left alive.
        var info = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        var heap = info.HeapSizeBytes - info.FragmentedBytes;
        var files = Directory.Exists("/proc/self/fd") ? Directory.GetFileSystemEntries("/proc/self/fd").Length : -1;
        using var process = Process.GetCurrentProcess();
        return new(at, heap, files, process.Threads.Count);
    }

    /// <summary>The least-squares slope of a figure over the samples' times, per minute.</summary>
    private static double Slope(IReadOnlyList<SoakSample> samples, Func<SoakSample, double> value)
    {
        var at = samples.Select(s => s.At.TotalMinutes).ToArray();
        var y = samples.Select(value).ToArray();
        var (mx, my) = (at.Average(), y.Average());
        var num = at.Zip(y).Sum(p => (p.First - mx) * (p.Second - my));
        var den = at.Sum(x => (x - mx) * (x - mx));
        return den == 0 ? 0 : num / den;
    }

    private static void WriteConfig(string dir, int version)
    {
        // What changes each time: the split between subsets, the balancer, the pool limits and the route timeout, so
        // every push rebuilds routes, balancers, connection pools and outlier detection state.
        var weight = version * 17 % 101;
        var balancer = (version % 3) switch { 0 => "ROUND_ROBIN", 1 => "LEAST_REQUEST", _ => "RANDOM" };
        var text = string.Create(CultureInfo.InvariantCulture, $$"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: { name: soak-server }
            spec:
              host: soak-server
              trafficPolicy:
                loadBalancer: { simple: {{balancer}} }
                connectionPool: { http: { http2MaxRequests: {{100 + version % 7}}, idleTimeout: {{30 + version % 5}}s } }
                outlierDetection: { consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 5s }
              subsets:
              - { name: v1, labels: { version: v1 } }
              - { name: v2, labels: { version: v2 } }
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: soak-server }
            spec:
              hosts: [soak-server]
              http:
              - route:
                - { destination: { host: soak-server, subset: v1 }, weight: {{weight}} }
                - { destination: { host: soak-server, subset: v2 }, weight: {{100 - weight}} }
                retries: { attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure,reset" }
                timeout: {{5 + version % 3}}s
            ---
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: { name: default }
            spec: { mtls: { mode: STRICT } }
            ---
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: { name: soak-server }
            spec:
              selector: { matchLabels: { app: soak-server } }
              rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/soak-caller"] } }] }]
            """);
        var temp = Path.Combine(dir, ".mesh.yaml.tmp");
        File.WriteAllText(temp, text);
        File.Move(temp, Path.Combine(dir, "mesh.yaml"), overwrite: true);
    }

    private readonly record struct SoakSample(TimeSpan At, long Heap, int Files, int Threads);
}
