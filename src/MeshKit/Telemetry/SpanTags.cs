using System.Diagnostics;
using MeshKit.Protocol.V1;

namespace MeshKit.Telemetry;

/// <summary>
/// The Telemetry API's <c>tracing.customTags</c> for MeshKit's outbound spans, compiled once per config version:
/// literal values as written, environment variables read once (here), request headers read per call.
/// </summary>
internal sealed class SpanTags
{
    private readonly Tag[] _tags;

    private SpanTags(Tag[] tags) => _tags = tags;

    /// <summary>Compiles <paramref name="tags"/>; null when there are none.</summary>
    public static SpanTags? From(IReadOnlyCollection<SpanTag> tags)
    {
        if (tags.Count == 0)
        {
            return null;
        }

        var compiled = new List<Tag>(tags.Count);
        foreach (var tag in tags)
        {
            var fallback = tag.DefaultValue.Length > 0 ? tag.DefaultValue : null;
            switch (tag.Kind)
            {
                case "literal":
                    compiled.Add(new Tag(tag.Name, tag.Value, null));
                    break;
                case "environment":
                    // A variable absent without a default leaves the tag out, as Istio does.
                    if ((Environment.GetEnvironmentVariable(tag.Value) ?? fallback) is { } value)
                    {
                        compiled.Add(new Tag(tag.Name, value, null));
                    }

                    break;
                case "header":
                    compiled.Add(new Tag(tag.Name, fallback, tag.Value));
                    break;
                default:
                    throw new MeshConfigException($"Telemetry: span tag '{tag.Name}' has an unknown source '{tag.Kind}'");
            }
        }

        return new SpanTags([.. compiled]);
    }

    /// <summary>Tags <paramref name="activity"/> for <paramref name="request"/>.</summary>
    public void Apply(Activity activity, HttpRequestMessage request)
    {
        foreach (var tag in _tags)
        {
            var value = tag.Header is null ? tag.Value
                : request.Headers.NonValidated.TryGetValues(tag.Header, out var values) ? values.ToString() : tag.Value;
            if (value is not null)
            {
                activity.SetTag(tag.Name, value);
            }
        }
    }

    /// <summary>A tag: its value (for a header, the default), and the header to read it from, if any.</summary>
    private sealed record Tag(string Name, string? Value, string? Header);
}
