using System.Net;
using Microsoft.Extensions.Primitives;

namespace MeshKit.Security;

/// <summary>
/// The client's address as trusted proxies in front say it in <c>X-Forwarded-For</c>, read as Envoy reads it with
/// <c>xff_num_trusted_hops</c>: each trusted proxy appended the address it got the request from, so with N of them the
/// client is the Nth address from the right. Entries to the left of it are the client's own to write and are never
/// read.
/// </summary>
internal static class ForwardedFor
{
    public const string Header = "x-forwarded-for";

    /// <summary>
    /// Returns the Nth address from the right of the header's values (<paramref name="trustedProxies"/> is N, at
    /// least 1; several header lines read as one list); null when there are fewer, or that entry is not an IP address.
    /// </summary>
    public static IPAddress? Client(StringValues values, int trustedProxies)
    {
        var skip = trustedProxies - 1;
        for (var line = values.Count - 1; line >= 0; line--)
        {
            var text = (values[line] ?? string.Empty).AsSpan();
            while (true)
            {
                var comma = text.LastIndexOf(',');
                if (skip-- == 0)
                {
                    return Parse(text[(comma + 1)..].Trim(" \t"));
                }

                if (comma < 0)
                {
                    break;
                }

                text = text[..comma];
            }
        }

        return null;
    }

    // As a proxy writes it (no port, no brackets); an IPv4 address an IPv6 proxy wrote as IPv4-mapped is IPv4.
    private static IPAddress? Parse(ReadOnlySpan<char> entry) =>
        Addresses.TryParseText(entry, out var address) ? Addresses.Plain(address) : null;
}
