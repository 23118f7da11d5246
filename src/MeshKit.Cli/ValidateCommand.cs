using System.Text.Json;
using MeshKit.Config.Compilation;
using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.Cli;

/// <summary><c>meshctl validate</c>: parse, validate and compile files exactly as the control plane would.</summary>
internal static class ValidateCommand
{
    public static int Run(IReadOnlyList<string> inputs, string format, TextWriter output, TextWriter error)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                files.AddRange(Directory.EnumerateFiles(input, "*.*", SearchOption.AllDirectories)
                    .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
                    .Order(StringComparer.Ordinal));
            }
            else if (File.Exists(input))
            {
                files.Add(input);
            }
            else
            {
                error.WriteLine($"meshctl: '{input}' is neither a file nor a folder");
                return MeshCtl.UsageError;
            }
        }

        var results = new List<ParseResult>();
        foreach (var file in files)
        {
            try
            {
                results.Add(ConfigParser.ParseFile(file));
            }
            catch (IOException ex)
            {
                error.WriteLine($"meshctl: cannot read '{file}': {ex.Message}");
                return MeshCtl.UsageError;
            }
        }

        // A resource two files define: the control plane keeps the definition it read first and ignores the other (a
        // warning here: a folder of alternatives, such as the sample's tasks, is validated together; apply refuses it).
        var owners = new Dictionary<string, string>(StringComparer.Ordinal);
        var accepted = new List<ConfigResource>();
        var diagnostics = new List<ConfigDiagnostic>();
        foreach (var result in results)
        {
            diagnostics.AddRange(result.Diagnostics);
            foreach (var resource in result.HasErrors ? [] : result.Resources)
            {
                if (owners.TryAdd(resource.Key, result.File))
                {
                    accepted.Add(resource);
                    continue;
                }

                diagnostics.Add(resource.Finding(DiagnosticSeverity.Warning, "metadata.name",
                    $"{resource.DisplayName} is already defined in {owners[resource.Key]}: in one config folder, this definition would be ignored (and meshctl apply refuses it while the other is in force)"));
            }
        }

        // Cross-resource findings (unknown hosts and subsets) come from compiling what parsed, as the control plane does.
        var compiled = MeshCompiler.Compile(new ConfigSet(accepted), [], registryKnown: false);
        diagnostics.AddRange(compiled.Diagnostics);
        var errors = diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error);
        var warnings = diagnostics.Count - errors;

        if (format == "json")
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                valid = errors == 0,
                files = results.Select(r => new { file = r.File, accepted = !r.HasErrors, resources = r.Resources.Count }),
                diagnostics = diagnostics.Select(d => new
                {
                    severity = d.Severity == DiagnosticSeverity.Error ? "error" : "warning",
                    file = d.File,
                    line = d.Line,
                    column = d.Column,
                    path = d.Path,
                    message = d.Message,
                    resource = d.Resource,
                }),
                errors,
                warnings,
            }, JsonOptions));
        }
        else
        {
            foreach (var diagnostic in diagnostics)
            {
                output.WriteLine(diagnostic.ToString());
            }

            var resources = results.Sum(r => r.Resources.Count);
            output.WriteLine($"{files.Count} file(s), {resources} resource(s): {errors} error(s), {warnings} warning(s). {(errors == 0 ? "Valid." : "Invalid: the control plane would reject the files with errors.")}");
        }

        return errors == 0 ? MeshCtl.Ok : MeshCtl.Invalid;
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
