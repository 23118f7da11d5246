using System.Globalization;
using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MeshKit.Benchmarks;

// `--quick`: the short version of everything (a few minutes), written to benchmarks/results/latest.json and latest.md
// with every target marked met or not met (`--no-micro` skips the BenchmarkDotNet part, `--no-load` the end-to-end
// load comparison, `--small` the 10,000-workload fleet, `--tiny` runs a 50-workload fleet). Anything else goes to
// BenchmarkDotNet (e.g. --filter '*Security*'). `--load` runs only the end-to-end comparison and prints it.
// `--istio-otel` (with --quick or --load): Istio's metrics aggregated by the OpenTelemetry SDK instead of MeshKit's store.
LoadComparison.IstioThroughOpenTelemetry = args.Contains("--istio-otel");
if (args.Contains("--spin-signing"))
{
    // CA signing in a loop for a profiler to attach to.
    Console.WriteLine(ControlPlaneScale.Signings(TimeSpan.FromSeconds(args.Contains("--short") ? 4 : 25)).Value);
    return 0;
}

if (args.Contains("--spin-pipeline") || args.Contains("--spin-handler"))
{
    // The in-memory pipeline (or the outbound handler alone) in a loop for a profiler to attach to (dotnet-trace, perf).
    Func<Task> call, plain;
    PipelineBenchmarks? pipelineRun = null;
    if (args.Contains("--spin-handler"))
    {
        var handler = new MeshHandlerBenchmarks { Services = 10 };
        handler.Setup();
        (call, plain) = (handler.Mesh, handler.Plain);
    }
    else
    {
        var pipeline = new PipelineBenchmarks();
        pipeline.Setup();
        pipelineRun = pipeline;
        // `--metrics`: the mesh with Istio's metrics recorded by both sides (into MeshKit's store).
        (call, plain) = (args.Contains("--metrics") ? pipeline.MeshWithIstioMetrics : pipeline.Mesh, pipeline.Plain);
    }

    if (args.Contains("--bytes"))
    {
        // Exact bytes per call on this thread (the in-memory paths complete synchronously), mesh and plain.
        foreach (var (name, f) in new[] { ("plain", plain), ("mesh", call) })
        {
            // Long enough for the JIT's tier 1 (with dynamic PGO) to replace the first code: its escape analysis keeps
            // some objects off the heap that tier 0 allocates, and the target is about the code a server runs.
            var warm = DateTime.UtcNow.AddSeconds(3);
            while (DateTime.UtcNow < warm)
            {
                for (var i = 0; i < 1000; i++)
                {
                    await f();
                }
            }

            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
            {
                await f();
            }

            Console.WriteLine($"{name}: {(GC.GetAllocatedBytesForCurrentThread() - before) / 1000.0:F0} B per call");
        }

        if (args.Contains("--metrics") && pipelineRun is not null)
        {
            // The calls must have been recorded, by both reporters, or the figure above is not the one asked for.
            var stats = pipelineRun.IstioStatsText();
            foreach (var reporter in new[] { "source", "destination" })
            {
                if (!stats.Contains($"reporter=\"{reporter}\"", StringComparison.Ordinal))
                {
                    Console.Error.WriteLine($"no istio_requests_total with reporter=\"{reporter}\" was recorded");
                    return 1;
                }
            }
        }

        return 0;
    }

    // --plain spins the same setup without MeshKit, so the two allocation listings can be compared type by type.
    var spun = args.Contains("--plain") ? plain : call;
    using var allocations = args.Contains("--allocations") ? new AllocationSampler() : null;
    var until = DateTime.UtcNow.AddSeconds(args.Contains("--allocations") || args.Contains("--cpu") ? 10 : 30);
    var calls = 0L;
    var wall = System.Diagnostics.Stopwatch.StartNew();
    var cpu = ProcessorTime();
    while (DateTime.UtcNow < until)
    {
        for (var i = 0; i < 10_000; i++)
        {
            await spun();
        }

        calls += 10_000;
    }

    allocations?.Print(Console.Out, calls);
    if (args.Contains("--cpu"))
    {
        // The process's CPU per call, every thread's (work handed to the pool, and its threads' spinning, included),
        // against the wall time per call of the one calling thread.
        var used = ProcessorTime() - cpu;
        Console.WriteLine(FormattableString.Invariant($"{calls} calls: {wall.Elapsed.TotalMicroseconds / calls:F3} µs wall, {used.TotalMicroseconds / calls:F3} µs CPU per call"));
        if (args.Contains("--metrics"))
        {
            pipelineRun?.IstioStatsText(); // drains what is left
            var (deferred, inline) = PipelineBenchmarks.IstioReportPaths();
            Console.WriteLine($"Istio reports: {deferred} recorded by drains, {inline} inline (a ring was full)");
        }
    }

    static TimeSpan ProcessorTime()
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    return 0;
}

if (Array.IndexOf(args, "--fleet") is var fleetAt and >= 0)
{
    // One control-plane fleet run, printed: `--fleet 1000 [changes]` (more changes to profile the push path).
    var size = args.Length > fleetAt + 1 ? int.Parse(args[fleetAt + 1], CultureInfo.InvariantCulture) : 1000;
    var changes = args.Length > fleetAt + 2 ? int.Parse(args[fleetAt + 2], CultureInfo.InvariantCulture) : 3;
    var json = args.Contains("--json");
    foreach (var r in await ControlPlaneScale.RunAsync(size, Console.Out, changes))
    {
        Console.WriteLine(json ? "RESULT " + JsonSerializer.Serialize(r) : FormattableString.Invariant($"{r.Name,-45} {r.Value,12:0.###} {r.Unit}"));
    }

    return 0;
}

if (Array.IndexOf(args, "--soak") is var soakAt and >= 0)
{
    // `--soak MINUTES`: endpoint, config and certificate churn under traffic, sampled for growth (heap, descriptors, threads).
    var minutes = args.Length > soakAt + 1 ? double.Parse(args[soakAt + 1], CultureInfo.InvariantCulture) : 10;
    foreach (var r in await Soak.RunAsync(TimeSpan.FromMinutes(minutes), Console.Out))
    {
        Console.WriteLine(FormattableString.Invariant($"{r.Name,-30} {r.Value,12:0.###} {r.Unit}"));
    }

    return 0;
}

if (args.Contains("--memory") || args.Contains("--signings"))
{
    // Measured in a process of their own (the quick run starts one): nothing else of a run in the heap or on the cores.
    var m = args.Contains("--memory") ? LargeMesh.MeasureMemory(1000, 10) : ControlPlaneScale.Signings(TimeSpan.FromSeconds(3));
    Console.WriteLine(args.Contains("--json") ? "RESULT " + JsonSerializer.Serialize(m) : FormattableString.Invariant($"{m.Name} {m.Value:0.###} {m.Unit}"));
    if (args.Contains("--hold"))
    {
        // Time for dotnet-gcdump to attach; the build is held again for it to see.
        var held = LargeMesh.Build(1000, 10);
        await Task.Delay(TimeSpan.FromSeconds(40));
        GC.KeepAlive(held.Snapshot);
    }

    return 0;
}

if (args.Contains("--load"))
{
    // The end-to-end comparison alone, printed and not recorded: for profiling one change at a time.
    // `--load NAME SECONDS`: one path (plus direct) for a long slice, to attach a profiler to (`--markers` prints
    // a line as each measured slice starts and ends; NAME may list several paths, comma-separated; `--rounds N`).
    var at = Array.IndexOf(args, "--load");
    var only = args.Length > at + 1 && !args[at + 1].StartsWith("--", StringComparison.Ordinal) ? args[at + 1] : null;
    var seconds = args.Length > at + 2 && int.TryParse(args[at + 2], CultureInfo.InvariantCulture, out var s) ? s : 1;
    LoadComparison.Metrics = !args.Contains("--no-metrics");
    using var sampler = args.Contains("--allocations") ? new AllocationSampler() : null;
    AllocationSampler.Top = Array.IndexOf(args, "--allocations-top") is var top and >= 0 ? int.Parse(args[top + 1], CultureInfo.InvariantCulture) : AllocationSampler.Top;
    if (sampler is not null && only is not null)
    {
        // Only the named path's measured slices are sampled (not direct's, nor warm-ups).
        sampler.Paused = true;
        LoadComparison.SliceChanged = name => sampler.Paused = name != only;
    }
    else if (args.Contains("--markers"))
    {
        // A line when each measured slice starts and ends, for a script to attach a profiler to one path's slice.
        LoadComparison.SliceChanged = name => Console.WriteLine($"SLICE {name ?? "end"}");
    }

    var rounds = Array.IndexOf(args, "--rounds") is var r0 and >= 0 ? int.Parse(args[r0 + 1], CultureInfo.InvariantCulture) : only is null or "split" ? 6 : 1;
    foreach (var r in await LoadComparison.RunAsync(TimeSpan.FromSeconds(seconds), rounds, Console.Out, only))
    {
        Console.WriteLine(FormattableString.Invariant($"{r.Name,-40} {r.Value,12:0.###} {r.Unit}"));
    }

    sampler?.Print(Console.Out);

    return 0;
}

if (!args.Contains("--quick"))
{
    BenchmarkSwitcher.FromAssembly(typeof(MeshHandlerBenchmarks).Assembly).Run(args);
    return 0;
}

var results = new List<Result>();
var config = ManualConfig.Create(DefaultConfig.Instance).AddJob(Job.ShortRun).WithOptions(ConfigOptions.DisableOptimizationsValidator);
var micro = args.Contains("--no-micro") ? [] : BenchmarkRunner.Run([typeof(MeshHandlerBenchmarks), typeof(PipelineBenchmarks), typeof(RoutingBenchmarks), typeof(LoadBalancerBenchmarks), typeof(SessionBenchmarks), typeof(SecurityBenchmarks), typeof(MetricsBenchmarks), typeof(IstioStatsBenchmarks), typeof(AccessLogFilterBenchmarks)], config);
foreach (var summary in micro)
{
    foreach (var report in summary.Reports.Where(r => r.ResultStatistics is not null))
    {
        var name = $"{report.BenchmarkCase.Descriptor.Type.Name}.{report.BenchmarkCase.Descriptor.WorkloadMethod.Name}{Parameters(report)}";
        results.Add(new Result(name + ".mean", report.ResultStatistics!.Mean, "ns"));
        if (report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase) is { } bytes)
        {
            results.Add(new Result(name + ".allocated", bytes, "B"));
        }
    }
}

results.AddRange(await ControlPlaneScale.RunIsolatedAsync(["--memory"], serverGc: false, Console.Out));
if (!args.Contains("--no-load"))
{
    // Many short rounds rather than a few long ones: neighbouring slices are paired per round (see LoadComparison).
    results.AddRange(await LoadComparison.RunAsync(TimeSpan.FromSeconds(1), args.Contains("--tiny") ? 1 : 9, Console.Out));
}

results.AddRange(await ControlPlaneScale.RunIsolatedAsync(["--signings"], serverGc: false, Console.Out));
foreach (var n in args.Contains("--tiny") ? new[] { 50 } : args.Contains("--small") ? new[] { 1000 } : new[] { 1000, 10000 })
{
    // The control plane's executable runs with the server GC (the ASP.NET Core SDK's default); so does its fleet run.
    results.AddRange(await ControlPlaneScale.RunIsolatedAsync(["--fleet", n.ToString(CultureInfo.InvariantCulture), "3"], serverGc: true, Console.Out));
}

var targets = Targets.Evaluate(results);
var directory = Path.Combine(FindRoot(), "benchmarks", "results");
Directory.CreateDirectory(directory);
var machine = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
await File.WriteAllTextAsync(Path.Combine(directory, "latest.json"), JsonSerializer.Serialize(new
{
    date = DateTimeOffset.UtcNow,
    machine,
    results = results.Select(r => new { name = r.Name, value = Math.Round(r.Value, 3), unit = r.Unit, note = r.Note }),
    targets = targets.Select(t => new { name = t.Name, value = Math.Round(t.Value, 3), unit = t.Unit, target = t.Target, met = t.Met }),
}, new JsonSerializerOptions { WriteIndented = true }));
var table = new StringBuilder($"Machine: {machine}\n\n| target | value | goal | |\n|---|---:|---|---|\n");
foreach (var t in targets)
{
    table.Append(CultureInfo.InvariantCulture, $"| {t.Name} | {t.Value:0.###} {t.Unit} | {t.Target} | {(t.Met ? "met" : "**not met**")} |\n");
}

table.Append("\n| figure | value | unit |\n|---|---:|---|\n");
foreach (var r in results)
{
    table.Append(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Value:0.###} | {r.Unit} |\n");
}

await File.WriteAllTextAsync(Path.Combine(directory, "latest.md"), table.ToString());
Console.WriteLine(table);
return 0;

static string Parameters(BenchmarkReport report) =>
    report.BenchmarkCase.Parameters.Count == 0 ? string.Empty : "." + string.Join(".", report.BenchmarkCase.Parameters.Items.Select(p => $"{p.Name}{p.Value}"));

static string FindRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MeshKit.sln")))
    {
        dir = dir.Parent;
    }

    return dir?.FullName ?? Directory.GetCurrentDirectory();
}
