using MeshKit.Config.Model;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Parsing;

// A Gateway API route rule's sessionPersistence (GEP-1619): strong session affinity by a cookie or a header.
public static partial class ConfigParser
{
    /// <summary>The cookie or header name when the rule names none (Gateway API leaves it to the implementation).</summary>
    internal const string DefaultSessionName = "meshkit-session";

    private static SessionPersistenceSpec? ReadGatewaySession(MapReader p)
    {
        var name = p.String("sessionName") ?? DefaultSessionName;
        if (name.Length > 128 || !IsHeaderToken(name))
        {
            p.Context.Error(p.Get("sessionName"), p.ChildPath("sessionName"), $"'{name}' is not a cookie or header name (up to 128 characters of an HTTP token)");
        }

        var type = p.String("type") ?? "Cookie";
        var absolute = p.Duration("absoluteTimeout");
        if (absolute is { } a && a <= TimeSpan.Zero)
        {
            p.Context.Error(p.Get("absoluteTimeout"), p.ChildPath("absoluteTimeout"), "must be longer than 0");
        }

        // Enforcing an idle limit needs the session's last use kept, which the cookie MeshKit writes does not hold.
        p.NotSupported("idleTimeout", DiagnosticSeverity.Error, "a session ends when its cookie does (absoluteTimeout with lifetimeType Permanent), or when its endpoint leaves");
        var lifetime = p.Map("cookieConfig", c =>
        {
            var value = c.String("lifetimeType") ?? "Session";
            if (value is not ("Session" or "Permanent"))
            {
                c.Context.Error(c.Get("lifetimeType"), c.ChildPath("lifetimeType"), $"'{value}' is not one of Session, Permanent");
            }

            return value;
        }) ?? "Session";

        switch (type)
        {
            case "Cookie" when lifetime == "Permanent" && absolute is null:
                p.Context.Error(p.Node, p.ChildPath("absoluteTimeout"), "is required when cookieConfig.lifetimeType is Permanent (as Gateway API validates)");
                return null;
            case "Cookie" when lifetime == "Session" && absolute is not null:
                // A session cookie outlives any timeout the browser is not told of.
                p.Context.Error(p.Get("absoluteTimeout"), p.ChildPath("absoluteTimeout"), "is supported with cookieConfig.lifetimeType Permanent only: the cookie's Max-Age is the session's end");
                return null;
            case "Cookie":
                return new SessionPersistenceSpec(name, null, "/", lifetime == "Permanent" ? absolute : null);
            case "Header" when p.Has("cookieConfig"):
                p.Context.Error(p.Get("cookieConfig"), p.ChildPath("cookieConfig"), "is for type Cookie");
                return null;
            case "Header" when absolute is not null:
                p.Context.Error(p.Get("absoluteTimeout"), p.ChildPath("absoluteTimeout"), "is supported for type Cookie only: a header session ends when its endpoint leaves");
                return null;
            case "Header":
                return new SessionPersistenceSpec(null, name.ToLowerInvariant(), null, null);
            default:
                p.Context.Error(p.Get("type"), p.ChildPath("type"), $"'{type}' is not one of Cookie, Header");
                return null;
        }
    }
}
