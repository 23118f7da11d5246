namespace MeshKit.Config;

/// <summary>Kubernetes naming rules (DNS-1123), used for names, namespaces and hosts.</summary>
public static class Names
{
    /// <summary>Returns whether <paramref name="value"/> is a DNS-1123 label: 1–63 of [a-z0-9-], alphanumeric at both ends.</summary>
    /// <param name="value">The value to check.</param>
    /// <returns><see langword="true"/> when valid.</returns>
    public static bool IsDnsLabel(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length is 0 or > 63 || value[0] == '-' || value[^1] == '-')
        {
            return false;
        }

        foreach (var c in value)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Returns whether <paramref name="key"/> is a Kubernetes label key: an optional DNS-subdomain prefix and <c>/</c>, then a name.</summary>
    internal static bool IsLabelKey(string key)
    {
        var slash = key.IndexOf('/', StringComparison.Ordinal);
        return slash < 0 ? IsLabelValue(key) && key.Length > 0 : IsDnsSubdomain(key[..slash]) && IsLabelValue(key[(slash + 1)..]) && key.Length > slash + 1;
    }

    /// <summary>Returns whether <paramref name="value"/> is a Kubernetes label value: empty, or at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends.</summary>
    internal static bool IsLabelValue(string value) =>
        value.Length == 0
        || (value.Length <= 63 && char.IsAsciiLetterOrDigit(value[0]) && char.IsAsciiLetterOrDigit(value[^1])
            && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'));

    /// <summary>Returns whether <paramref name="value"/> is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.</summary>
    /// <param name="value">The value to check.</param>
    /// <returns><see langword="true"/> when valid.</returns>
    public static bool IsDnsSubdomain(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length is 0 or > 253)
        {
            return false;
        }

        foreach (var label in value.Split('.'))
        {
            if (!IsDnsLabel(label))
            {
                return false;
            }
        }

        return true;
    }
}
