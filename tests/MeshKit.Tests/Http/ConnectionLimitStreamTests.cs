using System.Buffers.Binary;
using System.Text;
using MeshKit.Http;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Http;

/// <summary>The byte-level halves of <c>maxRequestsPerConnection</c> and <c>maxConcurrentStreams</c>.</summary>
public sealed class ConnectionLimitStreamTests
{
    private const string Get = "GET /a HTTP/1.1\r\nHost: reviews\r\n\r\n";
    private const string PostWithLength = "POST /b HTTP/1.1\r\nHost: reviews\r\nContent-Length: 12\r\n\r\nbody\r\n\r\nmore";
    private const string PostChunked = "POST /c HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nab\r\n\r\r\n3\r\nxyz\r\n0\r\n\r\n";

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    public async Task Http1_ClosesTheConnectionOnTheRequestThatReachesTheLimit_WhateverTheWriteBoundaries(int chunk)
    {
        // Bodies contain blank lines: only framing tells a body from the next head.
        var requests = new[] { PostWithLength, PostChunked, Get, Get };
        using var sink = new MemoryStream();
        var stream = new Http1RequestLimitStream(sink, limit: 3);
        var bytes = Encoding.ASCII.GetBytes(string.Concat(requests));

        for (var i = 0; i < bytes.Length; i += chunk)
        {
            await stream.WriteAsync(bytes.AsMemory(i, Math.Min(chunk, bytes.Length - i)));
        }

        var expected = PostWithLength + PostChunked + Get.Replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n", StringComparison.Ordinal) + Get.Replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n", StringComparison.Ordinal);
        Assert.Equal(expected, Encoding.ASCII.GetString(sink.ToArray()));
        Assert.Equal(4, stream.Requests);
    }

    [Fact]
    public void Http1_SynchronousWritesAreCountedToo()
    {
        using var sink = new MemoryStream();
        var stream = new Http1RequestLimitStream(sink, limit: 2);

        stream.Write(Encoding.ASCII.GetBytes(Get + Get));

        Assert.Equal(Get + Get.Replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n", StringComparison.Ordinal), Encoding.ASCII.GetString(sink.ToArray()));
    }

    [Theory]
    [InlineData(true, 100u, 2u)]
    [InlineData(true, 1u, 1u)]
    [InlineData(false, 0u, 2u)]
    public async Task Http2_LowersTheServersStreamLimit_OrAddsOne(bool serverSetsIt, uint serverValue, uint expected)
    {
        using var server = new MemoryStream();
        var settings = new List<(ushort, uint)> { (0x4, 65535) };
        if (serverSetsIt)
        {
            settings.Add((0x3, serverValue));
        }

        server.Write(Frame(0x4, 0, 0, Settings(settings)));
        server.Write(Frame(0x0, 0x1, 1, "data"u8.ToArray()));
        server.Position = 0;
        var stream = new Http2ConnectionLimitStream(server, maxRequests: 0, maxStreams: 2);

        var received = await ReadAllAsync(stream);

        var length = (received[0] << 16) | (received[1] << 8) | received[2];
        var values = new Dictionary<ushort, uint>();
        for (var i = 0; i < length; i += 6)
        {
            values[BinaryPrimitives.ReadUInt16BigEndian(received.AsSpan(9 + i))] = BinaryPrimitives.ReadUInt32BigEndian(received.AsSpan(11 + i));
        }

        Assert.Equal(expected, values[0x3]);
        Assert.Equal(65535u, values[0x4]);
        Assert.Equal(Frame(0x0, 0x1, 1, "data"u8.ToArray()), received[(9 + length)..]);
    }

    [Fact]
    public async Task Http2_AfterTheLimitOfStreams_TheClientReadsAGracefulGoAway_BetweenFrames()
    {
        var pipe = new DuplexPipeStream();
        var stream = new Http2ConnectionLimitStream(pipe, maxRequests: 2, maxStreams: 0);
        var preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        await stream.WriteAsync(preface.Concat(Frame(0x4, 0, 0, [])).ToArray());

        // The server is half-way through a DATA frame when the limit is reached: the GOAWAY must wait for its end.
        var data = Frame(0x0, 0, 1, new byte[100]);
        pipe.Feed(data[..50]);
        var buffer = new byte[1024];
        Assert.Equal(50, await stream.ReadAsync(buffer));
        await stream.WriteAsync(Frame(0x1, 0x4, 1, [1, 2, 3]));
        await stream.WriteAsync(Frame(0x1, 0x4, 1, [1, 2, 3])); // trailers of stream 1: not a new stream
        Assert.Equal(1, stream.Streams);
        var second = Frame(0x1, 0x4, 3, [4, 5]);
        await stream.WriteAsync(second.AsMemory(0, 4));
        await stream.WriteAsync(second.AsMemory(4));
        Assert.Equal(2, stream.Streams);

        var pending = stream.ReadAsync(buffer).AsTask();
        await Task.Delay(50);
        Assert.False(pending.IsCompleted, "no GOAWAY inside a frame");
        pipe.Feed(data[50..]);
        Assert.Equal(59, await pending);

        var goAway = new byte[17];
        Assert.Equal(17, await stream.ReadAsync(goAway));
        Assert.Equal(0x7, goAway[3]);
        Assert.Equal(0x7FFFFFFFu, BinaryPrimitives.ReadUInt32BigEndian(goAway.AsSpan(9)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(goAway.AsSpan(13)));

        // Frames after it arrive unchanged.
        var ping = Frame(0x6, 0, 0, new byte[8]);
        pipe.Feed(ping);
        var next = new byte[64];
        Assert.Equal(ping.Length, await stream.ReadAsync(next));
        Assert.Equal(ping, next[..ping.Length]);
    }

    [Fact]
    public async Task Http2_Priming_SendsThePrefaceOnce_AndHasTheServersLimitReadyBeforeTheFirstRequest()
    {
        var pipe = new DuplexPipeStream();
        var stream = new Http2ConnectionLimitStream(pipe, maxRequests: 0, maxStreams: 1);
        var preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

        var priming = stream.PrimeAsync(TimeSpan.FromSeconds(30), CancellationToken.None).AsTask();
        await Eventually.TrueAsync(() => pipe.Written.Length == preface.Length, "the preface goes out first");
        Assert.False(priming.IsCompleted, "priming waits for the server's SETTINGS");
        var settings = Frame(0x4, 0, 0, Settings([(0x3, 10)]));
        pipe.Feed(settings[..5]);
        pipe.Feed(settings[5..]);
        await priming;

        var clientSettings = Frame(0x4, 0, 0, []);
        await stream.WriteAsync(preface.Concat(clientSettings).ToArray());
        Assert.Equal(preface.Concat(clientSettings).ToArray(), pipe.Written);
        var received = new byte[64];
        Assert.Equal(15, await stream.ReadAsync(received));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(received.AsSpan(11)));
    }

    [Fact]
    public async Task Http2_Priming_GivesUpOnASilentServer_AndTheFrameIsStillReadLater()
    {
        var pipe = new DuplexPipeStream();
        var stream = new Http2ConnectionLimitStream(pipe, maxRequests: 0, maxStreams: 1);

        await stream.PrimeAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None);
        var read = stream.ReadAsync(new byte[64]).AsTask();
        pipe.Feed(Frame(0x4, 0, 0, Settings([(0x3, 10)])));

        Assert.Equal(15, await read);
    }

    private static async Task<byte[]> ReadAllAsync(Stream stream)
    {
        using var all = new MemoryStream();
        var buffer = new byte[7]; // small reads cross frame boundaries
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        return all.ToArray();
    }

    private static byte[] Settings(IEnumerable<(ushort Id, uint Value)> settings)
    {
        var list = settings.ToList();
        var payload = new byte[list.Count * 6];
        for (var i = 0; i < list.Count; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(i * 6), list[i].Id);
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan((i * 6) + 2), list[i].Value);
        }

        return payload;
    }

    private static byte[] Frame(byte type, byte flags, uint stream, byte[] payload)
    {
        var frame = new byte[9 + payload.Length];
        frame[0] = (byte)(payload.Length >> 16);
        frame[1] = (byte)(payload.Length >> 8);
        frame[2] = (byte)payload.Length;
        frame[3] = type;
        frame[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), stream);
        payload.CopyTo(frame, 9);
        return frame;
    }

    /// <summary>Reads what the test feeds, when it feeds it; keeps what is written.</summary>
    private sealed class DuplexPipeStream : Stream
    {
        private readonly System.Threading.Channels.Channel<byte[]> _chunks = System.Threading.Channels.Channel.CreateUnbounded<byte[]>();
        private readonly MemoryStream _written = new();
        private byte[] _current = [];
        private int _offset;

        public byte[] Written
        {
            get
            {
                lock (_written)
                {
                    return _written.ToArray();
                }
            }
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Feed(byte[] bytes) => _chunks.Writer.TryWrite(bytes);

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_offset == _current.Length)
            {
                _current = await _chunks.Reader.ReadAsync(cancellationToken);
                _offset = 0;
            }

            var n = Math.Min(buffer.Length, _current.Length - _offset);
            _current.AsSpan(_offset, n).CopyTo(buffer.Span);
            _offset += n;
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (_written)
            {
                _written.Write(buffer, offset, count);
            }
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            lock (_written)
            {
                _written.Write(buffer.Span);
            }

            return ValueTask.CompletedTask;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
