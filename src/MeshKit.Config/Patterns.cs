using System.Text.RegularExpressions;

namespace MeshKit.Config;

/// <summary>
/// The one place route regular expressions are compiled: full-match semantics (as Envoy's RE2 <c>safe_regex</c>), with
/// .NET's non-backtracking engine so that no pattern can cause catastrophic backtracking on the request path.
/// </summary>
/// <remarks>
/// A non-backtracking <see cref="Regex"/> costs about 400 KB (its symbolic automaton), against under 1 KB for the
/// backtracking interpreter, so compiled patterns are shared: every matcher and every config version that uses the
/// same pattern gets the same immutable, thread-safe instance while any of them holds it (a mesh where 1,000 routes
/// use one pattern pays for it once, and a new config version does not rebuild what it keeps).
/// </remarks>
public static class Patterns
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string Pattern, RegexOptions Options), WeakReference<Regex>> Shared = new();
    private static int _sweepAt = 256;

    /// <summary>Compiles <paramref name="pattern"/> so that it must match a whole value.</summary>
    /// <param name="pattern">The RE2-style pattern.</param>
    /// <param name="ignoreCase">Whether to compare case-insensitively.</param>
    /// <param name="error">The reason when the pattern is invalid or needs backtracking features (RE2 has none of them either).</param>
    /// <returns>The compiled regex, or <see langword="null"/> with <paramref name="error"/> set.</returns>
    public static Regex? TryCompileFullMatch(string pattern, bool ignoreCase, out string? error)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        return TryCompile(@"\A(?:" + pattern + @")\z", ignoreCase, out error);
    }

    /// <summary>Compiles <paramref name="pattern"/> to find matches anywhere in a value (for regex rewrites).</summary>
    /// <param name="pattern">The RE2-style pattern.</param>
    /// <param name="ignoreCase">Whether to compare case-insensitively.</param>
    /// <param name="error">The reason when the pattern is invalid.</param>
    /// <returns>The compiled regex, or <see langword="null"/> with <paramref name="error"/> set.</returns>
    public static Regex? TryCompile(string pattern, bool ignoreCase, out string? error)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var options = RegexOptions.NonBacktracking | RegexOptions.CultureInvariant;
        if (ignoreCase)
        {
            options |= RegexOptions.IgnoreCase;
        }

        error = null;
        if (Shared.TryGetValue((pattern, options), out var weak) && weak.TryGetTarget(out var shared))
        {
            return shared;
        }

        Regex regex;
        try
        {
            regex = new Regex(pattern, options);
        }
        catch (ArgumentException ex)
        {
            error = ex.Message;
            return null;
        }
        catch (NotSupportedException ex)
        {
            error = ex.Message;
            return null;
        }

        Shared[(pattern, options)] = new WeakReference<Regex>(regex);
        if (Shared.Count > Volatile.Read(ref _sweepAt))
        {
            // Patterns no config holds any more leave the table; it stays about twice the size of what is in use.
            foreach (var (key, entry) in Shared)
            {
                if (!entry.TryGetTarget(out _))
                {
                    Shared.TryRemove(key, out _);
                }
            }

            Volatile.Write(ref _sweepAt, Math.Max(256, Shared.Count * 2));
        }

        return regex;
    }

    /// <summary>Converts an RE2/Envoy replacement (<c>\1</c>) into .NET's form (<c>${1}</c>), escaping literal <c>$</c>.</summary>
    /// <param name="rewrite">The replacement as written in the config.</param>
    /// <returns>The .NET replacement pattern.</returns>
    public static string ToDotNetReplacement(string rewrite)
    {
        ArgumentNullException.ThrowIfNull(rewrite);
        var builder = new System.Text.StringBuilder(rewrite.Length + 8);
        for (var i = 0; i < rewrite.Length; i++)
        {
            var c = rewrite[i];
            if (c == '\\' && i + 1 < rewrite.Length && char.IsAsciiDigit(rewrite[i + 1]))
            {
                builder.Append("${").Append(rewrite[++i]).Append('}');
            }
            else if (c == '$')
            {
                builder.Append("$$");
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }
}
