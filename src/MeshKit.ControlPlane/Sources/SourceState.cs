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

    /// <summary>
    /// The state after new text, as a new object (this one unchanged, so that readers holding it see it whole): the
    /// text's resources when accepted, else this state's.
    /// </summary>
    public SourceState Next(string text, string name, out ParseResult result)
    {
        var next = new SourceState { InForce = InForce };
        result = next.Update(text, name);
        return next;
    }

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
