using System.Net;
using System.Text;
using MeshKit.Http;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Http;

/// <summary>The route timeout over the response body, on a fake clock (the end-to-end tests run it on sockets).</summary>
public sealed class ResponseDeadlineTests
{
    private static readonly UpstreamTimeout Timeout = new("default", "reviews.default.svc.cluster.local", TimeSpan.FromSeconds(2));

    public static TheoryData<string, int, string, bool> Bodies => new()
    {
        { "GET", 200, "stream", true },
        { "GET", 200, "stream, length 0", false },
        { "GET", 200, "bytes", false },
        { "GET", 200, "none", false },
        { "HEAD", 200, "stream", false },
        { "CONNECT", 200, "stream", false },
        { "GET", 101, "stream", false },
        { "GET", 204, "stream", false },
        { "GET", 304, "stream", false },
        { "GET", 500, "stream", true },
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public void OnlyABodyStillToCome_IsCovered(string method, int status, string content, bool covered)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), "http://reviews/");
        using var response = new HttpResponseMessage((HttpStatusCode)status);
        if (content.StartsWith("stream", StringComparison.Ordinal))
        {
            response.Content = new StreamContent(new MemoryStream([1, 2, 3]));
            response.Content.Headers.ContentLength = content.EndsWith("length 0", StringComparison.Ordinal) ? 0 : null;
        }
        else if (content == "bytes")
        {
            response.Content = new ByteArrayContent([1, 2, 3]);
        }

        Assert.Equal(covered, ResponseDeadline.HasBodyToCome(request, response));
    }

    [Fact]
    public async Task AReadPastTheDeadline_Fails_AndSaysWhy()
    {
        var time = new FakeTimeProvider();
        using var response = Stalled(time, out _);

        var body = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[16];
        Assert.Equal(5, await body.ReadAsync(buffer)); // what came in time is read
        var read = body.ReadAsync(buffer).AsTask();
        Assert.False(read.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(2));

        var failure = await Assert.ThrowsAsync<HttpIOException>(() => read);
        Assert.Equal(HttpRequestError.ResponseEnded, failure.HttpRequestError);
        Assert.StartsWith("upstream request timeout: route 'default' of 'reviews.default.svc.cluster.local' took longer than 00:00:02", failure.Message, StringComparison.Ordinal);
        Assert.IsType<TimeoutException>(failure.InnerException);
    }

    [Fact]
    public async Task TheReadersOwnCancellation_IsTheReaders()
    {
        var time = new FakeTimeProvider();
        using var response = Stalled(time, out _);
        var body = await response.Content.ReadAsStreamAsync();
        Assert.Equal(5, await body.ReadAsync(new byte[16]));
        using var reader = new CancellationTokenSource();

        var read = body.ReadAsync(new byte[16], reader.Token).AsTask();
        reader.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read);
    }

    [Fact]
    public async Task TheCallersCancellation_IsNotATimeout()
    {
        var time = new FakeTimeProvider();
        using var caller = new CancellationTokenSource();
        using var response = Stalled(time, out _, caller.Token);
        var body = await response.Content.ReadAsStreamAsync();
        Assert.Equal(5, await body.ReadAsync(new byte[16]));

        var read = body.ReadAsync(new byte[16]).AsTask();
        caller.Cancel();

        var failure = await Assert.ThrowsAnyAsync<Exception>(() => read);
        Assert.IsNotType<HttpIOException>(failure);
    }

    [Fact]
    public async Task ABodyThatEndsInTime_IsWhole_WithItsHeaders_AndEndsTheDeadline()
    {
        var time = new FakeTimeProvider();
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        using var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("whole body"))) };
        response.Content.Headers.TryAddWithoutValidation("Content-Type", "text/plain; charset=utf-8");
        response.Content.Headers.TryAddWithoutValidation("Content-Language", ["en", "fr"]);

        Assert.True(ResponseDeadline.Cover(response, TimeSpan.FromSeconds(2), Timeout, CancellationToken.None, time));

        Assert.IsType<DeadlineContent>(response.Content);
        Assert.Equal("text/plain; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        Assert.Equal(["en", "fr"], response.Content.Headers.ContentLanguage);
        Assert.Equal("whole body", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public void NoTimeLeft_IsTheTimeout()
    {
        using var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new MemoryStream([1])) };

        Assert.False(ResponseDeadline.Cover(response, TimeSpan.Zero, Timeout, CancellationToken.None, new FakeTimeProvider()));
    }

    [Fact]
    public void ASynchronousCopy_IsCutToo()
    {
        var time = new FakeTimeProvider();
        using var response = Stalled(time, out var stream);
        using var sink = new MemoryStream();

        var copy = Task.Run(() => response.Content.CopyTo(sink, null, CancellationToken.None));
        Assert.True(SpinWait.SpinUntil(() => stream.Waiting, TimeSpan.FromSeconds(30)), "the copy waits for the rest of the body");
        time.Advance(TimeSpan.FromSeconds(2));

        var failure = Assert.ThrowsAny<Exception>(() => copy.GetAwaiter().GetResult());
        Assert.IsType<HttpIOException>(failure is HttpRequestException wrapped ? wrapped.InnerException : failure);
        Assert.Equal(5, sink.Length);
    }

    [Theory]
    [InlineData("buffered", 10, true)]
    [InlineData("copied to a pipe", 10, true)]
    [InlineData("read to its end", 10, true)]
    [InlineData("read to its declared length", 10, true)]
    [InlineData("read in part", 4, false)]
    [InlineData("disposed unread", 0, false)]
    public async Task AWatchedBody_TellsItsEnd_OnceWithTheBytesThatCame(string how, long bytes, bool complete)
    {
        var inner = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("whole body")));
        inner.Headers.ContentLength = how == "read to its declared length" ? 10 : null;
        var watched = new WatchedContent(inner);
        var told = new Told();
        watched.Observe(told, messages: null);

        switch (how)
        {
            case "buffered":
                Assert.Equal("whole body", await watched.ReadAsStringAsync());
                break;
            case "copied to a pipe": // a target that cannot tell its length
                var pipe = new System.IO.Pipelines.Pipe();
                await watched.CopyToAsync(pipe.Writer.AsStream());
                break;
            case "read to its end":
                await using (var stream = await watched.ReadAsStreamAsync())
                {
                    Assert.Equal("whole body", await new StreamReader(stream).ReadToEndAsync());
                }

                break;
            case "read to its declared length": // and disposed without the read that finds the end
                await using (var stream = await watched.ReadAsStreamAsync())
                {
                    stream.ReadExactly(new byte[10]);
                }

                break;
            case "read in part":
                await using (var stream = await watched.ReadAsStreamAsync())
                {
                    stream.ReadExactly(new byte[4]);
                }

                break;
        }

        watched.Dispose();
        Assert.Equal([(bytes, complete, false)], told.Ends);
    }

    [Fact]
    public void ABodyCutByTheDeadline_IsToldAsTimedOut()
    {
        var time = new FakeTimeProvider();
        using var response = Stalled(time, out var stream);
        var told = new Told();
        ((WatchedContent)response.Content).Observe(told, messages: null);

        var read = Task.Run(async () => await (await response.Content.ReadAsStreamAsync()).ReadAsync(new byte[64]) + await (await response.Content.ReadAsStreamAsync()).ReadAsync(new byte[64]));
        Assert.True(SpinWait.SpinUntil(() => stream.Waiting, TimeSpan.FromSeconds(30)), "the read waits for the rest of the body");
        time.Advance(TimeSpan.FromSeconds(2));

        Assert.IsType<HttpIOException>(Assert.ThrowsAny<Exception>(() => read.GetAwaiter().GetResult()));
        response.Dispose();
        Assert.Equal([(5L, false, true)], told.Ends);
    }

    private sealed class Told : BodyEnd
    {
        public List<(long Bytes, bool Complete, bool TimedOut)> Ends { get; } = [];

        public override void Ended(long bytes, long messages, bool complete, bool timedOut) => Ends.Add((bytes, complete, timedOut));
    }

    private static HttpResponseMessage Stalled(FakeTimeProvider time, out StallingStream stream, CancellationToken caller = default)
    {
        stream = new StallingStream("first"u8.ToArray());
        var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(stream) };
        Assert.True(ResponseDeadline.Cover(response, TimeSpan.FromSeconds(2), Timeout, caller, time));
        return response;
    }

    /// <summary>Gives its first bytes, then waits for more that never come (until its read is cancelled).</summary>
    private sealed class StallingStream(byte[] first) : Stream
    {
        private bool _gave;
        private volatile bool _waiting;

        public bool Waiting => _waiting;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!_gave)
            {
                _gave = true;
                first.CopyTo(buffer);
                return first.Length;
            }

            _waiting = true;
            await Task.Delay(System.Threading.Timeout.Infinite, cancellationToken);
            return 0;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
