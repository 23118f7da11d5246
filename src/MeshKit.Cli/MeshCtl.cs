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
            Recursive = true,
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
        var adminToken = new Option<string?>("--admin-token")
        {
            Description = "The admin port's bearer token (ControlPlane:AdminToken); default: the MESHCTL_ADMIN_TOKEN environment variable.",
            Recursive = true,
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("MESHCTL_ADMIN_TOKEN"),
        };
        var create = new Command("create", "Create a join token: the credential a workload presents for its first certificate.")
        {
            ns,
            serviceAccount,
            ttl,
            tokenFormat,
        };
        create.SetAction(parse => TokenCommand.Create(
            parse.GetValue(admin)!,
            parse.GetValue(adminToken),
            parse.GetValue(ns)!,
            parse.GetValue(serviceAccount) ?? "default",
            parse.GetValue(ttl) ?? "24h",
            parse.GetValue(tokenFormat) ?? "text",
            output,
            error));
        var token = new Command("token", "Join tokens for workload certificates.") { create };

        Option<string> Output()
        {
            var option = new Option<string>("--output", "-o")
            {
                Description = "Output format: text or json.",
                DefaultValueFactory = _ => "text",
            };
            option.AcceptOnlyFromAmong("text", "json");
            return option;
        }

        AdminCommands Admin(ParseResult parse, Option<string>? format = null) =>
            new(parse.GetValue(admin)!, parse.GetValue(adminToken), format is null ? "text" : parse.GetValue(format) ?? "text", output, error);

        var applyFiles = new Option<string[]>("--filename", "-f") { Description = "YAML files or folders to apply.", Required = true, AllowMultipleArgumentsPerToken = true };
        var applyFormat = Output();
        var apply = new Command("apply", "Validate files and put them in the control plane's config folder; the mesh applies them live. A file replaces the one of the same name.") { applyFiles, applyFormat };
        apply.SetAction(parse => Admin(parse, applyFormat).Apply(parse.GetValue(applyFiles) ?? []));

        var deleteFiles = new Option<string[]>("--filename", "-f") { Description = "Files (by name) to remove from the control plane's config folder.", Required = true, AllowMultipleArgumentsPerToken = true };
        var delete = new Command("delete", "Remove files from the control plane's config folder; their resources stop applying.") { deleteFiles };
        delete.SetAction(parse => Admin(parse).Delete(parse.GetValue(deleteFiles) ?? []));

        var kind = new Argument<string?>("kind") { Description = "Only this kind: VirtualService, virtualservices or vs, as kubectl takes them; 'all' for every kind.", Arity = ArgumentArity.ZeroOrOne };
        var getFormat = Output();
        var get = new Command("get", "List the resources in force, with the file and line each comes from.") { kind, getFormat };
        get.SetAction(parse => Admin(parse, getFormat).Get(parse.GetValue(kind)));

        var statusFormat = Output();
        var status = new Command("status", "Every connected workload: identity, and whether it ACKed the config it was sent (SYNCED, STALE, NACK), like istioctl proxy-status.") { statusFormat };
        status.SetAction(parse => Admin(parse, statusFormat).Status());

        var analyzeFormat = Output();
        var analyze = new Command("analyze", "Every finding about the configuration in force, like istioctl analyze: each source's (a file's, a Kubernetes object's) errors and warnings, and the findings across resources and the registry. Exit code 1 when a source is rejected.") { analyzeFormat };
        analyze.SetAction(parse => Admin(parse, analyzeFormat).Analyze());

        var kubernetesFormat = Output();
        var kubernetes = new Command("kubernetes", "How the control plane reads the Kubernetes API server (--kubernetes-api): each kind's version, state (watching, failing, not served), objects and last error.") { kubernetesFormat };
        kubernetes.SetAction(parse => Admin(parse, kubernetesFormat).Kubernetes());

        var workload = new Argument<string>("workload") { Description = "An instance id, a service.namespace (both as meshctl status shows them) or a service name." };
        var section = new Argument<string>("section") { Description = "routes, clusters, endpoints, secrets, authz or telemetry (the resolved Telemetry API policy).", DefaultValueFactory = _ => "routes" };
        section.AcceptOnlyFromAmong("routes", "clusters", "endpoints", "secrets", "authz", "telemetry");
        var config = new Command("config", "The config the control plane computes for one workload, like istioctl proxy-config.") { workload, section };
        config.SetAction(parse => Admin(parse).Config(parse.GetValue(workload)!, parse.GetValue(section) ?? "routes"));

        var rootFormat = new Option<string>("--output", "-o")
        {
            Description = "pem (default), or configmap: a Kubernetes ConfigMap meshkit-root-cert (key root-cert.pem) per --namespace, for kubectl apply -f -.",
            DefaultValueFactory = _ => "pem",
        };
        rootFormat.AcceptOnlyFromAmong("pem", "configmap");
        var rootNamespaces = new Option<string[]>("--namespace", "-n") { Description = "With -o configmap: the namespaces to make it for.", AllowMultipleArgumentsPerToken = true };
        var caRoot = new Command("root", "Print the mesh's root certificates (PEM): what a workload with a Kubernetes service-account token is given to trust (Mesh:RootCertificateFile).") { rootFormat, rootNamespaces };
        caRoot.SetAction(parse => Admin(parse).Root(parse.GetValue(rootFormat) ?? "pem", parse.GetValue(rootNamespaces) ?? []));
        var ca = new Command("ca", "The mesh's certificate authority.") { caRoot };

        var version = new Command("version", "meshctl's version and the control plane's.");
        version.SetAction(parse => Admin(parse).Version());

        var root = new RootCommand("meshctl: operate a MeshKit service mesh.") { validate, apply, delete, get, analyze, status, kubernetes, config, token, ca, version, admin, adminToken };
        var result = root.Parse(args);
        return result.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
