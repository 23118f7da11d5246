using System.Text;

namespace MeshKit.Security;

/// <summary>MeshConfig <c>pathNormalization</c>.</summary>
internal enum PathNormalization
{
    /// <summary>No change beyond what the server already does.</summary>
    None,

    /// <summary>RFC 3986 normalization: dot segments removed, backslashes made slashes (Istio's default).</summary>
    Base,

    /// <summary>Base, and runs of slashes merged.</summary>
    MergeSlashes,

    /// <summary>Base, with encoded slashes and backslashes decoded, then slashes merged.</summary>
    DecodeAndMergeSlashes,
}

/// <summary>
/// Normalizes a request path once, before policy; the result replaces the request's path, so authorization and the
/// application's routing see the same path. Kestrel has already decoded percent-encoding (except <c>%2F</c>) and removed
/// dot segments; this adds what Istio's normalization does beyond that. Requests whose raw target holds <c>%00</c>, a
/// control character or a malformed percent-encoding are refused instead.
/// </summary>
internal static class PathNormalizer
{
    public static PathNormalization Parse(string? value) => value switch
    {
        "NONE" => PathNormalization.None,
        "MERGE_SLASHES" => PathNormalization.MergeSlashes,
        "DECODE_AND_MERGE_SLASHES" => PathNormalization.DecodeAndMergeSlashes,
        _ => PathNormalization.Base,
    };

    /// <summary>Whether the raw request target is acceptable: well-formed percent-encoding, no NUL or control characters.</summary>
    public static bool IsAcceptable(string rawTarget)
    {
        // The span form: IndexOfAny(['?', '#']) on the string would allocate the array on every request.
        var end = rawTarget.AsSpan().IndexOfAny('?', '#');
        var path = end < 0 ? rawTarget.AsSpan() : rawTarget.AsSpan(0, end);
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c < 0x20 || c == 0x7F)
            {
                return false;
            }

            if (c == '%')
            {
                if (i + 2 >= path.Length || !Uri.IsHexDigit(path[i + 1]) || !Uri.IsHexDigit(path[i + 2]))
                {
                    return false;
                }

                var value = int.Parse(path.Slice(i + 1, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);
                if (value < 0x20 || value == 0x7F)
                {
                    return false;
                }

                i += 2;
            }
        }

        return true;
    }

    /// <summary>Returns the normalized form of a decoded path (as <c>HttpRequest.Path</c> holds it).</summary>
    public static string Normalize(string path, PathNormalization mode)
    {
        if (mode == PathNormalization.None || path.Length == 0)
        {
            return path;
        }

        var text = path;
        if (mode == PathNormalization.DecodeAndMergeSlashes)
        {
            text = text.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase).Replace("%5C", "\\", StringComparison.OrdinalIgnoreCase);
        }

        text = text.Replace('\\', '/');
        if ((mode is PathNormalization.MergeSlashes or PathNormalization.DecodeAndMergeSlashes) && text.Contains("//", StringComparison.Ordinal))
        {
            var merged = new StringBuilder(text.Length);
            foreach (var c in text)
            {
                if (c != '/' || merged.Length == 0 || merged[^1] != '/')
                {
                    merged.Append(c);
                }
            }

            text = merged.ToString();
        }

        return RemoveDotSegments(text);
    }

    /// <summary>RFC 3986 section 5.2.4.</summary>
    private static string RemoveDotSegments(string path)
    {
        // A dot segment is "." or ".." between slashes (or at the start): none without "/." or a leading dot, so
        // "/app.js" and "/v1.2/items" are returned as they are, without splitting.
        if (!path.Contains("/.", StringComparison.Ordinal) && !path.StartsWith('.'))
        {
            return path;
        }

        var output = new List<string>();
        var segments = path.Split('/');
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            var last = i == segments.Length - 1;
            if (segment == ".")
            {
                if (last)
                {
                    output.Add(string.Empty);
                }
            }
            else if (segment == "..")
            {
                if (output.Count > 1)
                {
                    output.RemoveAt(output.Count - 1);
                }

                if (last)
                {
                    output.Add(string.Empty);
                }
            }
            else
            {
                output.Add(segment);
            }
        }

        var result = string.Join('/', output);
        return result.StartsWith('/') ? result : "/" + result;
    }
}
