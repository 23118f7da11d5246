using System.Globalization;

namespace MeshKit.Config;

/// <summary>Durations as Istio YAML writes them: <c>10s</c>, <c>1.5s</c>, <c>100ms</c>, <c>3m</c>, <c>1h30m</c>.</summary>
public static class Durations
{
    /// <summary>Parses a duration; each part is a decimal number followed by <c>h</c>, <c>m</c>, <c>s</c>, <c>ms</c>, <c>us</c> or <c>ns</c>.</summary>
    /// <param name="text">The text.</param>
    /// <param name="value">The duration when valid.</param>
    /// <returns><see langword="true"/> when <paramref name="text"/> is a valid, non-negative duration.</returns>
    public static bool TryParse(string? text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        var span = text.AsSpan();
        var total = 0.0;
        while (span.Length > 0)
        {
            var digits = 0;
            while (digits < span.Length && (char.IsAsciiDigit(span[digits]) || span[digits] == '.'))
            {
                digits++;
            }

            if (digits == 0 || !double.TryParse(span[..digits], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return false;
            }

            span = span[digits..];
            var unit = 0;
            while (unit < span.Length && char.IsAsciiLetter(span[unit]) || (unit < span.Length && span[unit] == 'µ'))
            {
                unit++;
            }

            double? scale = span[..unit] switch
            {
                "h" => 3_600_000,
                "m" => 60_000,
                "s" => 1_000,
                "ms" => 1,
                "us" or "µs" => 0.001,
                "ns" => 0.000_001,
                _ => null,
            };
            if (scale is null)
            {
                return false;
            }

            total += number * scale.Value;
            span = span[unit..];
        }

        value = TimeSpan.FromMilliseconds(total);
        return true;
    }
}
