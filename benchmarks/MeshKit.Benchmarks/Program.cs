using System.Globalization;
using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MeshKit.Benchmarks;

// `--quick`: the short version of everything (a few minutes), written to benchmarks/results/latest.json and latest.md
// (`--no-micro` skips the BenchmarkDotNet part, `--small` the 10,000-workload fleet). Anything else goes to
// BenchmarkDotNet (e.g. --filter '*Security*').
if (!args.Contains("--quick"))
{
    BenchmarkSwitcher.FromAssembly(typeof(MeshHandlerBenchmarks).Assembly).Run(args);
    return 0;
}

var results = new List<Result>();
var config = ManualConfig.Create(DefaultConfig.Instance).AddJob(Job.ShortRun).WithOptions(ConfigOptions.DisableOptimizationsValidator);
var micro = args.Contains("--no-micro") ? [] : BenchmarkRunner.Run([typeof(MeshHandlerBenchmarks), typeof(SecurityBenchmarks)], config);
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

results.Add(ControlPlaneScale.Signings(TimeSpan.FromSeconds(3)));
foreach (var n in args.Contains("--tiny") ? new[] { 50 } : args.Contains("--small") ? new[] { 1000 } : new[] { 1000, 10000 })
{
    results.AddRange(await ControlPlaneScale.RunAsync(n, Console.Out));
}

var directory = Path.Combine(FindRoot(), "benchmarks", "results");
Directory.CreateDirectory(directory);
var machine = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
await File.WriteAllTextAsync(Path.Combine(directory, "latest.json"), JsonSerializer.Serialize(new
{
    date = DateTimeOffset.UtcNow,
    machine,
    results = results.Select(r => new { name = r.Name, value = Math.Round(r.Value, 3), unit = r.Unit, note = r.Note }),
}, new JsonSerializerOptions { WriteIndented = true }));
var table = new StringBuilder($"Machine: {machine}\n\n| figure | value | unit |\n|---|---:|---|\n");
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
