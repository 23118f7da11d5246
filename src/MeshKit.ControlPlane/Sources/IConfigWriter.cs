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
