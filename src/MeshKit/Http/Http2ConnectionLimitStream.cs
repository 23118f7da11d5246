using System.Buffers.Binary;

namespace MeshKit.Http;

/// <summary>
/// An HTTP/2 connection's plaintext stream that applies the DestinationRule limits .NET's pool has no setting for:
/// <c>maxConcurrentStreams</c> (the server's SETTINGS_MAX_CONCURRENT_STREAMS is lowered to it as the client reads
/// it, so the pool opens another connection, up to <c>maxConnections</c>, instead of exceeding it) and
/// <c>maxRequestsPerConnection</c> (once that many streams were opened, the client reads a graceful GOAWAY, so the
/// pool stops opening streams on the connection, lets the open ones finish and moves on to a fresh connection).
/// </summary>
/// <remarks>
/// Frames are followed, never reordered: bytes from the server are handed on unchanged except the SETTINGS frame that
/// is rewritten, and the GOAWAY is placed only between two frames. The GOAWAY names the highest stream id, as a
/// server starting a graceful shutdown does, so no stream is refused and none is sent twice; a stream opened
/// concurrently with the limit being reached may still use the connection, so the count can exceed the limit by the
/// number of requests racing it.
/// </remarks>
internal sealed class Http2ConnectionLimitStream : ConnectionStream
{
    private const int FrameHeaderLength = 9;
    private const byte HeadersFrame = 0x1;
    private const byte SettingsFrame = 0x4;
    private const byte GoAwayFrame = 0x7;
    private const ushort MaxConcurrentStreamsSetting = 0x3;
    private const int ClientPrefaceLength = 24;
    private static readonly byte[] ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    private readonly int _maxRequests;
    private readonly uint _maxStreams;
    private readonly TaskCompletionSource _limitReached = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Read side (the server's frames); used by the pool's single reader.
    private readonly byte[] _in = new byte[16384 + FrameHeaderLength];
    private int _inStart;
    private int _inEnd;
    private int _frameLeft;
    private byte[]? _out;
    private int _outOffset;
    private bool _goAwayDelivered;
    private Task<int>? _pendingRead;

    // Write side (the client's frames); writes are serialized by the pool.
    private int _prefaceLeft = ClientPrefaceLength;
    private int _suppressLeft;
    private readonly byte[] _header = new byte[FrameHeaderLength];
    private int _headerFilled;
    private int _payloadLeft;
    private uint _lastStreamId;
    private int _streams;

    public Http2ConnectionLimitStream(Stream inner, int maxRequests, uint maxStreams)
        : base(inner)
    {
        _maxRequests = maxRequests;
        _maxStreams = maxStreams;
    }

    /// <summary>Gets how many streams the client opened on this connection.</summary>
    public int Streams => Volatile.Read(ref _streams);

    // The HTTP/2 pool reads and writes asynchronously only; the synchronous forms exist for completeness.
    public override int Read(byte[] buffer, int offset, int count) =>
        ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        while (true)
        {
            if (_out is not null)
            {
                var n = Math.Min(buffer.Length, _out.Length - _outOffset);
                _out.AsSpan(_outOffset, n).CopyTo(buffer.Span);
                _outOffset += n;
                if (_outOffset == _out.Length)
                {
                    _out = null;
                }

                return n;
            }

            var available = _inEnd - _inStart;
            if (_frameLeft > 0 && available > 0)
            {
                var n = Math.Min(Math.Min(available, _frameLeft), buffer.Length);
                _in.AsSpan(_inStart, n).CopyTo(buffer.Span);
                _inStart += n;
                _frameLeft -= n;
                return n;
            }

            if (_frameLeft == 0)
            {
                if (_limitReached.Task.IsCompleted && !_goAwayDelivered)
                {
                    _goAwayDelivered = true;
                    _out = GracefulGoAway();
                    _outOffset = 0;
                    continue;
                }

                if (available >= FrameHeaderLength)
                {
                    var header = _in.AsSpan(_inStart, FrameHeaderLength);
                    var length = (header[0] << 16) | (header[1] << 8) | header[2];
                    if (header[3] == SettingsFrame && _maxStreams > 0 && (header[4] & 0x1) == 0 && length % 6 == 0 && FrameHeaderLength + length <= _in.Length)
                    {
                        if (available >= FrameHeaderLength + length)
                        {
                            _out = LimitStreams(_in.AsSpan(_inStart, FrameHeaderLength + length));
                            _outOffset = 0;
                            _inStart += FrameHeaderLength + length;
                            continue;
                        }
                    }
                    else
                    {
                        _frameLeft = FrameHeaderLength + length;
                        continue;
                    }
                }
            }

            if (_pendingRead is null)
            {
                if (_inStart > 0)
                {
                    _in.AsSpan(_inStart, _inEnd - _inStart).CopyTo(_in);
                    _inEnd -= _inStart;
                    _inStart = 0;
                }

                // Not cancelled with the caller: a cancelled read leaves the socket read pending for the next call.
                _pendingRead = Inner.ReadAsync(_in.AsMemory(_inEnd), CancellationToken.None).AsTask();
            }

            if (_frameLeft == 0 && !_goAwayDelivered && _maxRequests > 0)
            {
                await Task.WhenAny(_pendingRead, _limitReached.Task).WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await ((Task)_pendingRead).WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            if (_pendingRead.IsCompleted)
            {
                var read = await _pendingRead.ConfigureAwait(false);
                _pendingRead = null;
                if (read == 0)
                {
                    return 0;
                }

                _inEnd += read;
            }
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        buffer = buffer[Suppressed(buffer.Length)..];
        Observe(buffer);
        Inner.Write(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        buffer = buffer[Suppressed(buffer.Length)..];
        Observe(buffer.Span);
        return buffer.IsEmpty ? ValueTask.CompletedTask : Inner.WriteAsync(buffer, cancellationToken);
    }

    /// <summary>
    /// Sends the client's connection preface and waits (up to <paramref name="timeout"/>) for the server's first
    /// SETTINGS frame, so the pool reads the stream limit before it puts a single request on the connection; without
    /// this it would assume the protocol's default of 100 until the frame arrives.
    /// </summary>
    public async ValueTask PrimeAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await Inner.WriteAsync(ClientPreface, cancellationToken).ConfigureAwait(false);
        await Inner.FlushAsync(cancellationToken).ConfigureAwait(false);
        _suppressLeft = ClientPrefaceLength; // the pool's own preface, already sent
        _prefaceLeft = 0;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            while (true)
            {
                if (_inEnd >= FrameHeaderLength)
                {
                    var length = (_in[0] << 16) | (_in[1] << 8) | _in[2];
                    if (_inEnd >= FrameHeaderLength + length || FrameHeaderLength + length > _in.Length)
                    {
                        return;
                    }
                }

                _pendingRead ??= Inner.ReadAsync(_in.AsMemory(_inEnd), CancellationToken.None).AsTask();
                await ((Task)_pendingRead).WaitAsync(deadline.Token).ConfigureAwait(false);
                var read = await _pendingRead.ConfigureAwait(false);
                _pendingRead = null;
                if (read == 0)
                {
                    return; // the pool will see the end of the stream itself
                }

                _inEnd += read;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // A server that waits for more than the preface: the pool starts anyway and reads the frame when it comes.
        }
    }

    private int Suppressed(int length)
    {
        if (_suppressLeft == 0)
        {
            return 0;
        }

        var n = Math.Min(_suppressLeft, length);
        _suppressLeft -= n;
        return n;
    }

    /// <summary>Follows the client's frames to count the streams it opens.</summary>
    private void Observe(ReadOnlySpan<byte> data)
    {
        if (_maxRequests <= 0)
        {
            return;
        }

        while (!data.IsEmpty)
        {
            if (_prefaceLeft > 0)
            {
                var n = Math.Min(_prefaceLeft, data.Length);
                _prefaceLeft -= n;
                data = data[n..];
                continue;
            }

            if (_payloadLeft > 0)
            {
                var n = Math.Min(_payloadLeft, data.Length);
                _payloadLeft -= n;
                data = data[n..];
                continue;
            }

            var take = Math.Min(FrameHeaderLength - _headerFilled, data.Length);
            data[..take].CopyTo(_header.AsSpan(_headerFilled));
            _headerFilled += take;
            data = data[take..];
            if (_headerFilled < FrameHeaderLength)
            {
                return;
            }

            _headerFilled = 0;
            _payloadLeft = (_header[0] << 16) | (_header[1] << 8) | _header[2];
            var streamId = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(5)) & 0x7FFFFFFF;
            if (_header[3] == HeadersFrame && streamId > _lastStreamId)
            {
                _lastStreamId = streamId;
                if (Interlocked.Increment(ref _streams) >= _maxRequests)
                {
                    _limitReached.TrySetResult();
                }
            }
        }
    }

    /// <summary>The server's SETTINGS frame with SETTINGS_MAX_CONCURRENT_STREAMS at most the configured limit.</summary>
    private byte[] LimitStreams(ReadOnlySpan<byte> frame)
    {
        var payload = frame[FrameHeaderLength..];
        for (var i = 0; i < payload.Length; i += 6)
        {
            if (BinaryPrimitives.ReadUInt16BigEndian(payload[i..]) == MaxConcurrentStreamsSetting)
            {
                var copy = frame.ToArray();
                var value = BinaryPrimitives.ReadUInt32BigEndian(payload[(i + 2)..]);
                BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(FrameHeaderLength + i + 2), Math.Min(value, _maxStreams));
                return copy;
            }
        }

        // The server left it unlimited: add the setting.
        var grown = new byte[frame.Length + 6];
        frame.CopyTo(grown);
        var newLength = payload.Length + 6;
        grown[0] = (byte)(newLength >> 16);
        grown[1] = (byte)(newLength >> 8);
        grown[2] = (byte)newLength;
        BinaryPrimitives.WriteUInt16BigEndian(grown.AsSpan(frame.Length), MaxConcurrentStreamsSetting);
        BinaryPrimitives.WriteUInt32BigEndian(grown.AsSpan(frame.Length + 2), _maxStreams);
        return grown;
    }

    private static byte[] GracefulGoAway()
    {
        var frame = new byte[FrameHeaderLength + 8];
        frame[2] = 8;
        frame[3] = GoAwayFrame;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(FrameHeaderLength), 0x7FFFFFFF); // no stream refused
        return frame; // error code NO_ERROR
    }
}
