namespace MeshKit.Config.Model;

/// <summary>Where a value was read from.</summary>
/// <param name="File">Gets the file or source name.</param>
/// <param name="Line">Gets the 1-based line.</param>
/// <param name="Column">Gets the 1-based column.</param>
public readonly record struct SourceLocation(string File, int Line, int Column)
{
    /// <inheritdoc />
    public override string ToString() => $"{File}:{Line}:{Column}";
}
