using System.Globalization;
using System.Text.RegularExpressions;
using MeshKit.Config.Model;

namespace MeshKit.Config.Parsing;

// HTTPRoute's CORS filter (Gateway API's HTTPCORSFilter, GEP-1767), read into the corsPolicy a VirtualService's rule has.
public static partial class ConfigParser
{
    // <scheme>://<host>[:<port>], the host's leftmost part possibly '*' (any labels to its left).
    private static readonly Regex OriginForm = new(
        @"^(?<scheme>https?)://(?<host>(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)(:(?<port>[0-9]{1,5}))?$",
        RegexOptions.CultureInvariant | RegexOptions.IgnoreCase | RegexOptions.ExplicitCapture);

    private static CorsPolicySpec ReadGatewayCors(MapReader c)
    {
        var origins = new List<StringMatchSpec>();
        var written = c.Strings("allowOrigins");
        for (var i = 0; i < written.Count; i++)
        {
            if (ReadCorsOrigin(c, $"{c.ChildPath("allowOrigins")}[{i}]", written[i], written.Count) is { } origin)
            {
                origins.Add(origin);
            }
        }

        var methods = CorsList(c, "allowMethods", m => m == "*" || HttpMethods.Contains(m), $"one of {string.Join(", ", HttpMethods)} or '*'", StringComparer.Ordinal, wildcardAlone: true);
        var headers = CorsList(c, "allowHeaders", IsHeaderToken, "a header name", StringComparer.OrdinalIgnoreCase, wildcardAlone: false);
        var expose = CorsList(c, "exposeHeaders", IsHeaderToken, "a header name", StringComparer.OrdinalIgnoreCase, wildcardAlone: false);

        // Gateway API's default: browsers keep a preflight's answer 5 s.
        var maxAge = c.Int("maxAge", 1, int.MaxValue) ?? 5;
        return new CorsPolicySpec
        {
            AllowOrigins = origins,
            AllowMethods = methods,
            AllowHeaders = headers,
            ExposeHeaders = expose,
            MaxAge = TimeSpan.FromSeconds(maxAge),
            AllowCredentials = c.Bool("allowCredentials"),
            EchoWildcards = true,
        };
    }

    // An origin as the browser sends it in Origin: lower case, without the scheme's default port.
    private static StringMatchSpec? ReadCorsOrigin(MapReader c, string path, string value, int count)
    {
        if (value == "*")
        {
            if (count > 1)
            {
                c.Context.Error(c.Get("allowOrigins"), path, "'*' allows every origin: it cannot be listed with others (as Gateway API validates)");
            }

            return new StringMatchSpec(StringMatchKind.Regex, ".*");
        }

        var form = OriginForm.Match(value);
        var port = form.Success && form.Groups["port"].Success ? int.Parse(form.Groups["port"].Value, CultureInfo.InvariantCulture) : (int?)null;
        if (!form.Success || port is 0 or > 65535)
        {
            c.Context.Error(c.Get("allowOrigins"), path, $"'{value}' is not an origin: <scheme>://<host>[:<port>], the scheme http or https, a '*' for the host's leftmost labels only");
            return null;
        }

        var scheme = form.Groups["scheme"].Value.ToLowerInvariant();
        var host = form.Groups["host"].Value.ToLowerInvariant();
        var suffix = port is null || port == (scheme == "https" ? 443 : 80) ? string.Empty : $":{port}";
        if (!host.StartsWith('*'))
        {
            return new StringMatchSpec(StringMatchKind.Exact, $"{scheme}://{host}{suffix}");
        }

        // '*' takes any labels to its left: any characters of a host (dots included), but not a port or a path.
        return new StringMatchSpec(StringMatchKind.Regex, $"{Regex.Escape(scheme)}://[^/:]+{Regex.Escape(host[1..] + suffix)}");
    }

    // A set of names (Gateway API's listType=set): each valid, none twice; '*' alone where Gateway API says so (methods).
    private static List<string> CorsList(MapReader c, string key, Func<string, bool> valid, string expected, StringComparer comparer, bool wildcardAlone)
    {
        var values = c.Strings(key);
        var seen = new HashSet<string>(comparer);
        for (var i = 0; i < values.Count; i++)
        {
            var path = $"{c.ChildPath(key)}[{i}]";
            if (!valid(values[i]))
            {
                c.Context.Error(c.Get(key), path, $"'{values[i]}' is not {expected}");
            }
            else if (!seen.Add(values[i]))
            {
                c.Context.Error(c.Get(key), path, $"'{values[i]}' is listed twice");
            }
            else if (wildcardAlone && values[i] == "*" && values.Count > 1)
            {
                c.Context.Error(c.Get(key), path, "'*' allows everything: it cannot be listed with others (as Gateway API validates)");
            }
        }

        return [.. values];
    }
}
