using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;

namespace MeshKit.Sync;

/// <summary>
/// What a Kubernetes pod knows of itself through a downward API volume (<see cref="MeshOptions.PodInfoDirectory"/>):
/// its labels, and its namespace when the volume maps it, applied to the options before they are validated, as a
/// sidecar takes its workload's labels, canonical service and locality from its pod.
/// </summary>
internal sealed class PodInfo : IPostConfigureOptions<MeshOptions>
{
    // Istio's pod labels that set the locality, as region.zone.subzone (a label value holds no '/'): the current
    // one, then the older one.
    private static readonly string[] LocalityLabels = ["topology.istio.io/locality", "istio-locality"];

    // Istio's canonical service name of a workload, the first of these labels it has.
    private static readonly string[] CanonicalNameLabels = ["service.istio.io/canonical-name", "app.kubernetes.io/name", "app"];

    public void PostConfigure(string? name, MeshOptions options)
    {
        if (options.PodInfoDirectory is not { Length: > 0 } directory)
        {
            return;
        }

        var labelsFile = Path.Combine(directory, "labels");
        if (!File.Exists(labelsFile))
        {
            options.PodInfoErrors.Add($"Mesh:PodInfoDirectory '{directory}' has no 'labels' file: mount a downward API volume there with an item 'labels' of fieldPath metadata.labels.");
            return;
        }

        if (!TryRead(File.ReadAllText(labelsFile), out var labels, out var error))
        {
            options.PodInfoErrors.Add($"{labelsFile}:{error}");
            return;
        }

        foreach (var (key, value) in labels)
        {
            options.Labels.TryAdd(key, value);
        }

        if (string.IsNullOrEmpty(options.ServiceName) && CanonicalNameLabels.FirstOrDefault(labels.ContainsKey) is { } canonical)
        {
            options.ServiceName = labels[canonical];
        }

        options.Locality ??= Locality(labels);
        var namespaceFile = Path.Combine(directory, "namespace");
        if (options.Namespace == "default" && File.Exists(namespaceFile))
        {
            options.Namespace = File.ReadAllText(namespaceFile).Trim();
        }
    }

    /// <summary>
    /// Reads a downward API file of labels or annotations: a line per entry, <c>key="value"</c>, the value quoted as Go
    /// quotes strings (Kubernetes writes them so); false with <c>line: message</c> on the first malformed line.
    /// </summary>
    internal static bool TryRead(string text, out Dictionary<string, string> entries, out string? error)
    {
        entries = new Dictionary<string, string>(StringComparer.Ordinal);
        error = null;
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || !TryUnquote(line.AsSpan(equals + 1), out var value))
            {
                error = $"{i + 1}: '{line}' is not key=\"value\", as the downward API writes labels";
                return false;
            }

            entries[line[..equals]] = value;
        }

        return true;
    }

    // Istio's locality label, else the pod's topology labels.
    private static string? Locality(Dictionary<string, string> labels)
    {
        if (LocalityLabels.Select(labels.GetValueOrDefault).FirstOrDefault(l => l is { Length: > 0 }) is { } label)
        {
            return label.Replace('.', '/');
        }

        var region = labels.GetValueOrDefault("topology.kubernetes.io/region");
        var zone = labels.GetValueOrDefault("topology.kubernetes.io/zone");
        var subzone = labels.GetValueOrDefault("topology.istio.io/subzone");
        return region is null && zone is null && subzone is null ? null : string.Join('/', region ?? string.Empty, zone ?? string.Empty, subzone ?? string.Empty).TrimEnd('/');
    }

    // A Go-quoted string: "...", with \", \\, \n, \t, \r, \xNN, \uNNNN and \UNNNNNNNN escapes.
    private static bool TryUnquote(ReadOnlySpan<char> quoted, out string value)
    {
        value = string.Empty;
        if (quoted.Length < 2 || quoted[0] != '"' || quoted[^1] != '"')
        {
            return false;
        }

        var inner = quoted[1..^1];
        if (inner.IndexOf('\\') < 0)
        {
            value = inner.ToString();
            return !value.Contains('"', StringComparison.Ordinal);
        }

        var builder = new StringBuilder(inner.Length);
        var bytes = new List<byte>();
        for (var i = 0; i < inner.Length; i++)
        {
            if (inner[i] != '\\')
            {
                Flush(bytes, builder);
                builder.Append(inner[i]);
                continue;
            }

            if (++i >= inner.Length)
            {
                return false;
            }

            switch (inner[i])
            {
                case '"' or '\\' or '\'':
                    Flush(bytes, builder);
                    builder.Append(inner[i]);
                    break;
                case 'n':
                    Flush(bytes, builder);
                    builder.Append('\n');
                    break;
                case 't':
                    Flush(bytes, builder);
                    builder.Append('\t');
                    break;
                case 'r':
                    Flush(bytes, builder);
                    builder.Append('\r');
                    break;
                case 'x' when i + 2 < inner.Length && byte.TryParse(inner.Slice(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b):
                    // Go quotes the bytes of invalid UTF-8 this way: kept as bytes until the run ends.
                    bytes.Add(b);
                    i += 2;
                    break;
                case 'u' when i + 4 < inner.Length && int.TryParse(inner.Slice(i + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var u):
                    Flush(bytes, builder);
                    builder.Append((char)u);
                    i += 4;
                    break;
                case 'U' when i + 8 < inner.Length && int.TryParse(inner.Slice(i + 1, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var rune) && Rune.IsValid(rune):
                    Flush(bytes, builder);
                    builder.Append(char.ConvertFromUtf32(rune));
                    i += 8;
                    break;
                default:
                    return false;
            }
        }

        Flush(bytes, builder);
        value = builder.ToString();
        return true;

        static void Flush(List<byte> bytes, StringBuilder builder)
        {
            if (bytes.Count > 0)
            {
                builder.Append(Encoding.UTF8.GetString([.. bytes]));
                bytes.Clear();
            }
        }
    }
}
