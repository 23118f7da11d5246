using System.Diagnostics.Metrics;

namespace MeshKit.ControlPlane.Discovery;

/// <summary>
/// The control plane's own metrics (Meter <c>MeshKit.ControlPlane</c>): connected workloads, config version, pushes
/// and their size, NACKs, and the convergence time from a config or registry change to the workload's ACK of it
/// (Istio's proxy convergence time).
/// </summary>
internal sealed class ControlPlaneMetrics
{
    public const string MeterName = "MeshKit.ControlPlane";

    private readonly Counter<long> _pushes;
    private readonly Histogram<long> _pushBytes;
    private readonly Counter<long> _nacks;
    private readonly Histogram<double> _convergence;

    public ControlPlaneMetrics(IMeterFactory meterFactory, ConnectionTracker tracker, IServiceProvider services)
    {
        var meter = meterFactory.Create(MeterName);
        _pushes = meter.CreateCounter<long>("meshkit.controlplane.pushes", "{push}", "Discovery responses sent, by resource type.");
        _pushBytes = meter.CreateHistogram<long>("meshkit.controlplane.push_size", "By", "Size of each discovery response.");
        _nacks = meter.CreateCounter<long>("meshkit.controlplane.nacks", "{nack}", "Responses workloads rejected, by resource type.");
        _convergence = meter.CreateHistogram<double>("meshkit.controlplane.convergence", "s", "From a config or registry change to a workload's ACK of it.");
        meter.CreateObservableGauge("meshkit.controlplane.connected_workloads", () => tracker.Connections.Count, "{workload}", "Workloads with an open discovery stream.");
        meter.CreateObservableGauge("meshkit.controlplane.config_version", () => services.GetService(typeof(MeshStatePublisher)) is MeshStatePublisher p ? p.Current?.Version ?? 0 : 0, description: "The mesh state version in force.");
    }

    public void Pushed(string typeUrl, int bytes)
    {
        var type = new KeyValuePair<string, object?>("type", ShortType(typeUrl));
        _pushes.Add(1, type);
        _pushBytes.Record(bytes, type);
    }

    public void Nacked(string typeUrl) => _nacks.Add(1, new KeyValuePair<string, object?>("type", ShortType(typeUrl)));

    public void Converged(string typeUrl, TimeSpan elapsed) =>
        _convergence.Record(Math.Max(0, elapsed.TotalSeconds), new KeyValuePair<string, object?>("type", ShortType(typeUrl)));

    private static string ShortType(string typeUrl) => typeUrl[(typeUrl.LastIndexOf('.') + 1)..];
}
