namespace MeshKit.Benchmarks;

/// <summary>One performance target of the project, evaluated on a run's figures.</summary>
internal sealed record TargetResult(string Name, double Value, string Unit, string Target, bool Met);

/// <summary>
/// The targets docs/performance.md states, each computed from the figures of one run. A target whose figures the
/// run did not produce (a skipped part) is left out rather than guessed.
/// </summary>
internal static class Targets
{
    public static IReadOnlyList<TargetResult> Evaluate(IReadOnlyList<Result> results)
    {
        var figures = results.GroupBy(r => r.Name).ToDictionary(g => g.Key, g => g.Last().Value);
        var list = new List<TargetResult>();

        void AtMost(string name, double? value, string unit, double limit, string goal)
        {
            if (value is { } v && !double.IsNaN(v))
            {
                list.Add(new TargetResult(name, v, unit, goal, v <= limit));
            }
        }

        void AtLeast(string name, double? value, string unit, double limit, string goal)
        {
            if (value is { } v && !double.IsNaN(v))
            {
                list.Add(new TargetResult(name, v, unit, goal, v >= limit));
            }
        }

        double? Get(string name) => figures.TryGetValue(name, out var v) ? v : null;
        double? Diff(string a, string b) => Get(a) is { } x && Get(b) is { } y ? x - y : null;
        double? Ratio(double? a, double? b) => a is { } x && b is { } y && y != 0 ? x / y : null;

        // In memory: the caller's handler and the callee's middleware together, against the same path without them.
        AtMost("pipeline added time", Diff("PipelineBenchmarks.Mesh.mean", "PipelineBenchmarks.Plain.mean"), "ns", 2000, "≤ 2,000 ns");
        AtMost("pipeline added allocation", Diff("PipelineBenchmarks.Mesh.allocated", "PipelineBenchmarks.Plain.allocated"), "B", 64, "≤ 64 B");

        // End to end: MeshKit's added latency as a share of what two nginx proxies add.
        var meshP50 = Diff("e2e.meshkit.c1.p50", "e2e.direct.c1.p50");
        var meshP99 = Diff("e2e.meshkit.c1.p99", "e2e.direct.c1.p99");
        var nginxP50 = Diff("e2e.two_nginx.c1.p50", "e2e.direct.c1.p50");
        var nginxP99 = Diff("e2e.two_nginx.c1.p99", "e2e.direct.c1.p99");
        AtMost("e2e added p50 / two-nginx added p50", Ratio(meshP50, nginxP50), "×", 1.0 / 20, "≤ 0.05 (1/20)");
        AtMost("e2e added p99 / two-nginx added p99", Ratio(meshP99, nginxP99), "×", 1.0 / 10, "≤ 0.10 (1/10)");
        // Throughput and CPU from paired neighbouring slices when the run has them (drift cancels better), else totals.
        AtLeast("c32 throughput meshkit / direct", Get("e2e.paired.meshkit_vs_direct.c32.rps_ratio") ?? Ratio(Get("e2e.meshkit.c32.rps"), Get("e2e.direct.c32.rps")), "×", 0.97, "≥ 0.97");
        AtLeast("c32 throughput meshkit mTLS / plain TLS", Get("e2e.paired.meshkit_mtls_vs_plain_tls.c32.rps_ratio") ?? Ratio(Get("e2e.meshkit_mtls.c32.rps"), Get("e2e.plain_tls.c32.rps")), "×", 0.97, "≥ 0.97");
        AtMost("added CPU per request", Get("e2e.paired.meshkit_vs_direct.cpu_added") ?? Diff("e2e.meshkit.cpu_per_request", "e2e.direct.cpu_per_request"), "µs", 3, "≤ 3 µs");
        AtMost("app memory for 1,000 services", Get("memory.config.1000_services"), "MiB", 8, "≤ 8 MiB");

        foreach (var n in new[] { 1000, 10000 })
        {
            AtMost($"change to last ACK p99 at {n:N0}", Get($"controlplane.change_to_ack.p99.{n}"), "ms", n == 1000 ? 100 : 500, n == 1000 ? "≤ 100 ms" : "≤ 500 ms");
            AtMost($"control-plane memory per workload at {n:N0}", Get($"controlplane.memory_per_workload.{n}"), "KiB", 64, "≤ 64 KiB");
        }

        AtLeast("ECDSA P-256 signings per second per core", Get("ca.signings_per_second_per_core"), "1/s", 2000, "≥ 2,000");
        return list;
    }
}
