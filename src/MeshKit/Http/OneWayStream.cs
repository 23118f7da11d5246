namespace MeshKit.Http;

/// <summary>
/// The common part of the body wrappers: a stream read or written one way, never seeked, of no known length. A reader
/// overrides the reads and <see cref="Stream.CanRead"/>, a writer the writes and <see cref="Stream.CanWrite"/>.
/// </summary>
internal abstract class OneWayStream : Stream
{
    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>What a <see cref="CountingWriteStream"/> tells of the bytes written through it.</summary>
internal interface IBodyTally
{
    /// <summary>Takes bytes on their way through (a body's wrapper counts them, and a gRPC call's messages in them).</summary>
    void Count(ReadOnlySpan<byte> written);
}

/// <summary>A stream written through to another, each write told to a tally first: the body wrappers' writing side.</summary>
internal sealed class CountingWriteStream(IBodyTally tally, Stream inner) : OneWayStream
{
    public override bool CanRead => false;

    public override bool CanWrite => true;

    public override void Write(byte[] buffer, int offset, int count)
    {
        tally.Count(buffer.AsSpan(offset, count));
        inner.Write(buffer, offset, count);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        tally.Count(buffer);
        inner.Write(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        tally.Count(buffer.AsSpan(offset, count));
        return inner.WriteAsync(buffer, offset, count, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        tally.Count(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
}
