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
