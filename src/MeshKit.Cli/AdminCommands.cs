using System.Net.Http.Headers;
using System.Reflection;
using System.Text;
using System.Text.Json;

namespace MeshKit.Cli;

/// <summary>
/// The commands that talk to a running control plane through its admin port: apply, delete, get, status, config,
/// version. Errors name what failed; exit codes: 0 done, 1 the control plane refused (invalid config, unknown
/// workload), 2 the command line was wrong or the control plane could not be reached.
/// </summary>
internal sealed class AdminCommands(Uri admin, string? token, string format, TextWriter output, TextWriter error)
{
    public int Apply(IReadOnlyList<string> inputs) => ForEachFile(inputs, async (http, file) =>
    {
        var before = await FindingsAsync(http, after: null).ConfigureAwait(false);
        using var content = new StringContent(await File.ReadAllTextAsync(file).ConfigureAwait(false), Encoding.UTF8, "application/yaml");
        using var response = await http.PostAsync(new Uri(admin, $"/config?name={Uri.EscapeDataString(Path.GetFileName(file))}"), content).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            error.WriteLine($"meshctl: {file}: {Read(body, "error")}");
            foreach (var diagnostic in ReadArray(body, "diagnostics"))
            {
                error.WriteLine("  " + diagnostic);
            }

            return MeshCtl.Invalid;
        }

        if (format == "json")
        {
            output.WriteLine(body);
        }
        else
        {
            output.WriteLine($"{Path.GetFileName(file)} applied: {string.Join(", ", ReadArray(body, "resources"))}");
            foreach (var diagnostic in ReadArray(body, "diagnostics"))
            {
                output.WriteLine("  " + diagnostic);
            }

            await WriteFindingsAsync(http, file, before).ConfigureAwait(false);
        }

        return MeshCtl.Ok;
    });

    public int Delete(IReadOnlyList<string> inputs) => ForEachFile(inputs, async (http, file) =>
    {
        var before = await FindingsAsync(http, after: null).ConfigureAwait(false);
        using var response = await http.DeleteAsync(new Uri(admin, $"/config?name={Uri.EscapeDataString(Path.GetFileName(file))}")).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            error.WriteLine($"meshctl: {file}: {Read(body, "error")}");
            return MeshCtl.Invalid;
        }

        output.WriteLine($"{Path.GetFileName(file)} deleted");
        if (format != "json")
        {
            await WriteFindingsAsync(http, file, before).ConfigureAwait(false);
        }

        return MeshCtl.Ok;
    }, mustExist: false);

    /// <summary>
    /// What a change means next to the rest of the mesh, as the control plane found when it compiled the change (like
    /// <c>istioctl analyze</c>): every finding about the changed file, and the findings about other files that are new
    /// since before the change (a DestinationRule deleted under a VirtualService that routes to its subsets). Nothing
    /// when the control plane cannot tell (an older one, or the change not published within the wait).
    /// </summary>
    private async Task WriteFindingsAsync(HttpClient http, string file, Findings? before)
    {
        if (before is null || await FindingsAsync(http, before.Version).ConfigureAwait(false) is not { } now)
        {
            return;
        }

        var name = Path.GetFileName(file);
        foreach (var (findingFile, text) in now.Items)
        {
            if (findingFile == name || !before.Texts.Contains(text))
            {
                output.WriteLine("  " + text);
            }
        }
    }

    /// <summary>The control plane's findings in the state in force: its version, the texts, and each with its file.</summary>
    private sealed record Findings(long Version, HashSet<string> Texts, List<(string File, string Text)> Items);

    private async Task<Findings?> FindingsAsync(HttpClient http, long? after)
    {
        try
        {
            using var response = await http.GetAsync(new Uri(admin, after is { } v ? $"/debug/findings?after={v}" : "/debug/findings")).ConfigureAwait(false);
            if (response.StatusCode != System.Net.HttpStatusCode.OK)
            {
                return null;
            }

            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
            var findings = json.RootElement.GetProperty("findings").EnumerateArray().Select(f => (f.GetProperty("file").GetString() ?? string.Empty, f.GetProperty("text").GetString() ?? string.Empty)).ToList();
            var version = json.RootElement.GetProperty("version") is { ValueKind: JsonValueKind.Number } number ? number.GetInt64() : 0;
            return new Findings(version, findings.Select(f => f.Item2).ToHashSet(StringComparer.Ordinal), findings);
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return null;
        }
    }

    public int Get(string? typed)
    {
        string? kind = null;
        if (typed is not null && !ResourceKinds.TryResolve(typed, out kind))
        {
            error.WriteLine($"meshctl: unknown kind '{typed}'; MeshKit reads {ResourceKinds.List} (or 'all')");
            return MeshCtl.UsageError;
        }

        return GetKind(kind);
    }

    private int GetKind(string? kind) => Call("/config/resources", body =>
    {
        using var json = JsonDocument.Parse(body);
        var rows = json.RootElement.EnumerateArray()
            .Where(r => kind is null || string.Equals(r.GetProperty("kind").GetString(), kind, StringComparison.OrdinalIgnoreCase))
            .Select(r => new[] { r.GetProperty("kind").GetString()!, r.GetProperty("namespace").GetString()!, r.GetProperty("name").GetString()!, $"{r.GetProperty("file").GetString()}:{r.GetProperty("line").GetInt32()}" })
            .ToList();
        if (format == "json")
        {
            output.WriteLine(JsonSerializer.Serialize(rows.Select(r => new { kind = r[0], @namespace = r[1], name = r[2], source = r[3] })));
        }
        else
        {
            Table(["KIND", "NAMESPACE", "NAME", "SOURCE"], rows);
        }

        return MeshCtl.Ok;
    });

    public int Status() => Call("/debug/connections", body =>
    {
        if (format == "json")
        {
            output.WriteLine(body);
            return MeshCtl.Ok;
        }

        using var json = JsonDocument.Parse(body);
        output.WriteLine($"control plane state version {json.RootElement.GetProperty("version")}");
        var rows = json.RootElement.GetProperty("connections").EnumerateArray().Select(c => new[]
        {
            c.GetProperty("instanceId").GetString()!,
            $"{c.GetProperty("service").GetString()}.{c.GetProperty("namespace").GetString()}",
            c.GetProperty("identity").GetString() is { Length: > 0 } id ? id : "-",
            c.GetProperty("status").GetString()!,
            c.GetProperty("lastNack").ValueKind == JsonValueKind.String ? c.GetProperty("lastNack").GetString()! : "-",
        }).ToList();
        Table(["WORKLOAD", "SERVICE", "IDENTITY", "STATUS", "LAST NACK"], rows);
        return MeshCtl.Ok;
    });

    /// <summary>How the control plane reads the Kubernetes API server: each kind's version, state, objects and last error.</summary>
    /// <summary>
    /// Every finding about the configuration in force, as <c>istioctl analyze</c> reports a live cluster's: the
    /// diagnostics of each source (its rejection's errors, its warnings), then the cross-resource findings of the state
    /// published. Exit code <see cref="MeshCtl.Invalid"/> when a source is rejected (its last good version is in force).
    /// </summary>
    public int Analyze() => Call("/debug/config", sources =>
    {
        using var http = Client();
        var findings = FindingsAsync(http, after: null).GetAwaiter().GetResult();
        using var json = JsonDocument.Parse(sources);
        var diagnosed = json.RootElement.EnumerateArray()
            .Where(s => !s.GetProperty("accepted").GetBoolean() || s.GetProperty("diagnostics").GetArrayLength() > 0)
            .Select(s => (File: s.GetProperty("file").GetString()!, Accepted: s.GetProperty("accepted").GetBoolean(),
                Diagnostics: s.GetProperty("diagnostics").EnumerateArray().Select(d => (Severity: d.GetProperty("severity").GetString()!, Text: d.GetProperty("text").GetString()!)).ToList()))
            .ToList();
        var rejected = diagnosed.Count(s => !s.Accepted);
        if (format == "json")
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                sources = diagnosed.Select(s => new { file = s.File, accepted = s.Accepted, diagnostics = s.Diagnostics.Select(d => new { severity = d.Severity, text = d.Text }) }),
                findings = findings?.Items.Select(f => new { file = f.File, text = f.Text }) ?? [],
            }));
            return rejected > 0 ? MeshCtl.Invalid : MeshCtl.Ok;
        }

        foreach (var source in diagnosed)
        {
            output.WriteLine(source.Accepted ? source.File : $"{source.File} (rejected: its last good version is in force)");
            foreach (var (_, text) in source.Diagnostics)
            {
                output.WriteLine("  " + text);
            }
        }

        foreach (var (_, text) in findings?.Items ?? [])
        {
            output.WriteLine(text);
        }

        var errors = diagnosed.Sum(s => s.Diagnostics.Count(d => d.Severity == "error"));
        var warnings = diagnosed.Sum(s => s.Diagnostics.Count(d => d.Severity != "error")) + (findings?.Items.Count ?? 0);
        output.WriteLine(errors + warnings == 0
            ? "No findings: the configuration in force is consistent."
            : $"{errors} error(s) in {rejected} rejected source(s), {warnings} warning(s).");
        return rejected > 0 ? MeshCtl.Invalid : MeshCtl.Ok;
    });

    public int Kubernetes() => Call("/debug/kubernetes", body =>
    {
        if (format == "json")
        {
            output.WriteLine(body);
            return MeshCtl.Ok;
        }

        using var json = JsonDocument.Parse(body);
        var rows = json.RootElement.EnumerateArray().Select(k => new[]
        {
            k.GetProperty("kind").GetString()!,
            k.GetProperty("namespace").GetString()!,
            k.GetProperty("apiVersion").GetString() is { Length: > 0 } version ? version : "-",
            k.GetProperty("state").GetString()!,
            k.GetProperty("objects").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture),
            k.GetProperty("listed").ValueKind == JsonValueKind.String ? k.GetProperty("listed").GetDateTimeOffset().ToString("u", System.Globalization.CultureInfo.InvariantCulture) : "-",
            k.GetProperty("error").ValueKind == JsonValueKind.String ? k.GetProperty("error").GetString()! : "-",
        }).ToList();
        Table(["KIND", "NAMESPACE", "VERSION", "STATE", "OBJECTS", "LISTED", "ERROR"], rows);
        return MeshCtl.Ok;
    });

    public int Config(string workload, string type) => Call($"/debug/workloads/{Uri.EscapeDataString(workload)}/config?type={Uri.EscapeDataString(type)}", body =>
    {
        using var json = JsonDocument.Parse(body);
        output.WriteLine(JsonSerializer.Serialize(json.RootElement, new JsonSerializerOptions { WriteIndented = true }));
        return MeshCtl.Ok;
    });

    /// <summary>
    /// Prints the mesh's root certificates (PEM), for workloads that trust them by file (Mesh:RootCertificateFile); or,
    /// as Istio's <c>istio-ca-root-cert</c>, a ConfigMap <c>meshkit-root-cert</c> holding them for each namespace.
    /// </summary>
    public int Root(string format, IReadOnlyList<string> namespaces)
    {
        if (format == "configmap" && namespaces.Count == 0)
        {
            error.WriteLine("meshctl: -o configmap needs the namespaces to make it for (-n <namespace> ...)");
            return MeshCtl.UsageError;
        }

        if (namespaces.FirstOrDefault(n => !MeshKit.Config.Names.IsDnsLabel(n)) is { } invalid)
        {
            error.WriteLine($"meshctl: '{invalid}' is not a namespace (a DNS-1123 label)");
            return MeshCtl.UsageError;
        }

        return Call("/ca/root", body =>
        {
            if (format != "configmap")
            {
                output.Write(body);
                return MeshCtl.Ok;
            }

            // A YAML block scalar keeps the PEM's lines as they are.
            var pem = string.Concat(body.TrimEnd().Split('\n').Select(line => $"    {line}\n"));
            output.Write(string.Join("---\n", namespaces.Select(ns =>
                $"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: meshkit-root-cert\n  namespace: {ns}\ndata:\n  root-cert.pem: |\n{pem}")));
            return MeshCtl.Ok;
        });
    }

    public int Version()
    {
        var client = typeof(MeshCtl).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
        output.WriteLine($"meshctl: {client}");
        return Call("/version", body =>
        {
            output.WriteLine($"control plane: {Read(body, "version")}");
            return MeshCtl.Ok;
        });
    }

    private int Call(string path, Func<string, int> onSuccess)
    {
        using var http = Client();
        try
        {
            using var response = http.GetAsync(new Uri(admin, path)).GetAwaiter().GetResult();
            var body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            if (!response.IsSuccessStatusCode)
            {
                error.WriteLine($"meshctl: the control plane answered {(int)response.StatusCode}: {Read(body, "error") ?? body}");
                return response.StatusCode == System.Net.HttpStatusCode.Unauthorized ? MeshCtl.UsageError : MeshCtl.Invalid;
            }

            return onSuccess(body);
        }
        catch (HttpRequestException ex)
        {
            error.WriteLine($"meshctl: cannot reach the control plane's admin port at {admin}: {ex.Message}");
            return MeshCtl.UsageError;
        }
    }

    private int ForEachFile(IReadOnlyList<string> inputs, Func<HttpClient, string, Task<int>> action, bool mustExist = true)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                files.AddRange(Directory.EnumerateFiles(input, "*.*", SearchOption.TopDirectoryOnly)
                    .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
                    .Order(StringComparer.Ordinal));
            }
            else if (File.Exists(input) || !mustExist)
            {
                files.Add(input);
            }
            else
            {
                error.WriteLine($"meshctl: '{input}' is neither a file nor a folder");
                return MeshCtl.UsageError;
            }
        }

        using var http = Client();
        var worst = MeshCtl.Ok;
        foreach (var file in files)
        {
            try
            {
                worst = Math.Max(worst, action(http, file).GetAwaiter().GetResult());
            }
            catch (HttpRequestException ex)
            {
                error.WriteLine($"meshctl: cannot reach the control plane's admin port at {admin}: {ex.Message}");
                return MeshCtl.UsageError;
            }
        }

        return worst;
    }

    private HttpClient Client()
    {
        var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        if (!string.IsNullOrEmpty(token))
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return http;
    }

    private void Table(string[] headers, List<string[]> rows)
    {
        var widths = headers.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        output.WriteLine(string.Join("  ", headers.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        foreach (var row in rows)
        {
            output.WriteLine(string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
        }
    }

    private static string? Read(string json, string property)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.TryGetProperty(property, out var value) ? value.ToString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static IEnumerable<string> ReadArray(string json, string property)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.Array
                ? value.EnumerateArray().Select(v => v.ToString()).ToArray()
                : [];
        }
        catch (JsonException)
        {
            return [];
        }
    }
}
