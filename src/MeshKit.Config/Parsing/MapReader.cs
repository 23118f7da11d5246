using System.Globalization;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

/// <summary>Collects diagnostics for one file, located by node.</summary>
internal sealed class ParseContext(string file)
{
    public string File { get; } = file;

    public List<ConfigDiagnostic> Diagnostics { get; } = [];

    public string? Resource { get; set; }

    /// <summary>Gets or sets whether the VirtualService being read is bound to gateways besides the mesh.</summary>
    public bool AlsoForGateways { get; set; }

    public int ErrorCount { get; private set; }

    // Where the fields that findings after parsing (the compiler's, which know only a path) point at are written.
    private Dictionary<string, SourceLocation>? _anchors;

    /// <summary>Remembers where <paramref name="path"/> is written, for findings made after parsing.</summary>
    public void Anchor(string path, YamlNode? node)
    {
        if (node is not null)
        {
            (_anchors ??= new Dictionary<string, SourceLocation>(StringComparer.Ordinal))[path] = Locate(node);
        }
    }

    /// <summary>Returns the current document's anchors and starts the next document with none.</summary>
    public IReadOnlyDictionary<string, SourceLocation> TakeAnchors()
    {
        var anchors = _anchors;
        _anchors = null;
        return anchors ?? ConfigResource.NoFieldLocations;
    }

    public SourceLocation Locate(YamlNode node) => new(File, (int)node.Start.Line, (int)node.Start.Column);

    public void Error(YamlNode? node, string path, string message) => Add(DiagnosticSeverity.Error, node, path, message);

    public void Warning(YamlNode? node, string path, string message) => Add(DiagnosticSeverity.Warning, node, path, message);

    private void Add(DiagnosticSeverity severity, YamlNode? node, string path, string message)
    {
        if (severity == DiagnosticSeverity.Error)
        {
            ErrorCount++;
        }

        Diagnostics.Add(new ConfigDiagnostic(
            severity, File, node is null ? 0 : (int)node.Start.Line, node is null ? 0 : (int)node.Start.Column, path, message, Resource));
    }
}

/// <summary>
/// Reads one YAML mapping field by field, tracking which keys were consumed so that every key nobody asked for is
/// reported as unknown. Type errors become diagnostics with the value's line and the field path; reading goes on.
/// </summary>
internal sealed class MapReader
{
    private readonly YamlMappingNode _node;
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    public MapReader(YamlMappingNode node, string path, ParseContext context)
    {
        _node = node;
        Path = path;
        Context = context;
    }

    public string Path { get; }

    public ParseContext Context { get; }

    public YamlMappingNode Node => _node;

    public SourceLocation Location => Context.Locate(_node);

    public string ChildPath(string key) => Path.Length == 0 ? key : Path + "." + key;

    public bool Has(string key) => Find(key) is not null;

    /// <summary>Remembers where the value of <paramref name="key"/> is written (<see cref="ParseContext.Anchor"/>).</summary>
    public void Anchor(string key) => Context.Anchor(ChildPath(key), Find(key));

    /// <summary>Remembers where each item of the list <paramref name="key"/> is written, as <c>key[i]</c>.</summary>
    public void AnchorItems(string key)
    {
        if (Find(key) is YamlSequenceNode sequence)
        {
            for (var i = 0; i < sequence.Children.Count; i++)
            {
                Context.Anchor($"{ChildPath(key)}[{i}]", sequence.Children[i]);
            }
        }
    }

    /// <summary>Returns the value node of <paramref name="key"/> and marks it consumed.</summary>
    public YamlNode? Get(string key)
    {
        _seen.Add(key);
        var value = Find(key);
        return value is YamlScalarNode { Style: not YamlDotNet.Core.ScalarStyle.SingleQuoted and not YamlDotNet.Core.ScalarStyle.DoubleQuoted } s
            && IsNull(s) ? null : value;
    }

    public string? String(string key, bool required = false)
    {
        var node = Get(key);
        if (node is null)
        {
            if (required)
            {
                Context.Error(_node, ChildPath(key), "is required");
            }

            return null;
        }

        if (node is YamlScalarNode scalar)
        {
            if (required && string.IsNullOrEmpty(scalar.Value))
            {
                Context.Error(node, ChildPath(key), "is required and must not be empty");
            }

            return scalar.Value ?? string.Empty;
        }

        Context.Error(node, ChildPath(key), "must be a string");
        return null;
    }

    public bool? Bool(string key)
    {
        var node = Get(key);
        if (node is null)
        {
            return null;
        }

        if (node is YamlScalarNode { Value: { } v } && bool.TryParse(v, out var result))
        {
            return result;
        }

        Context.Error(node, ChildPath(key), "must be true or false");
        return null;
    }

    public uint? UInt(string key, uint min = 0, uint max = uint.MaxValue) => ToUInt(Get(key), ChildPath(key), min, max);

    public uint? ToUInt(YamlNode? node, string path, uint min, uint max)
    {
        if (node is null)
        {
            return null;
        }

        if (node is YamlScalarNode { Value: { } v } && uint.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var result))
        {
            if (result < min || result > max)
            {
                Context.Error(node, path, $"must be between {min} and {max}, got {result}");
                return null;
            }

            return result;
        }

        Context.Error(node, path, $"must be a whole number between {min} and {max}");
        return null;
    }

    public int? Int(string key, int min, int max)
    {
        var node = Get(key);
        if (node is null)
        {
            return null;
        }

        if (node is YamlScalarNode { Value: { } v } && int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var result))
        {
            if (result < min || result > max)
            {
                Context.Error(node, ChildPath(key), $"must be between {min} and {max}, got {result}");
                return null;
            }

            return result;
        }

        Context.Error(node, ChildPath(key), $"must be a whole number between {min} and {max}");
        return null;
    }

    /// <summary>
    /// Reads a non-negative limit where 0 is the same as leaving the field out (a proto3 scalar's default: Istio
    /// accepts 0 for connection-pool limits and applies its default, as for an absent field); null for either.
    /// </summary>
    public int? Limit(string key) => Int(key, 0, int.MaxValue) is { } value and > 0 ? value : null;

    /// <summary>Reads a duration (<c>10s</c>, <c>1.5s</c>, <c>100ms</c>, <c>1m</c>).</summary>
    public TimeSpan? Duration(string key)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }

        if (Durations.TryParse(text, out var value))
        {
            return value;
        }

        Context.Error(Get(key), ChildPath(key), $"'{text}' is not a duration (e.g. 500ms, 10s, 1m)");
        return null;
    }

    /// <summary>
    /// Reads a duration Istio validates as a timer's (at least 1 ms, in whole milliseconds): a zero interval or
    /// ejection time would silently turn the feature off, so it is an error, as in Istio.
    /// </summary>
    /// <param name="key">The field.</param>
    /// <param name="zeroAllowed">Whether 0 is allowed too (where Istio reads it as "off").</param>
    public TimeSpan? TimerDuration(string key, bool zeroAllowed = false)
    {
        var value = Duration(key);
        if (value is { } d && !(zeroAllowed && d == TimeSpan.Zero) && (d < TimeSpan.FromMilliseconds(1) || d.Ticks % TimeSpan.TicksPerMillisecond != 0))
        {
            Context.Error(Get(key), ChildPath(key), $"must be at least 1ms, in whole milliseconds (got {String(key)})");
            return null;
        }

        return value;
    }

    /// <summary>Reads a number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public double? Double(string key, double min, double max)
    {
        var node = Get(key);
        if (node is null)
        {
            return null;
        }

        if (node is YamlScalarNode { Value: { } v } && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var result) && result >= min && result <= max)
        {
            return result;
        }

        Context.Error(node, ChildPath(key), $"must be a number from {min} to {max}");
        return null;
    }

    public IReadOnlyList<string> Strings(string key)
    {
        var node = Get(key);
        if (node is null)
        {
            return [];
        }

        if (node is not YamlSequenceNode sequence)
        {
            Context.Error(node, ChildPath(key), "must be a list of strings");
            return [];
        }

        var list = new List<string>(sequence.Children.Count);
        for (var i = 0; i < sequence.Children.Count; i++)
        {
            if (sequence.Children[i] is YamlScalarNode { Value: { } v })
            {
                list.Add(v);
            }
            else
            {
                Context.Error(sequence.Children[i], $"{ChildPath(key)}[{i}]", "must be a string");
            }
        }

        return list;
    }

    public IReadOnlyDictionary<string, string> StringMap(string key)
    {
        var node = Get(key);
        if (node is null)
        {
            return ConfigResource.EmptyMap;
        }

        if (node is not YamlMappingNode mapping)
        {
            Context.Error(node, ChildPath(key), "must be a map of strings");
            return ConfigResource.EmptyMap;
        }

        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in mapping.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? string.Empty;
            if (v is YamlScalarNode { Value: { } value })
            {
                map[name] = value;
            }
            else
            {
                Context.Error(v, $"{ChildPath(key)}.{name}", "must be a string");
            }
        }

        return map;
    }

    public T? Map<T>(string key, Func<MapReader, T?> read)
        where T : class
    {
        var node = Get(key);
        if (node is null)
        {
            return null;
        }

        if (node is not YamlMappingNode mapping)
        {
            Context.Error(node, ChildPath(key), "must be an object");
            return null;
        }

        var reader = new MapReader(mapping, ChildPath(key), Context);
        var result = read(reader);
        reader.Finish();
        return result;
    }

    public IReadOnlyList<T> List<T>(string key, Func<MapReader, T?> read)
        where T : class
    {
        var node = Get(key);
        if (node is null)
        {
            return [];
        }

        if (node is not YamlSequenceNode sequence)
        {
            Context.Error(node, ChildPath(key), "must be a list");
            return [];
        }

        var list = new List<T>(sequence.Children.Count);
        for (var i = 0; i < sequence.Children.Count; i++)
        {
            var path = $"{ChildPath(key)}[{i}]";
            if (sequence.Children[i] is not YamlMappingNode item)
            {
                Context.Error(sequence.Children[i], path, "must be an object");
                continue;
            }

            var reader = new MapReader(item, path, Context);
            var value = read(reader);
            reader.Finish();
            if (value is not null)
            {
                list.Add(value);
            }
        }

        return list;
    }

    /// <summary>
    /// Reads a map of names to objects (<c>tagOverrides</c>, <c>customTags</c>): <paramref name="read"/> gets each name,
    /// its key node and a reader of its object, finished afterwards. A value that is not an object, or a field that is
    /// not a map, is an error that names <paramref name="expected"/>.
    /// </summary>
    public void Entries(string key, string expected, Action<string, YamlNode, MapReader> read)
    {
        var node = Get(key);
        if (node is null)
        {
            return;
        }

        if (node is not YamlMappingNode map)
        {
            Context.Error(node, ChildPath(key), $"must be a map of name to {expected}");
            return;
        }

        foreach (var (k, v) in map.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? string.Empty;
            var path = $"{ChildPath(key)}.{name}";
            if (v is not YamlMappingNode entry)
            {
                Context.Error(v, path, $"must be {expected}");
                continue;
            }

            var reader = new MapReader(entry, path, Context);
            read(name, k, reader);
            reader.Finish();
        }
    }

    /// <summary>Reports a field MeshKit knows but does not act on, if present.</summary>
    public void NotSupported(string key, DiagnosticSeverity severity, string why)
    {
        var node = Find(key);
        _seen.Add(key);
        if (node is null)
        {
            return;
        }

        if (severity == DiagnosticSeverity.Error)
        {
            Context.Error(node, ChildPath(key), $"is not supported by MeshKit: {why}");
        }
        else
        {
            Context.Warning(node, ChildPath(key), $"is not supported by MeshKit and is ignored: {why}");
        }
    }

    /// <summary>Accepts fields that carry no configuration (bookkeeping written by tools), without a report.</summary>
    public void Ignore(params string[] keys)
    {
        foreach (var key in keys)
        {
            _seen.Add(key);
        }
    }

    /// <summary>Reports every key that no reader consumed.</summary>
    public void Finish()
    {
        foreach (var (k, v) in _node.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? k.ToString();
            if (!_seen.Contains(name))
            {
                Context.Error(k, ChildPath(name), "unknown field");
            }
        }
    }

    private YamlNode? Find(string key)
    {
        foreach (var (k, v) in _node.Children)
        {
            if (k is YamlScalarNode { Value: { } name } && name == key)
            {
                return v;
            }
        }

        return null;
    }

    private static bool IsNull(YamlScalarNode node) => node.Value is null or "" or "~" or "null" or "Null" or "NULL";
}
