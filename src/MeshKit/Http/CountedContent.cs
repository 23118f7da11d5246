using System.Net;

namespace MeshKit.Http;

/// <summary>
/// A request body of unknown length (streamed, a JSON body, a gRPC call's messages) counted as the transport sends it,
/// for the caller's report: Envoy counts the body bytes it received from the application, where a declared
/// <c>Content-Length</c> says nothing here; for a gRPC call, the messages too (into the call's
/// <see cref="Telemetry.LiveStream"/>). Each sending counts afresh, so a body sent again (an outer handler's retry) is
/// counted once.
/// </summary>
internal sealed class CountedContent : WrappedContent, IBodyTally
{
    private long _sent;
    private Telemetry.LiveStream? _messages; // a gRPC call's, when its messages are counted

    private CountedContent(HttpContent inner)
        : base(inner)
    {
    }

    /// <summary>Gets the bytes sent so far.</summary>
    public long Sent => Volatile.Read(ref _sent);

    /// <summary>
    /// Puts <paramref name="request"/>'s body under a count when the caller's report needs one: a body that declares no
    /// length, or a gRPC call's whose messages are counted into <paramref name="messages"/>. Returns the counted body,
    /// or null when the declared length says it all.
    /// </summary>
    public static CountedContent? Install(HttpRequestMessage request, Telemetry.LiveStream? messages)
    {
        switch (request.Content)
        {
            case CountedContent counted:
                counted._messages = messages; // sent again by a handler above this one: this sending's call counts
                return counted;
            case { } content when messages is not null || content.Headers.ContentLength is null:
                var wrapped = new CountedContent(content) { _messages = messages };
                request.Content = wrapped;
                return wrapped;
            default:
                return null;
        }
    }

    /// <summary>Counts bytes of the body as the transport takes them.</summary>
    public void Count(ReadOnlySpan<byte> written)
    {
        _sent += written.Length;
        _messages?.RequestBytes(written);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        Restart();
        return Inner.CopyToAsync(new CountingWriteStream(this, stream), context, cancellationToken);
    }

    protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        Restart();
        Inner.CopyTo(new CountingWriteStream(this, stream), context, cancellationToken);
    }

    // Read as a stream (not what a transport does), the body is the inner content's, uncounted.
    protected override Task<Stream> CreateContentReadStreamAsync() => Inner.ReadAsStreamAsync();

    protected override Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken) => Inner.ReadAsStreamAsync(cancellationToken);

    protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => Inner.ReadAsStream(cancellationToken);

    private void Restart()
    {
        _sent = 0;
        _messages?.RestartRequests();
    }
}
