namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// Where <c>meshctl apply</c> and <c>meshctl delete</c> (the admin port's <c>/config</c>) write a named source of
/// configuration: a file in the config directory, or its resources in etcd.
/// </summary>
internal interface IConfigWriter
{
    /// <summary>Stores a source that parsed without errors, replacing its previous content.</summary>
    /// <param name="name">The source name (a file name such as <c>reviews.yaml</c>).</param>
    /// <param name="text">The YAML text.</param>
    /// <param name="resources">The resources the text parsed into.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>Null when stored; otherwise why nothing was stored.</returns>
    Task<string?> ApplyAsync(string name, string text, IReadOnlyList<Config.Model.ConfigResource> resources, CancellationToken cancellationToken);

    /// <summary>Removes a source and its resources.</summary>
    /// <returns>False when there was no such source.</returns>
    Task<bool> DeleteAsync(string name, CancellationToken cancellationToken);
}

/// <summary>
/// A store that can tell a complete change (an apply or delete through the admin API, a committed transaction) from
/// one that may be part of a burst (a file being written, files being copied), so that a complete change is pushed
/// without waiting for the debounce's quiet period.
/// </summary>
internal interface ICompleteChanges
{
    /// <summary>Returns whether the change being signalled is complete, and clears the mark.</summary>
    bool TakeComplete();
}
