using MeshKit.Config.Compilation;
using MeshKit.Config.Validation;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// Where the control plane's configuration lives. The embedded default is a directory of YAML files; distributed
/// stores implement the same contract. Implementations keep the last good content of every source in force when a
/// new version of it is invalid.
/// </summary>
public interface IConfigStore
{
    /// <summary>Gets the configuration in force.</summary>
    ConfigSet Current { get; }

    /// <summary>Gets the state of every source (file) with its diagnostics, ordered by source name.</summary>
    IReadOnlyList<ConfigSourceStatus> Sources { get; }

    /// <summary>Returns a token that fires when <see cref="Current"/> or <see cref="Sources"/> changes.</summary>
    /// <returns>The change token.</returns>
    IChangeToken GetReloadToken();
}

/// <summary>The state of one configuration source.</summary>
/// <param name="Name">Gets the source name (a path relative to the config directory).</param>
/// <param name="Accepted">Gets whether the latest content was accepted.</param>
/// <param name="ResourceCount">Gets how many resources of this source are in force.</param>
/// <param name="Diagnostics">Gets the diagnostics of the latest content.</param>
public sealed record ConfigSourceStatus(string Name, bool Accepted, int ResourceCount, IReadOnlyList<ConfigDiagnostic> Diagnostics);
