using System.Text.RegularExpressions;

namespace MeshKit.Config;

/// <summary>
/// The one place route regular expressions are compiled: full-match semantics (as Envoy's RE2 <c>safe_regex</c>), with
/// .NET's non-backtracking engine so that no pattern can cause catastrophic backtracking on the request path.
/// </summary>
public static class Patterns
{
    /// <summary>Compiles <paramref name="pattern"/> so that it must match a whole value.</summary>
    /// <param name="pattern">The RE2-style pattern.</param>
    /// <param name="ignoreCase">Whether to compare case-insensitively.</param>
    /// <param name="error">The reason when the pattern is invalid or needs backtracking features (RE2 has none of them either).</param>
    /// <returns>The compiled regex, or <see langword="null"/> with <paramref name="error"/> set.</returns>
    public static Regex? TryCompileFullMatch(string pattern, bool ignoreCase, out string? error)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var options = RegexOptions.NonBacktracking | RegexOptions.CultureInvariant;
        if (ignoreCase)
        {
            options |= RegexOptions.IgnoreCase;
        }

        try
        {
            error = null;
            return new Regex(@"\A(?:" + pattern + @")\z", options);
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
    }
}
