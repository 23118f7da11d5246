using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshKit.Http;

/// <summary>
/// The PROXY protocol header (HAProxy's format, versions 1 and 2) a DestinationRule's <c>proxyProtocol</c> has each new
/// upstream connection start with, before any TLS, as Envoy's upstream PROXY protocol transport socket writes it. A
/// sidecar names its downstream connection's addresses (the application's and the one it called); in process the
/// application's connection is the upstream one, so the header names its two ends: this process's address and port,
/// and the endpoint's.
/// </summary>
internal static class ProxyProtocolHeader
{
    /// <summary>Version 2's fixed opening: CR LF CR LF NUL CR LF "QUIT" LF.</summary>
    private static ReadOnlySpan<byte> Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    /// <summary>Returns the header of <paramref name="version"/> (1 or 2) for a connection from <paramref name="local"/> to <paramref name="remote"/>.</summary>
    public static byte[] For(uint version, EndPoint? local, EndPoint? remote)
    {
        var source = Plain(local);
        var destination = Plain(remote);
        if (source is null || destination is null || source.AddressFamily != destination.AddressFamily)
        {
            // Addresses the format cannot name (not TCP over IP): version 1's UNKNOWN, version 2's LOCAL command, both
            // telling the receiver to use the connection's own addresses.
            return version == 2 ? [.. Signature, 0x20, 0x00, 0x00, 0x00] : "PROXY UNKNOWN\r\n"u8.ToArray();
        }

        var v4 = source.AddressFamily == AddressFamily.InterNetwork;
        if (version != 2)
        {
            return Encoding.ASCII.GetBytes($"PROXY {(v4 ? "TCP4" : "TCP6")} {source.Address} {destination.Address} {source.Port} {destination.Port}\r\n");
        }

        var size = v4 ? 4 : 16;
        var header = new byte[Signature.Length + 4 + (2 * size) + 4];
        Signature.CopyTo(header);
        var rest = header.AsSpan(Signature.Length);
        rest[0] = 0x21; // version 2, PROXY command
        rest[1] = (byte)(v4 ? 0x11 : 0x21); // TCP over IPv4 or IPv6
        BinaryPrimitives.WriteUInt16BigEndian(rest[2..], (ushort)((2 * size) + 4));
        source.Address.TryWriteBytes(rest.Slice(4, size), out _);
        destination.Address.TryWriteBytes(rest.Slice(4 + size, size), out _);
        BinaryPrimitives.WriteUInt16BigEndian(rest[(4 + (2 * size))..], (ushort)source.Port);
        BinaryPrimitives.WriteUInt16BigEndian(rest[(6 + (2 * size))..], (ushort)destination.Port);
        return header;
    }

    /// <summary>
    /// The address as the header names it: an IPv4 address a dual-mode socket reports as IPv6 (<c>::ffff:a.b.c.d</c>)
    /// is IPv4 again, and an IPv6 address loses its scope (which is local to this host).
    /// </summary>
    private static IPEndPoint? Plain(EndPoint? endpoint) => endpoint switch
    {
        IPEndPoint { Address.IsIPv4MappedToIPv6: true } mapped => new IPEndPoint(Addresses.Plain(mapped.Address), mapped.Port),
        IPEndPoint { Address.AddressFamily: AddressFamily.InterNetworkV6, Address.ScopeId: not 0 } scoped => new IPEndPoint(new IPAddress(scoped.Address.GetAddressBytes()), scoped.Port),
        IPEndPoint { Address.AddressFamily: AddressFamily.InterNetwork or AddressFamily.InterNetworkV6 } ip => ip,
        _ => null,
    };
}
