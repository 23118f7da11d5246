using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using MeshKit.Resilience;

namespace MeshKit.Http;

/// <summary>What a route timeout that fired says: the route, its service and the timeout.</summary>
internal readonly record struct UpstreamTimeout(string Route, string Service, TimeSpan After)
{
    /// <summary>Gets the reason given to the caller, in the words of Envoy's local reply.</summary>
    public string Message => $"upstream request timeout: route '{Route}' of '{Service}' took longer than {After}";
}

/// <summary>
/// The route timeout over the response body. Envoy's route timeout runs until the response is complete, not until its
/// headers, and a response whose headers went on before the timeout fired is reset: the headers go to the caller as
/// they arrive, and the body is handed over wrapped (<see cref="DeadlineContent"/>) so that a read past the deadline
/// fails and cuts the upstream stream.
/// </summary>
/// <remarks>
/// Reading a small body of known length ahead, before returning the headers, would turn a late body into a 504, but
/// it would buffer what callers that stream (<c>HttpCompletionOption.ResponseHeadersRead</c>) read as it comes, hold
/// their headers back until the body is in, and it is not what Envoy does.
/// </remarks>
internal static class ResponseDeadline
{
    // The content of a response made without one: nothing to come.
    private static readonly Type EmptyContent = new HttpResponseMessage().Content.GetType();

    /// <summary>
    /// Whether the response has a body that may still be arriving. A tunnel's (an extended CONNECT: a WebSocket over
    /// HTTP/2; an HTTP/1.1 upgrade answers 101) is a duplex stream the application reads and writes: not wrapped.
    /// </summary>
    public static bool HasBodyToCome(HttpRequestMessage request, HttpResponseMessage response)
    {
        var status = (int)response.StatusCode;
        if (status < 200 || status is 204 or 304 || request.Method == HttpMethod.Head || request.Method == HttpMethod.Connect)
        {
            return false;
        }

        var content = response.Content;
        return content.GetType() != EmptyContent && content is not (ByteArrayContent or ReadOnlyMemoryContent) && content.Headers.ContentLength is not 0;
    }

    /// <summary>
    /// Puts the response's body under the deadline <paramref name="left"/> from now. False when no time is left (the
    /// headers came as the deadline passed): the response is then disposed and the call is the route's timeout.
    /// </summary>
    public static bool Cover(HttpResponseMessage response, TimeSpan left, UpstreamTimeout timeout, CancellationToken caller, TimeProvider time)
    {
        if (left <= TimeSpan.Zero)
        {
            response.Dispose();
            return false;
        }

        response.Content = new DeadlineContent(response.Content, CallDeadline.Start(left, caller, time), caller, timeout);
        return true;
    }
}

/// <summary>
/// A response body watched for its end, for what belongs there: the caller's report of the call (<see cref="Observe"/>),
/// with the bytes that came. <see cref="DeadlineContent"/> puts it under a route timeout.
/// </summary>
internal class WatchedContent : WrappedContent, IBodyTally
{
    private readonly long? _declared;
    private int _ended;
    private long _read;
    private Telemetry.LiveStream? _messages; // a gRPC call's, when its messages are counted
    private BodyEnd? _observer;

    public WatchedContent(HttpContent inner)
        : base(inner)
    {
        _declared = inner.Headers.ContentLength;
    }

    /// <summary>Gets whether the body has ended (read to its end, failed, cut or given up).</summary>
    protected bool HasEnded => Volatile.Read(ref _ended) != 0;

    // A reader that took every declared byte need not read on to the end of the stream before disposing it.
    private bool ReadToDeclaredLength => _declared is { } length && _read >= length;

    /// <summary>
    /// Has <paramref name="observer"/> told when the body ends, with its bytes (once; at the latest when it is
    /// disposed), and counts a gRPC call's messages into <paramref name="messages"/> when given.
    /// </summary>
    public void Observe(BodyEnd observer, Telemetry.LiveStream? messages)
    {
        _observer = observer;
        _messages = messages;
    }

    /// <summary>Counts bytes of the body as they go by.</summary>
    public void Count(ReadOnlySpan<byte> read)
    {
        _read += read.Length;
        _messages?.ResponseBytes(read);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        // A seekable target (HttpClient's buffer) tells how much was written to it; another is counted as it is
        // written, when someone is told the count (and messages are counted as they go by). A copy that completes at
        // once costs no async state.
        var origin = stream.CanSeek && _messages is null ? stream.Position : -1;
        var target = origin >= 0 || _observer is null ? stream : new CountingWriteStream(this, stream);
        Task copy;
        try
        {
            copy = Inner.CopyToAsync(target, context, TokenFor(cancellationToken));
        }
        catch (Exception ex)
        {
            copy = Task.FromException(ex);
        }

        if (!copy.IsCompletedSuccessfully)
        {
            return CopyAsync(copy, stream, origin, cancellationToken);
        }

        Copied(stream, origin);
        End(complete: true);
        return Task.CompletedTask;
    }

    // A synchronous copy cannot be cancelled by a token: the asynchronous one, waited for (HttpClient.Send's callers
    // chose to block).
    protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        SerializeToStreamAsync(stream, context, cancellationToken).GetAwaiter().GetResult();

    protected override Task<Stream> CreateContentReadStreamAsync() => CreateContentReadStreamAsync(CancellationToken.None);

    protected override Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken)
    {
        var inner = Inner.ReadAsStreamAsync(cancellationToken);
        return inner.IsCompletedSuccessfully ? Task.FromResult<Stream>(new Reader(this, inner.Result)) : ReaderAsync(inner);
    }

    protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => new Reader(this, Inner.ReadAsStream(cancellationToken));

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            End(ReadToDeclaredLength); // before the inner body is disposed (by the base)
        }

        base.Dispose(disposing);
    }

    /// <summary>The token a read of the body waits under.</summary>
    protected virtual CancellationToken TokenFor(CancellationToken reader) => reader;

    /// <summary>The failure a read that failed with <paramref name="failure"/> becomes; null to let it through as it is.</summary>
    protected virtual HttpIOException? Cut(CancellationToken reader, Exception failure) => null;

    /// <summary>Called once as the body ends; returns whether the route timeout cut it.</summary>
    protected virtual bool Ending(bool complete) => false;

    private async Task<Stream> ReaderAsync(Task<Stream> inner) => new Reader(this, await inner.ConfigureAwait(false));

    private async Task CopyAsync(Task copy, Stream stream, long origin, CancellationToken cancellationToken)
    {
        var complete = false;
        try
        {
            await copy.ConfigureAwait(false);
            complete = true;
        }
        catch (Exception ex) when (Cut(cancellationToken, ex) is { } cut)
        {
            throw cut;
        }
        finally
        {
            Copied(stream, origin);
            End(complete);
        }
    }

    // CanSeek is false once the target is disposed.
    private void Copied(Stream stream, long origin)
    {
        if (origin >= 0 && stream.CanSeek)
        {
            _read += stream.Position - origin;
        }
    }

    /// <summary>Ends the body once: <paramref name="complete"/> when it was read to its end, else cut or given up.</summary>
    private void End(bool complete)
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0)
        {
            var timedOut = Ending(complete);

            // Let go of the observer before telling it: it may serve another call once told.
            var observer = _observer;
            _observer = null;
            observer?.Ended(_read, _messages?.ResponseMessages ?? 0, complete, timedOut);
        }
    }

    /// <summary>The body's stream, each read under the content's token; the body ends with the stream's end.</summary>
    private sealed class Reader(WatchedContent owner, Stream inner) : OneWayStream
    {
        public override bool CanRead => true;

        public override bool CanWrite => false;

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                var read = await inner.ReadAsync(buffer, owner.TokenFor(cancellationToken)).ConfigureAwait(false);
                owner.Count(buffer.Span[..read]);
                if (read == 0 && buffer.Length > 0)
                {
                    owner.End(complete: true);
                }

                return read;
            }
            catch (Exception ex) when (owner.Cut(cancellationToken, ex) is { } cut)
            {
                throw cut;
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        // A synchronous read cannot be cancelled by a token: the asynchronous one, waited for.
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override int Read(Span<byte> buffer)
        {
            var rented = ArrayPool<byte>.Shared.Rent(buffer.Length);
            try
            {
                var read = Read(rented, 0, buffer.Length);
                rented.AsSpan(0, read).CopyTo(buffer);
                return read;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                owner.End(owner.ReadToDeclaredLength);
            }

            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// A response body read under what is left of the route timeout: every read waits at most until the deadline, and a
/// read past it fails with an <see cref="HttpIOException"/> (<see cref="HttpRequestError.ResponseEnded"/>, a
/// <see cref="TimeoutException"/> inside) and cuts the upstream stream. The deadline ends when the body does.
/// </summary>
internal sealed class DeadlineContent(HttpContent inner, CallDeadline deadline, CancellationToken caller, UpstreamTimeout timeout) : WatchedContent(inner)
{
    private CallDeadline _deadline = deadline;
    private CancellationTokenSource? _linked;
    private CancellationToken _linkedReader;
    private bool _cut;

    /// <summary>
    /// The token a read waits under: the deadline's (which the call's own token cancels too), linked with the
    /// reader's when it brings another. A reader keeps its token from read to read (a gRPC call's), so the link is
    /// kept for the next read and ends with the body.
    /// </summary>
    protected override CancellationToken TokenFor(CancellationToken reader)
    {
        if (HasEnded)
        {
            return reader; // the body has ended: the deadline's source may serve another call by now
        }

        if (!reader.CanBeCanceled || reader == caller)
        {
            return _deadline.Token;
        }

        if (_linked is null || reader != _linkedReader)
        {
            _linked?.Dispose();
            _linked = CancellationTokenSource.CreateLinkedTokenSource(reader, _deadline.Token);
            _linkedReader = reader;
        }

        return _linked.Token;
    }

    /// <summary>The failure a read past the deadline becomes; null when the read failed for another reason.</summary>
    protected override HttpIOException? Cut(CancellationToken reader, Exception failure)
    {
        if (HasEnded || reader.IsCancellationRequested || !_deadline.Passed(caller))
        {
            return null;
        }

        // Remembered: the application may cancel its own token next (a gRPC client does), which hides why later.
        _cut = true;
        return new HttpIOException(HttpRequestError.ResponseEnded, $"{timeout.Message}: the response body had not arrived in full", new TimeoutException(timeout.Message, failure));
    }

    protected override bool Ending(bool complete)
    {
        // Whether the route timeout cut it, asked before the deadline's source is reset for another call.
        var timedOut = _cut || (!complete && _deadline.Passed(caller));
        _linked?.Dispose();
        _deadline.End();
        return timedOut;
    }
}

/// <summary>What is told when a watched response body ends (<see cref="WatchedContent.Observe"/>).</summary>
internal abstract class BodyEnd
{
    /// <summary>
    /// The body ended after <paramref name="bytes"/> bytes (<paramref name="messages"/> gRPC messages, when counted):
    /// read to its end (<paramref name="complete"/>), or cut by the route timeout (<paramref name="timedOut"/>), or
    /// failed or given up by the application.
    /// </summary>
    public abstract void Ended(long bytes, long messages, bool complete, bool timedOut);
}
