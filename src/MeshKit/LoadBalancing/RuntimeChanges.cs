namespace MeshKit.LoadBalancing;

/// <summary>
/// What a snapshot build changes in the state that outlives snapshots (<see cref="MeshRuntime"/>): held back until the
/// whole build succeeded. A push the workload refuses keeps the snapshot in force, so it must also keep what that
/// snapshot uses: its connection pools (a replaced pool is disposed a while later), its endpoints' health and counts.
/// </summary>
internal sealed class RuntimeChanges
{
    private readonly List<Action> _commits = [];
    private readonly List<Action> _rollbacks = [];

    /// <summary>Gets the connection pools this build created, by destination name, so one build creates one per name.</summary>
    internal Dictionary<string, Http.ClusterTransports.Transport> Created { get; } = new(StringComparer.Ordinal);

    /// <summary>Adds a change to make once the build succeeded, and what undoes what the build already did for it.</summary>
    public void Defer(Action commit, Action? rollback = null)
    {
        _commits.Add(commit);
        if (rollback is not null)
        {
            _rollbacks.Add(rollback);
        }
    }

    /// <summary>Makes the held-back changes, in the order they were deferred.</summary>
    public void Commit()
    {
        foreach (var commit in _commits)
        {
            commit();
        }
    }

    /// <summary>Undoes what the failed build created (its new connection pools).</summary>
    public void Rollback()
    {
        foreach (var rollback in _rollbacks)
        {
            rollback();
        }
    }
}
