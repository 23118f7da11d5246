using MeshKit.Protocol.V1;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Registry;

/// <summary>
/// The registry of live workloads: in memory for one control plane, in etcd (with leases) for several replicas.
/// Every replica sees the same entries, whichever replica a workload is connected to.
/// </summary>
internal interface IWorkloadRegistry
{
    /// <summary>Gets every registered workload with when it registered.</summary>
    IReadOnlyList<RegistryEntry> Entries { get; }

    /// <summary>Gets every registered workload's announcement.</summary>
    IReadOnlyList<WorkloadAnnouncement> Workloads { get; }

    /// <summary>Returns a token that fires when the entries change.</summary>
    IChangeToken GetChangeToken();

    /// <summary>Registers (or re-registers) a workload whose stream just opened on this replica.</summary>
    /// <returns>The registration, which <see cref="Release"/> takes back.</returns>
    Task<long> RegisterAsync(WorkloadAnnouncement workload, CancellationToken cancellationToken);

    /// <summary>Ends a registration: at once when the workload closed cleanly, after the grace period otherwise.</summary>
    void Release(string instanceId, long registration, bool graceful);
}
