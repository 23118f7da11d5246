using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using MeshKit.ControlPlane;
using MeshKit.ControlPlane.Discovery;
using Microsoft.Extensions.DependencyInjection;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using Microsoft.AspNetCore.Builder;

namespace MeshKit.Benchmarks;

/// <summary>
/// The control plane at scale, measured end to end: N workloads as lightweight discovery streams in this process
/// against a real control plane (real gRPC, loopback), then a config change and the time until each workload ACKs it;
/// plus certificate signings per second. Not a BenchmarkDotNet benchmark: the unit is a whole fleet.
/// </summary>
internal static class ControlPlaneScale
{
    public static async Task<IReadOnlyList<Result>> RunAsync(int workloads, TextWriter log, int changes = 3)
    {
        var results = new List<Result>();
        var dir = Directory.CreateTempSubdirectory("meshkit-scale-").FullName;
        WriteRoutes(dir, 1);
        var adminPort = FreePort();

        // A connect and a disconnect log line per workload would time the console, not the control plane.
        var app = ControlPlaneApp.Build(["--Logging:LogLevel:Default=Warning"], o =>
        {
            o.ConfigDirectory = dir;
            o.CaDirectory = Path.Combine(dir, ".ca");
            o.Listen = "http://127.0.0.1:0";
            o.SecureListen = string.Empty;
            o.AdminListen = $"http://127.0.0.1:{adminPort}";
            o.StartupSyncDelay = TimeSpan.Zero;
            o.ConfigPollInterval = TimeSpan.FromMilliseconds(200);
        });
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Urls.First());
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var before = GC.GetTotalMemory(forceFullCollection: true);

            // A few HTTP/2 connections carry all streams, as many workloads would share a node's NIC.
            var channels = Enumerable.Range(0, Math.Max(1, workloads / 500)).Select(_ => GrpcChannel.ForAddress(address, new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
            })).ToArray();
            var fleet = Enumerable.Range(0, workloads).Select(i => new FakeWorkload(i, channels[i % channels.Length])).ToArray();

            // Connected means in sync: every workload has ACKed the state that holds the whole fleet (every endpoint of
            // every service), not merely its first config.
            var publisher = app.Services.GetRequiredService<MeshStatePublisher>();
            var tracker = app.Services.GetRequiredService<ConnectionTracker>();
            var connect = Stopwatch.StartNew();
            await Task.WhenAll(fleet.Select(w => w.StartAsync()));
            await InSyncAsync(publisher, tracker, workloads, log);
            connect.Stop();
            results.Add(new Result($"controlplane.cold_connect.{workloads}", connect.Elapsed.TotalMilliseconds, "ms", "until every workload has ACKed the state holding all endpoints"));
            log.WriteLine($"{workloads} workloads connected and in sync in {connect.Elapsed.TotalMilliseconds:F0} ms");

            GC.Collect();
            GC.WaitForPendingFinalizers();
            var after = GC.GetTotalMemory(forceFullCollection: true);
            results.Add(new Result($"controlplane.memory_per_workload.{workloads}", (after - before) / 1024.0 / workloads, "KiB",
                "process heap growth per connected workload (control plane and the in-process client streams together)"));

            // A route change every workload can see, applied as `meshctl apply` does (the admin API): time until each
            // one ACKs it. The first change after start runs the push path for the first time (tier-0 JIT code,
            // first-use allocations) and takes several times longer than the following ones: it is reported on its own,
            // and the percentiles are of the three after it. A file written into the config directory instead waits
            // for the debounce's quiet period (100 ms) on top.
            using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{adminPort}") };
            var latencies = new List<double>();
            for (var round = 2; round <= changes + 2; round++)
            {
                var target = round;
                var current = fleet.Select(w => w.LatestVersion).Max();
                // Changes a few debounce periods apart: one following another within 100 ms is debounced as a burst.
                await Task.Delay(300);
                var changed = Stopwatch.StartNew();
                using var applied = await admin.PostAsync("/config?name=routes.yaml", new StringContent(Routes(round)));
                applied.EnsureSuccessStatusCode();
                var acks = await Task.WhenAll(fleet.Select(async w =>
                {
                    await w.Version(v => v > current);
                    return changed.Elapsed.TotalMilliseconds;
                }));
                if (round == 2)
                {
                    results.Add(new Result($"controlplane.first_change_to_ack.max.{workloads}", acks.Max(), "ms", "the first change after start, to the last ACK (not in the percentiles)"));
                }
                else
                {
                    latencies.AddRange(acks);
                }

                log.WriteLine($"change {round}: last ACK after {acks.Max():F0} ms");
            }

            latencies.Sort();
            results.Add(new Result($"controlplane.change_to_ack.p50.{workloads}", Percentile(latencies, 0.50), "ms", "meshctl apply (admin API) to ACK"));
            results.Add(new Result($"controlplane.change_to_ack.p99.{workloads}", Percentile(latencies, 0.99), "ms", "meshctl apply (admin API) to ACK"));

            foreach (var w in fleet)
            {
                await w.StopAsync();
            }

            foreach (var c in channels)
            {
                c.Dispose();
            }
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }

        return results;
    }

    /// <summary>
    /// Runs one part of the quick run (<c>--fleet</c>, <c>--memory</c>, <c>--signings</c>) in a child process of this
    /// program, with nothing else of the run in its heap or on the cores, and reads back its figures.
    /// </summary>
    public static async Task<IReadOnlyList<Result>> RunIsolatedAsync(string[] arguments, bool serverGc, TextWriter log)
    {
        var start = new ProcessStartInfo { RedirectStandardOutput = true, UseShellExecute = false };
        var self = Environment.ProcessPath!;
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.FileName = self;
            start.ArgumentList.Add(typeof(ControlPlaneScale).Assembly.Location);
        }
        else
        {
            start.FileName = self;
        }

        foreach (var arg in arguments.Append("--json"))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DOTNET_gcServer"] = serverGc ? "1" : "0";
        using var child = Process.Start(start)!;
        var results = new List<Result>();
        while (await child.StandardOutput.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("RESULT ", StringComparison.Ordinal))
            {
                results.Add(System.Text.Json.JsonSerializer.Deserialize<Result>(line["RESULT ".Length..])!);
            }
            else
            {
                log.WriteLine(line);
            }
        }

        await child.WaitForExitAsync();
        if (child.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{string.Join(' ', arguments)}' exited with {child.ExitCode}");
        }

        return results;
    }

    /// <summary>ECDSA P-256 workload certificates signed per second on one thread (what the CA does per CSR).</summary>
    public static Result Signings(TimeSpan duration)
    {
        using var root = CertificateProfile.CreateRoot("cluster.local", DateTimeOffset.UtcNow, TimeSpan.FromDays(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = CertificateProfile.CreateSigningRequest(key, new SpiffeId("cluster.local", "default", "bench"));
        var id = new SpiffeId("cluster.local", "default", "bench");

        // Warm-up, unmeasured: a long-running CA signs with optimized code, not with the JIT's first tiers.
        var warmUp = Stopwatch.StartNew();
        while (warmUp.Elapsed < TimeSpan.FromSeconds(2))
        {
            _ = CertificateProfile.IssueDer(CertificateProfile.ReadSigningRequest(csr), id, root, DateTimeOffset.UtcNow, TimeSpan.FromHours(24));
        }

        var count = 0;
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < duration)
        {
            // What the CA does per CSR: the request read and its signature checked, the certificate signed (as DER).
            var publicKey = CertificateProfile.ReadSigningRequest(csr);
            _ = CertificateProfile.IssueDer(publicKey, id, root, DateTimeOffset.UtcNow, TimeSpan.FromHours(24));
            count++;
        }

        return new Result("ca.signings_per_second_per_core", count / watch.Elapsed.TotalSeconds, "1/s", "CSR verification and ECDSA P-256 signing, one thread");
    }

    private static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    /// <summary>Waits until the published state holds all <paramref name="workloads"/> and every stream has ACKed it.</summary>
    private static async Task InSyncAsync(MeshStatePublisher publisher, ConnectionTracker tracker, int workloads, TextWriter log)
    {
        var report = Stopwatch.StartNew();
        var progress = Stopwatch.StartNew();
        var last = string.Empty;
        while (true)
        {
            if (report.Elapsed > TimeSpan.FromSeconds(10))
            {
                report.Restart();
                var current = publisher.Current;
                var status = $"state {current?.Version} holds {current?.WorkloadCount} workloads; {tracker.Connections.Count} streams, {tracker.Connections.Count(c => c.StateVersion == current?.Version)} at it, {tracker.Connections.Count(c => c.HasPending)} awaiting an ACK";
                log.WriteLine("  " + status);
                if (status != last)
                {
                    (last, progress) = (status, Stopwatch.StartNew());
                }
                else if (progress.Elapsed > TimeSpan.FromMinutes(2))
                {
                    // A stream that failed (its registration refused, say) never comes back here: say so, do not wait forever.
                    throw new InvalidOperationException($"the fleet stopped converging two minutes ago at {workloads} workloads: {status}");
                }
            }

            if (publisher.Current is { } state && state.WorkloadCount == workloads && tracker.Connections.Count == workloads
                && tracker.Connections.All(c => c.StateVersion == state.Version && !c.HasPending))
            {
                return;
            }

            await Task.Delay(50);
        }
    }

    internal static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static void WriteRoutes(string dir, int round)
    {
        var temp = Path.Combine(dir, ".routes.tmp");
        File.WriteAllText(temp, Routes(round));
        File.Move(temp, Path.Combine(dir, "routes.yaml"), overwrite: true);
    }

    private static string Routes(int round) => $$"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { name: svc-0, namespace: default }
            spec:
              hosts: [svc-0]
              http: [{ headers: { request: { set: { x-round: "{{round}}" } } }, route: [{ destination: { host: svc-0 } }] }]
            """;

    /// <summary>One workload's stream: announces, ACKs every response, and remembers the newest system version.</summary>
    private sealed class FakeWorkload(int index, GrpcChannel channel)
    {
        private readonly Lock _lock = new();
        private readonly List<(Func<long, bool> Condition, TaskCompletionSource Done)> _waiters = [];
        private AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse>? _call;
        private Task? _reader;
        private long _version;

        public long LatestVersion => Interlocked.Read(ref _version);

        public async Task StartAsync()
        {
            _call = new MeshDiscovery.MeshDiscoveryClient(channel).StreamResources();
            var announcement = new WorkloadAnnouncement
            {
                Service = $"svc-{index % 100}",
                Namespace = "default",
                ServiceAccount = "default",
                InstanceId = $"bench-{index}",
                Address = $"10.{index / 65536 % 256}.{index / 256 % 256}.{index % 256}",
            };
            announcement.Ports.Add(new WorkloadPort { Name = "http", TargetPort = 8080, ServicePort = 9080, Protocol = "http" });
            await _call.RequestStream.WriteAsync(new DiscoveryRequest { Workload = announcement });
            _reader = Task.Run(ReadAsync);
        }

        public Task Version(Func<long, bool> condition)
        {
            lock (_lock)
            {
                if (condition(LatestVersion))
                {
                    return Task.CompletedTask;
                }

                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiters.Add((condition, done));
                return done.Task;
            }
        }

        public async Task StopAsync()
        {
            if (_call is null)
            {
                return;
            }

            // Cancelling ends the stream at once; a clean close is not what is measured here.
            _call.Dispose();
            try
            {
                await _reader!;
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or OperationCanceledException or IOException)
            {
            }
        }

        private async Task ReadAsync()
        {
            var write = new SemaphoreSlim(1, 1);
            while (await _call!.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false))
            {
                var response = _call.ResponseStream.Current;
                await write.WaitAsync();
                try
                {
                    await _call.RequestStream.WriteAsync(new DiscoveryRequest { TypeUrl = response.TypeUrl, ResponseNonce = response.Nonce, VersionInfo = response.SystemVersionInfo });
                }
                catch (InvalidOperationException)
                {
                    return; // stopping: our side of the stream is already complete
                }
                finally
                {
                    write.Release();
                }

                if (response.TypeUrl.EndsWith("ServiceRoutes", StringComparison.Ordinal) && long.TryParse(response.SystemVersionInfo, out var v))
                {
                    Interlocked.Exchange(ref _version, v);
                    lock (_lock)
                    {
                        foreach (var waiter in _waiters.Where(w => w.Condition(v)).ToList())
                        {
                            waiter.Done.TrySetResult();
                            _waiters.Remove(waiter);
                        }
                    }
                }
            }
        }
    }
}

/// <summary>One figure of a benchmark run.</summary>
internal sealed record Result(string Name, double Value, string Unit, string? Note = null);
