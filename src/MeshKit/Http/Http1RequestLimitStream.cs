using System.Text;

namespace MeshKit.Http;

/// <summary>
/// An HTTP/1.1 connection's plaintext stream that ends the connection after a number of requests
/// (<c>connectionPool.http.maxRequestsPerConnection</c>): the request that reaches the limit gets
/// <c>Connection: close</c>, so the server answers it and closes, and the pool opens a fresh connection for the next.
/// </summary>
/// <remarks>
/// .NET's pool has no per-connection request count, and a request does not know its connection, so the count is kept
/// where the bytes are: request heads are found by following HTTP/1.1 framing (<c>Content-Length</c> or chunked
/// bodies), never by guessing from reads and writes. Only the head of a request is held (until its blank line); body
/// bytes pass straight through.
/// </remarks>
internal sealed class Http1RequestLimitStream : ConnectionStream
{
    // A head larger than this is passed through uncounted rather than held without bound.
    private const int MaxHeadBytes = 256 * 1024;
    private static readonly byte[] CloseHeader = "Connection: close\r\n"u8.ToArray();

    private readonly int _limit;
    private readonly MemoryStream _head = new();
    private Phase _phase = Phase.Head;
    private int _headMatch;
    private long _remaining;
    private long _chunkSize;
    private bool _chunkSizeEnded;
    private int _lineLength;
    private int _requests;

    public Http1RequestLimitStream(Stream inner, int limit)
        : base(inner)
    {
        _limit = limit;
    }

    private enum Phase
    {
        Head,
        Body,
        ChunkSize,
        ChunkData,
        Trailers,
        Tunnel,
    }

    private enum Step
    {
        Held,
        PassThrough,
        HeadReady,
    }

    /// <summary>Gets how many requests this connection has started.</summary>
    public int Requests => _requests;

    public override int Read(byte[] buffer, int offset, int count) => Inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => Inner.Read(buffer);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var consumed = Advance(buffer, out var step);
            if (step == Step.PassThrough)
            {
                Inner.Write(buffer[..consumed]);
            }
            else if (step == Step.HeadReady)
            {
                Inner.Write(TakeHead().Span);
            }

            buffer = buffer[consumed..];
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (!buffer.IsEmpty)
        {
            var consumed = Advance(buffer.Span, out var step);
            if (step == Step.PassThrough)
            {
                await Inner.WriteAsync(buffer[..consumed], cancellationToken).ConfigureAwait(false);
            }
            else if (step == Step.HeadReady)
            {
                await Inner.WriteAsync(TakeHead(), cancellationToken).ConfigureAwait(false);
            }

            buffer = buffer[consumed..];
        }
    }

    private ReadOnlyMemory<byte> TakeHead()
    {
        var head = _head.ToArray();
        _head.SetLength(0);
        return head;
    }

    /// <summary>Consumes a prefix of <paramref name="input"/> and says what to do with it.</summary>
    private int Advance(ReadOnlySpan<byte> input, out Step step)
    {
        switch (_phase)
        {
            case Phase.Head:
                for (var i = 0; i < input.Length; i++)
                {
                    var b = input[i];
                    _headMatch = b == (_headMatch % 2 == 0 ? (byte)'\r' : (byte)'\n') ? _headMatch + 1 : b == '\r' ? 1 : 0;
                    if (_headMatch == 4)
                    {
                        _head.Write(input[..(i + 1)]);
                        _headMatch = 0;
                        CompleteHead();
                        step = Step.HeadReady;
                        return i + 1;
                    }
                }

                _head.Write(input);
                if (_head.Length > MaxHeadBytes)
                {
                    _phase = Phase.Tunnel;
                    step = Step.HeadReady;
                }
                else
                {
                    step = Step.Held;
                }

                return input.Length;

            case Phase.Body:
            case Phase.ChunkData:
            {
                var n = (int)Math.Min(_remaining, input.Length);
                _remaining -= n;
                if (_remaining == 0)
                {
                    _phase = _phase == Phase.Body ? Phase.Head : Phase.ChunkSize;
                }

                step = Step.PassThrough;
                return n;
            }

            case Phase.ChunkSize:
                step = Step.PassThrough;
                for (var i = 0; i < input.Length; i++)
                {
                    var b = input[i];
                    if (b == '\n')
                    {
                        if (_chunkSize == 0)
                        {
                            _phase = Phase.Trailers;
                            _lineLength = 0;
                        }
                        else
                        {
                            _phase = Phase.ChunkData;
                            _remaining = _chunkSize + 2; // the data and its CRLF
                        }

                        _chunkSize = 0;
                        _chunkSizeEnded = false;
                        return i + 1;
                    }

                    var digit = HexValue(b);
                    if (!_chunkSizeEnded && digit >= 0)
                    {
                        _chunkSize = checked((_chunkSize * 16) + digit);
                    }
                    else
                    {
                        _chunkSizeEnded = true; // ';' extensions or the CR
                    }
                }

                return input.Length;

            case Phase.Trailers:
                step = Step.PassThrough;
                for (var i = 0; i < input.Length; i++)
                {
                    var b = input[i];
                    if (b == '\n')
                    {
                        if (_lineLength == 0)
                        {
                            _phase = Phase.Head;
                            return i + 1;
                        }

                        _lineLength = 0;
                    }
                    else if (b != '\r')
                    {
                        _lineLength++;
                    }
                }

                return input.Length;

            default:
                step = Step.PassThrough;
                return input.Length;
        }
    }

    private void CompleteHead()
    {
        _requests++;
        var text = Encoding.Latin1.GetString(_head.GetBuffer(), 0, (int)_head.Length);
        long contentLength = 0;
        var chunked = false;
        var tunnel = text.StartsWith("CONNECT ", StringComparison.Ordinal);
        foreach (var line in text.Split("\r\n"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                continue;
            }

            var name = line.AsSpan(0, colon).Trim();
            var value = line.AsSpan(colon + 1).Trim();
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                _ = long.TryParse(value, out contentLength);
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                chunked = value.Contains("chunked", StringComparison.OrdinalIgnoreCase);
            }
            else if (name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))
            {
                tunnel = true; // after a 101 the connection is no longer HTTP; the server will not reuse it either
            }
        }

        _phase = tunnel ? Phase.Tunnel : chunked ? Phase.ChunkSize : contentLength > 0 ? Phase.Body : Phase.Head;
        _remaining = contentLength;
        if (_requests >= _limit)
        {
            // Insert before the blank line that ends the head.
            var length = (int)_head.Length;
            var head = _head.GetBuffer().AsSpan(0, length).ToArray();
            _head.SetLength(0);
            _head.Write(head, 0, length - 2);
            _head.Write(CloseHeader);
            _head.Write("\r\n"u8);
        }
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
