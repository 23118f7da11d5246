using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace MeshKit.Security;

/// <summary>
/// Reads the PROXY protocol header (HAProxy's format, versions 1 and 2) that load balancers in front of the workload
/// put first on each connection (<see cref="MeshOptions.ProxyProtocolFrom"/>), before TLS and HTTP, as Envoy's
/// <c>proxy_protocol</c> listener filter does: the connection's remote address becomes the client's the header names
/// (what the application, <c>remoteIpBlocks</c> and <c>remote.ip</c> see), while the load balancer's own address stays
/// the peer's (<c>ipBlocks</c>, <c>source.ip</c>: Envoy's <c>direct_remote_ip</c>). Only peers in the trusted list
/// are read, and each of them must send a valid header (a connection without one is closed): anyone else could name
/// any client. Others' connections are not read at all; a header they send is just bytes HTTP refuses.
/// </summary>
internal sealed partial class ProxyProtocolReader(IReadOnlyList<IPNetwork> trusted, ILogger logger, TimeProvider time)
{
    /// <summary>The connection item holding the load balancer's own address when a header was read.</summary>
    public const string PeerItemKey = "meshkit.proxy_protocol.peer";

    /// <summary>How long a trusted peer has to send its whole header (Envoy's listener filters wait 15 s).</summary>
    internal static readonly TimeSpan HeaderTimeout = TimeSpan.FromSeconds(10);

    // Version 1 is at most 107 bytes; version 2's addresses and the TLVs a load balancer adds are well under this.
    private const int MaxHeader = 1024;

    private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    /// <summary>The connection middleware: reads a trusted peer's header, then hands the connection on.</summary>
    public async Task ReadAsync(ConnectionContext context, ConnectionDelegate next)
    {
        if (context.RemoteEndPoint is not IPEndPoint { Address: var raw } || !IsTrusted(Addresses.Plain(raw)))
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var peer = Addresses.Plain(raw);
        Header? header;
        using (var timeout = ConnectionDeadline.Start(context, HeaderTimeout, time))
        {
            try
            {
                header = await ReadHeaderAsync(context.Transport.Input, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                header = null;
            }
        }

        if (header is null)
        {
            Log.Refused(logger, peer.ToString());
            context.Abort(new ConnectionAbortedException("no valid PROXY protocol header from a load balancer that must send one"));
            return;
        }

        context.Items[PeerItemKey] = peer;
        if (header.Value.Source is { } source)
        {
            context.RemoteEndPoint = source;
        }

        await next(context).ConfigureAwait(false);
    }

    private bool IsTrusted(IPAddress address)
    {
        foreach (var network in trusted)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    private static async Task<Header?> ReadHeaderAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var outcome = TryParse(buffer, out var header, out var length);
            if (outcome == ParseOutcome.Parsed)
            {
                input.AdvanceTo(buffer.GetPosition(length));
                return header;
            }

            if (outcome == ParseOutcome.Invalid || result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                return null;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>A parsed header: the client's address and port, or null (v1 UNKNOWN, v2 LOCAL or a family without one: keep the connection's).</summary>
    internal readonly record struct Header(IPEndPoint? Source);

    internal enum ParseOutcome
    {
        NeedMore,
        Parsed,
        Invalid,
    }

    /// <summary>Parses a whole header at the start of <paramref name="buffer"/>, and how many bytes it takes.</summary>
    internal static ParseOutcome TryParse(ReadOnlySequence<byte> buffer, out Header header, out int length)
    {
        header = default;
        length = 0;
        Span<byte> start = stackalloc byte[MaxHeader];
        var available = (int)Math.Min(buffer.Length, MaxHeader);
        buffer.Slice(0, available).CopyTo(start);
        var bytes = start[..available];

        // Decide which version it is from as few bytes as tell them apart.
        var v1 = "PROXY "u8;
        var prefix = Math.Min(bytes.Length, v1.Length);
        if (bytes[..prefix].SequenceEqual(v1[..prefix]))
        {
            return prefix < v1.Length ? ParseOutcome.NeedMore : ParseVersion1(bytes, out header, out length);
        }

        prefix = Math.Min(bytes.Length, V2Signature.Length);
        if (bytes[..prefix].SequenceEqual(V2Signature.AsSpan(0, prefix)))
        {
            return prefix < V2Signature.Length ? ParseOutcome.NeedMore : ParseVersion2(bytes, out header, out length);
        }

        return ParseOutcome.Invalid;
    }

    private static ParseOutcome ParseVersion1(ReadOnlySpan<byte> bytes, out Header header, out int length)
    {
        header = default;
        length = 0;
        var end = bytes[..Math.Min(bytes.Length, 107)].IndexOf("\r\n"u8);
        if (end < 0)
        {
            return bytes.Length >= 107 ? ParseOutcome.Invalid : ParseOutcome.NeedMore;
        }

        length = end + 2;
        var fields = Encoding.ASCII.GetString(bytes[6..end]).Split(' ');
        if (fields is ["UNKNOWN", ..])
        {
            return ParseOutcome.Parsed;
        }

        if (fields is not [var family and ("TCP4" or "TCP6"), var source, var destination, var sourcePort, var destinationPort]
            || !TryAddress(source, family, out var client) || !TryAddress(destination, family, out _)
            || !TryPort(sourcePort, out var port) || !TryPort(destinationPort, out _))
        {
            return ParseOutcome.Invalid;
        }

        header = new Header(new IPEndPoint(client, port));
        return ParseOutcome.Parsed;
    }

    private static ParseOutcome ParseVersion2(ReadOnlySpan<byte> bytes, out Header header, out int length)
    {
        header = default;
        length = 0;
        if (bytes.Length < 16)
        {
            return ParseOutcome.NeedMore;
        }

        var size = BinaryPrimitives.ReadUInt16BigEndian(bytes[14..]);
        if (16 + size > MaxHeader)
        {
            return ParseOutcome.Invalid;
        }

        if (bytes.Length < 16 + size)
        {
            return ParseOutcome.NeedMore;
        }

        length = 16 + size;
        var body = bytes.Slice(16, size);
        var (version, command) = (bytes[12] >> 4, bytes[12] & 0x0F);
        if (version != 2 || command > 1)
        {
            return ParseOutcome.Invalid;
        }

        // LOCAL (the balancer's own connection, a health check), UDP, UNIX or unspecified: the connection's addresses stay.
        if (command == 0)
        {
            header = new Header(null);
            return ParseOutcome.Parsed;
        }

        switch (bytes[13])
        {
            case 0x11: // TCP over IPv4
                if (size < 12)
                {
                    return ParseOutcome.Invalid;
                }

                header = new Header(new IPEndPoint(new IPAddress(body[..4]), BinaryPrimitives.ReadUInt16BigEndian(body[8..])));
                return ParseOutcome.Parsed;
            case 0x21: // TCP over IPv6
                if (size < 36)
                {
                    return ParseOutcome.Invalid;
                }

                header = new Header(new IPEndPoint(Addresses.Plain(new IPAddress(body[..16])), BinaryPrimitives.ReadUInt16BigEndian(body[32..])));
                return ParseOutcome.Parsed;
            default:
                header = new Header(null);
                return ParseOutcome.Parsed;
        }
    }

    private static bool TryAddress(string text, string family, out IPAddress address)
    {
        // As the specification writes them: dotted quads for TCP4, IPv6 text for TCP6.
        if (!Addresses.TryParseText(text, out var parsed))
        {
            address = IPAddress.None;
            return false;
        }

        address = parsed;
        return parsed.AddressFamily == (family == "TCP4" ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6);
    }

    private static bool TryPort(string text, out int port) =>
        int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port) && port <= 65535
        && (text.Length == 1 || text[0] != '0'); // no leading zeros, as the specification says

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Closed a connection from {Peer}: a load balancer in Mesh:ProxyProtocolFrom must start every connection with a valid PROXY protocol header", EventName = "ProxyProtocolHeaderMissing")]
        public static partial void Refused(ILogger logger, string peer);
    }
}
