using MeshKit.Config.Validation;

namespace MeshKit.Config.Model;

/// <summary>A parsed configuration document: an Istio-style resource with its metadata and where it came from.</summary>
public abstract record ConfigResource
{
    /// <summary>Gets the kind, e.g. <c>VirtualService</c>.</summary>
    public required string Kind { get; init; }

    /// <summary>Gets the API version as written, e.g. <c>networking.istio.io/v1</c>.</summary>
    public required string ApiVersion { get; init; }

    /// <summary>Gets <c>metadata.name</c>.</summary>
    public required string Name { get; init; }

    /// <summary>Gets <c>metadata.namespace</c>; <c>default</c> when the document names none.</summary>
    public required string Namespace { get; init; }

    /// <summary>Gets <c>metadata.labels</c>.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = EmptyMap;

    /// <summary>Gets <c>metadata.annotations</c>.</summary>
    public IReadOnlyDictionary<string, string> Annotations { get; init; } = EmptyMap;

    /// <summary>Gets where the document starts.</summary>
    public SourceLocation Source { get; init; }

    /// <summary>
    /// Gets where fields that findings beyond parsing can name are written, by path (<c>metadata.name</c>,
    /// <c>spec.selector</c>, <c>spec.hosts[0]</c>, <c>spec.http[1].route[0].destination.subset</c>): the compiler
    /// knows a resource and a path, and its findings should point at the line as the parser's do.
    /// </summary>
    public IReadOnlyDictionary<string, SourceLocation> FieldLocations { get; init; } = NoFieldLocations;

    /// <summary>Returns where the field at <paramref name="path"/> is written, or where the document starts when it is not known.</summary>
    /// <param name="path">A field path as diagnostics write it, e.g. <c>spec.hosts[0]</c>.</param>
    /// <returns>The field's location, or <see cref="Source"/>.</returns>
    public SourceLocation Locate(string path) => FieldLocations.TryGetValue(path, out var location) ? location : Source;

    /// <summary>Makes a finding about one of this resource's fields, located where the field is written (<see cref="Locate"/>).</summary>
    /// <param name="severity">Error or warning.</param>
    /// <param name="path">The field's path, e.g. <c>metadata.name</c>.</param>
    /// <param name="message">What is wrong.</param>
    /// <returns>The diagnostic, naming this resource.</returns>
    public ConfigDiagnostic Finding(DiagnosticSeverity severity, string path, string message)
    {
        var at = Locate(path);
        return new ConfigDiagnostic(severity, at.File, at.Line, at.Column, path, message, DisplayName);
    }

    /// <summary>Gets the identity of the resource: <c>Kind/namespace/name</c>.</summary>
    public string Key => $"{Kind}/{Namespace}/{Name}";

    /// <summary>Gets a display name: <c>Kind namespace/name</c>.</summary>
    public string DisplayName => $"{Kind} {Namespace}/{Name}";

    internal static readonly IReadOnlyDictionary<string, string> EmptyMap = new Dictionary<string, string>();

    internal static readonly IReadOnlyDictionary<string, SourceLocation> NoFieldLocations = new Dictionary<string, SourceLocation>();
}

/// <summary>A workload selector (<c>selector.matchLabels</c> or <c>workloadSelector.labels</c>).</summary>
/// <param name="MatchLabels">Gets the labels a workload must carry, all of them.</param>
public sealed record WorkloadSelector(IReadOnlyDictionary<string, string> MatchLabels)
{
    /// <summary>Returns whether a workload with <paramref name="labels"/> is selected.</summary>
    /// <param name="labels">The workload's labels.</param>
    /// <returns><see langword="true"/> when every selector label is present with the same value.</returns>
    public bool Matches(IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        foreach (var (key, value) in MatchLabels)
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }

        return true;
    }
}
