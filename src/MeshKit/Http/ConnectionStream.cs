namespace MeshKit.Http;

/// <summary>
/// The common part of the connection wrappers: a non-seekable duplex stream that owns the connection's stream and
/// passes flushing and disposal to it. Subclasses decide what reading and writing do.
/// </summary>
internal abstract class ConnectionStream : Stream
{
    protected ConnectionStream(Stream inner) => Inner = inner;

    /// <summary>Gets the connection's own stream.</summary>
    protected Stream Inner { get; }

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => Inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => Inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override ValueTask DisposeAsync() => Inner.DisposeAsync();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
