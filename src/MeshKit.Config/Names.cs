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
