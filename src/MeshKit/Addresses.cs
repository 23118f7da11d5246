using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace MeshKit;

/// <summary>IP addresses as the mesh compares and reads them: one form per address, strict text, networks.</summary>
internal static class Addresses
{
    /// <summary>An IPv4 address a dual-mode socket or an IPv6 writer gives as IPv4-mapped (<c>::ffff:a.b.c.d</c>), as IPv4 again.</summary>
    public static IPAddress Plain(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <summary>
    /// An address as proxies and load balancers write it in headers: dotted-quad IPv4 or IPv6 text, nothing else (no
    /// port, no brackets, no zone, none of the short IPv4 forms <see cref="IPAddress.TryParse(ReadOnlySpan{char}, out IPAddress?)"/> also takes).
    /// </summary>
    public static bool TryParseText(ReadOnlySpan<char> text, [NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        var v6 = text.Contains(':');
        return !text.IsEmpty && !text.ContainsAny('[', ']', '%') && (v6 || text.Count('.') == 3) && IPAddress.TryParse(text, out address);
    }

    /// <summary>An address (a network of its own: /32 or /128) or a CIDR range; IPv4-mapped addresses as IPv4.</summary>
    public static bool TryParseNetwork(string text, out IPNetwork network)
    {
        if (!text.Contains('/') && IPAddress.TryParse(text, out var address))
        {
            address = Plain(address);
            network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            return true;
        }

        return IPNetwork.TryParse(text, out network);
    }
}
