using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// One source of configuration (a file, a Kubernetes object): its latest text and findings, and the resources in force,
/// which are its last accepted content: a source is accepted or rejected whole, and a rejected one keeps what it had.
/// </summary>
internal class SourceState
{
    public string Text { get; private set; } = string.Empty;

    public bool Accepted { get; private set; }

    public IReadOnlyList<ConfigResource> InForce { get; private set; } = [];

    public IReadOnlyList<ConfigDiagnostic> Diagnostics { get; private set; } = [];

    /// <summary>Validates new text of the source named <paramref name="name"/>; accepted, its resources are in force.</summary>
    public ParseResult Update(string text, string name)
    {
        var result = ConfigParser.Parse(text, name);
        Text = text;
        Diagnostics = result.Diagnostics;
        Accepted = !result.HasErrors;
        if (Accepted)
        {
            InForce = result.Resources;
        }

        return result;
    }
}
