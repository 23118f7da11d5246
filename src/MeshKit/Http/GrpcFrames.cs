using System.Buffers;

namespace MeshKit.Http;

/// <summary>
/// Counts the gRPC messages in a body as its bytes go by, in whatever pieces they come: each message is a 5-byte
/// prefix (a compressed flag and a big-endian length) and that many bytes, as gRPC frames them over HTTP/2. Istio's
/// <c>istio_request_messages_total</c> and <c>istio_response_messages_total</c> count the same (Envoy's gRPC stats
/// filter). A value held by the call's <see cref="Telemetry.LiveStream"/>, one for each direction: a gRPC call pays
/// no object of its own for it, and other bodies' wrappers carry one empty reference.
/// </summary>
internal struct GrpcFrames
{
    private const int PrefixLength = 5;

    private long _payloadLeft; // bytes of the current message still to come
    private int _prefixSeen;   // bytes of the next message's prefix seen so far (0 to 4)
    private uint _length;      // the prefix's length, as far as it has been seen

    /// <summary>Gets the messages begun so far (a message counts from its first byte, as a frame inspector counts frames).</summary>
    public long Count { readonly get; private set; }

    /// <summary>Takes the body's next bytes.</summary>
    public void Add(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            if (_payloadLeft > 0)
            {
                var skip = (int)Math.Min(_payloadLeft, data.Length);
                _payloadLeft -= skip;
                data = data[skip..];
                continue;
            }

            var b = data[0];
            data = data[1..];
            if (_prefixSeen == 0)
            {
                Count++; // the compressed flag: a message begins
                _length = 0;
            }
            else
            {
                _length = (_length << 8) | b;
            }

            if (++_prefixSeen == PrefixLength)
            {
                _prefixSeen = 0;
                _payloadLeft = _length;
            }
        }
    }

    /// <summary>Takes the body's next bytes, in segments.</summary>
    public void Add(in ReadOnlySequence<byte> data)
    {
        foreach (var segment in data)
        {
            Add(segment.Span);
        }
    }
}
