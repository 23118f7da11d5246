namespace MeshKit.Config.Validation;

/// <summary>How serious a configuration diagnostic is.</summary>
public enum DiagnosticSeverity
{
    /// <summary>The configuration is accepted; the field is reported because MeshKit does not act on it.</summary>
    Warning,

    /// <summary>The document (and so its file) is rejected; the last good configuration stays in force.</summary>
    Error,
}

/// <summary>One finding of parsing or validation, located by file, line, column and field path.</summary>
/// <param name="Severity">Gets whether the finding rejects the file.</param>
/// <param name="File">Gets the file (or source name) the finding is in.</param>
/// <param name="Line">Gets the 1-based line, or 0 when unknown.</param>
/// <param name="Column">Gets the 1-based column, or 0 when unknown.</param>
/// <param name="Path">Gets the field path, e.g. <c>spec.http[0].route[1].weight</c>.</param>
/// <param name="Message">Gets what is wrong.</param>
/// <param name="Resource">Gets the resource the finding belongs to, e.g. <c>VirtualService default/reviews</c>, when known.</param>
public sealed record ConfigDiagnostic(
    DiagnosticSeverity Severity,
    string File,
    int Line,
    int Column,
    string Path,
    string Message,
    string? Resource = null)
{
    /// <summary>Formats the diagnostic as <c>file:line:column: severity: path: message (resource)</c>.</summary>
    /// <returns>The formatted diagnostic.</returns>
    public override string ToString()
    {
        var severity = Severity == DiagnosticSeverity.Error ? "error" : "warning";
        var location = Line > 0 ? $"{File}:{Line}:{Column}" : File;
        var path = string.IsNullOrEmpty(Path) ? string.Empty : Path + ": ";
        var resource = Resource is null ? string.Empty : $" ({Resource})";
        return $"{location}: {severity}: {path}{Message}{resource}";
    }
}
