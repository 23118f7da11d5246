using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace MeshKit.Http;

/// <summary>
/// Counts the body bytes of a served request and of its response, for Istio's size histograms, the access log's byte
/// counts and the <c>request.size</c> / <c>response.size</c> attributes: Envoy counts the body bytes it received and
/// sent, so a chunked response (ASP.NET Core's JSON results) or a gRPC message, which declare no
/// <c>Content-Length</c>, is sized by what went through, not reported as 0.
/// </summary>
/// <remarks>
/// The response's body feature is wrapped (one small object per request; its stream and writer only when the
/// application asks for them); a request's body only when it has one of unknown length, so a GET or a request with a
/// <c>Content-Length</c> pays nothing. The counts are the bytes the application wrote and read, and for a gRPC call
/// the messages in them, counted into the call's <see cref="ServedStream"/>.
/// </remarks>
internal sealed class BodyMeter : PipeWriter, IHttpResponseBodyFeature, IBodyTally
{
    private readonly IHttpResponseBodyFeature _inner;
    private readonly RequestMeter? _request;
    private readonly ServedStream? _messages; // a gRPC call's, when its messages are counted
    private long _sent;
    private PipeWriter? _writer;
    private CountingWriteStream? _stream;

    private BodyMeter(IHttpResponseBodyFeature inner, RequestMeter? request, ServedStream? messages)
    {
        _inner = inner;
        _request = request;
        _messages = messages;
    }

    /// <summary>
    /// Puts the meter on <paramref name="context"/>'s response body (and its request body when its length is unknown);
    /// for a gRPC call, it counts the messages both ways into <paramref name="messages"/>.
    /// </summary>
    public static BodyMeter Install(HttpContext context, ServedStream? messages)
    {
        var features = context.Features;
        RequestMeter? request = null;
        if (context.Request.ContentLength is null && features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody != false)
        {
            // Both ways into the body: the stream, and the pipe reader Kestrel hands out (taken before the stream is
            // replaced, or Kestrel would adapt the new stream instead).
            var reader = context.Request.BodyReader;
            request = new RequestMeter(reader, context.Request.Body, messages);
            context.Request.Body = request.Stream;
            features.Set<IRequestBodyPipeFeature>(request);
        }

        var meter = new BodyMeter(features.GetRequiredFeature<IHttpResponseBodyFeature>(), request, messages);
        features.Set<IHttpResponseBodyFeature>(meter);
        return meter;
    }

    /// <summary>Gets the response body bytes the application sent.</summary>
    public long Sent => _sent;

    /// <summary>Gets the request's body bytes: its <c>Content-Length</c> when it declared one, else what the application read.</summary>
    public long Received(HttpRequest request) => request.ContentLength ?? _request?.Read ?? 0;

    public Stream Stream => _stream ??= new CountingWriteStream(this, _inner.Stream);

    // The meter is the response's pipe writer itself: one object per request for the common case (an application
    // writing through the pipe, as ASP.NET Core's results do).
    public PipeWriter Writer => this;

    private PipeWriter Inner => _writer ??= _inner.Writer;

    public void DisableBuffering() => _inner.DisableBuffering();

    public Task StartAsync(CancellationToken cancellationToken = default) => _inner.StartAsync(cancellationToken);

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default)
    {
        Count(count ?? Math.Max(0, new FileInfo(path).Length - offset));
        return _inner.SendFileAsync(path, offset, count, cancellationToken);
    }

    Task IHttpResponseBodyFeature.CompleteAsync() => _inner.CompleteAsync();

    public override bool CanGetUnflushedBytes => Inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => Inner.UnflushedBytes;

    public override void Advance(int bytes)
    {
        Count(bytes);
        if (_messages is { } messages)
        {
            messages.ResponseBytes(messages.Lent.Span[..bytes]);
            messages.Lent = default;
        }

        Inner.Advance(bytes);
    }

    // For a gRPC call the memory lent is remembered, so that Advance can read what was written into it.
    public override Memory<byte> GetMemory(int sizeHint = 0) => _messages is { } messages ? messages.Lent = Inner.GetMemory(sizeHint) : Inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => _messages is { } messages ? (messages.Lent = Inner.GetMemory(sizeHint)).Span : Inner.GetSpan(sizeHint);

    public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        Count(source.Span);
        return Inner.WriteAsync(source, cancellationToken);
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => Inner.FlushAsync(cancellationToken);

    public override void CancelPendingFlush() => Inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => Inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => Inner.CompleteAsync(exception);

    // A response is written by one writer at a time (ASP.NET Core's rule), and read here after the pipeline ended.
    private void Count(long bytes) => _sent += bytes;

    /// <summary>Counts what the application wrote through the response's stream.</summary>
    public void Count(ReadOnlySpan<byte> written)
    {
        _sent += written.Length;
        _messages?.ResponseBytes(written);
    }

    /// <summary>
    /// A request body of unknown length (chunked, or an HTTP/2 stream such as a gRPC call's), counted as the
    /// application reads it, through either the stream or the pipe reader.
    /// </summary>
    private sealed class RequestMeter(PipeReader reader, Stream body, ServedStream? messages) : PipeReader, IRequestBodyPipeFeature
    {
        private long _read;
        private ReadOnlySequence<byte> _last;
        private ReadStream? _stream;

        public long Read => _read;

        public Stream Stream => _stream ??= new ReadStream(this, body);

        PipeReader IRequestBodyPipeFeature.Reader => this;

        public override bool TryRead(out ReadResult result)
        {
            if (!reader.TryRead(out result))
            {
                return false;
            }

            _last = result.Buffer;
            return true;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var pending = reader.ReadAsync(cancellationToken);
            if (pending.IsCompletedSuccessfully)
            {
                var result = pending.Result;
                _last = result.Buffer;
                return new(result);
            }

            return Awaited(pending);
        }

        // Pooled: a gRPC call's body comes after its headers, so its first read waits, once per call.
        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<ReadResult> Awaited(ValueTask<ReadResult> pending)
        {
            var result = await pending.ConfigureAwait(false);
            _last = result.Buffer;
            return result;
        }

        // Consumed bytes are the ones read: what is only examined comes again in the next read.
        public override void AdvanceTo(SequencePosition consumed)
        {
            Consumed(consumed);
            reader.AdvanceTo(consumed);
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            Consumed(consumed);
            reader.AdvanceTo(consumed, examined);
        }

        private void Consumed(SequencePosition consumed)
        {
            var read = _last.Slice(_last.Start, consumed);
            _read += read.Length;
            messages?.RequestBytes(read);
            _last = default;
        }

        public override void CancelPendingRead() => reader.CancelPendingRead();

        public override void Complete(Exception? exception = null) => reader.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => reader.CompleteAsync(exception);

        private void Count(ReadOnlySpan<byte> read)
        {
            _read += read.Length;
            messages?.RequestBytes(read);
        }

        /// <summary>The request body as a stream: what is read is counted.</summary>
        private sealed class ReadStream(RequestMeter meter, Stream inner) : OneWayStream
        {
            public override bool CanRead => true;

            public override bool CanWrite => false;

            public override int Read(byte[] buffer, int offset, int count)
            {
                var read = inner.Read(buffer, offset, count);
                meter.Count(buffer.AsSpan(offset, read));
                return read;
            }

            public override int Read(Span<byte> buffer)
            {
                var read = inner.Read(buffer);
                meter.Count(buffer[..read]);
                return read;
            }

            public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            {
                var read = await inner.ReadAsync(buffer.AsMemory(offset, count), cancellationToken).ConfigureAwait(false);
                meter.Count(buffer.AsSpan(offset, read));
                return read;
            }

            public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            {
                var read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                meter.Count(buffer.Span[..read]);
                return read;
            }
        }
    }
}
