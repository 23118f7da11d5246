using System.CommandLine;

namespace MeshKit.Cli;

/// <summary>The <c>meshctl</c> command tree.</summary>
public static class MeshCtl
{
    /// <summary>Exit code: success.</summary>
    public const int Ok = 0;

    /// <summary>Exit code: the configuration has errors.</summary>
    public const int Invalid = 1;

    /// <summary>Exit code: the command line was wrong or an input could not be read.</summary>
    public const int UsageError = 2;

    /// <summary>Parses <paramref name="args"/> and runs the command.</summary>
    /// <param name="args">The command-line arguments.</param>
    /// <param name="output">Where results go.</param>
    /// <param name="error">Where problems with the invocation go.</param>
    /// <returns>The exit code.</returns>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);

        var files = new Option<string[]>("--filename", "-f")
        {
            Description = "YAML files or folders (searched recursively for *.yaml and *.yml) to validate.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var format = new Option<string>("--output", "-o")
        {
            Description = "Output format: text or json.",
            DefaultValueFactory = _ => "text",
        };
        format.AcceptOnlyFromAmong("text", "json");

        var validate = new Command("validate", "Validate configuration offline, with the code the control plane runs: every error and unsupported field with its file, line and path.")
        {
            files,
            format,
        };
        validate.SetAction(parse => ValidateCommand.Run(parse.GetValue(files) ?? [], parse.GetValue(format) ?? "text", output, error));

        var root = new RootCommand("meshctl: operate a MeshKit service mesh.") { validate };
        var result = root.Parse(args);
        return result.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
