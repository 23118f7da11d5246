namespace MeshKit.Config.Compilation;

/// <summary>Host name rules shared by compilation and the request path.</summary>
public static class HostNames
{
    /// <summary>
    /// Qualifies a host named in a rule: a single label (<c>reviews</c>) is a service in the rule's namespace and becomes
    /// <c>reviews.&lt;namespace&gt;.svc.&lt;clusterDomain&gt;</c>; anything with a dot is taken as written (as Istio does).
    /// </summary>
    /// <param name="host">The host as written.</param>
    /// <param name="ruleNamespace">The namespace of the rule that names it.</param>
    /// <param name="clusterDomain">The cluster DNS suffix.</param>
    /// <returns>The fully qualified host, lower case.</returns>
    public static string Qualify(string host, string ruleNamespace, string clusterDomain)
    {
        ArgumentNullException.ThrowIfNull(host);
        var lower = host.ToLowerInvariant();
        return lower == "*" || lower.Contains('.', StringComparison.Ordinal) ? lower : ServiceHost(lower, ruleNamespace, clusterDomain);
    }

    /// <summary>
    /// Returns how specifically <paramref name="pattern"/> (a host, <c>*.suffix</c> or <c>*</c>) names
    /// <paramref name="host"/>: -1 when it does not; otherwise higher is more specific, an exact name highest.
    /// </summary>
    /// <param name="pattern">The host pattern, qualified.</param>
    /// <param name="host">The concrete or wildcard host it is compared with.</param>
    /// <returns>The specificity, or -1.</returns>
    public static int Specificity(string pattern, string host)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(host);
        if (pattern == host)
        {
            return int.MaxValue;
        }

        if (pattern == "*")
        {
            return 0;
        }

        // "*.example.com" names "a.example.com", "a.b.example.com" and the narrower wildcard "*.a.example.com".
        return pattern.StartsWith("*.", StringComparison.Ordinal) && host.EndsWith(pattern[1..], StringComparison.Ordinal) && host.Length > pattern.Length - 1
            ? pattern.Length
            : -1;
    }

    /// <summary>Returns the FQDN of a Kubernetes-style service: <c>name.namespace.svc.clusterDomain</c>.</summary>
    /// <param name="service">The service name.</param>
    /// <param name="ns">The namespace.</param>
    /// <param name="clusterDomain">The cluster DNS suffix.</param>
    /// <returns>The FQDN.</returns>
    public static string ServiceHost(string service, string ns, string clusterDomain) => $"{service}.{ns}.svc.{clusterDomain}";
}
