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

        var admin = new Option<Uri>("--admin-address")
        {
            Description = "The control plane's admin URL.",
            DefaultValueFactory = _ => new Uri("http://127.0.0.1:15014"),
            CustomParser = result =>
            {
                var text = result.Tokens.Single().Value;
                if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
                {
                    return uri;
                }

                result.AddError($"'{text}' is not an http:// or https:// URL");
                return null;
            },
        };
        var ns = new Option<string>("--namespace", "-n") { Description = "The workload's namespace.", Required = true };
        var serviceAccount = new Option<string>("--service-account", "-s")
        {
            Description = "The workload's service account.",
            DefaultValueFactory = _ => "default",
        };
        var ttl = new Option<string>("--ttl")
        {
            Description = "How long the token can be used, e.g. 24h or 720h (at most 365 days).",
            DefaultValueFactory = _ => "24h",
        };
        var tokenFormat = new Option<string>("--output", "-o")
        {
            Description = "Output format: text (the token alone) or json.",
            DefaultValueFactory = _ => "text",
        };
        tokenFormat.AcceptOnlyFromAmong("text", "json");
        var create = new Command("create", "Create a join token: the credential a workload presents for its first certificate.")
        {
            admin,
            ns,
            serviceAccount,
            ttl,
            tokenFormat,
        };
        create.SetAction(parse => TokenCommand.Create(
            parse.GetValue(admin)!,
            parse.GetValue(ns)!,
            parse.GetValue(serviceAccount) ?? "default",
            parse.GetValue(ttl) ?? "24h",
            parse.GetValue(tokenFormat) ?? "text",
            output,
            error));
        var token = new Command("token", "Join tokens for workload certificates.") { create };

        var root = new RootCommand("meshctl: operate a MeshKit service mesh.") { validate, token };
        var result = root.Parse(args);
        return result.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
