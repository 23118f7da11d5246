using System.IO.Compression;
using System.Net;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>The client's automatic decompression, applied by the mesh above its own connections.</summary>
public sealed class DecompressionTests
{
    private static byte[] Encode(string text, Func<Stream, Stream> encoder)
    {
        using var buffer = new MemoryStream();
        using (var encoding = encoder(buffer))
        {
            encoding.Write(System.Text.Encoding.UTF8.GetBytes(text));
        }

        return buffer.ToArray();
    }

    private static HttpResponseMessage Response(byte[] body, params string[] encodings)
    {
        var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(body) };
        response.Content.Headers.ContentType = new("application/json");
        foreach (var encoding in encodings)
        {
            response.Content.Headers.ContentEncoding.Add(encoding);
        }

        return response;
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("deflate")]
    [InlineData("br")]
    public async Task EachEncoding_IsDecoded_ItsOtherHeadersKept_ItsLengthAndEncodingGone(string name)
    {
        Func<Stream, Stream> encoder = name switch
        {
            "gzip" => s => new GZipStream(s, CompressionLevel.Fastest, leaveOpen: true),
            "deflate" => s => new ZLibStream(s, CompressionLevel.Fastest, leaveOpen: true),
            _ => s => new BrotliStream(s, CompressionLevel.Fastest, leaveOpen: true),
        };
        using var response = Decompression.Apply(Response(Encode("{\"a\":1}", encoder), name), DecompressionMethods.All);

        Assert.Equal("{\"a\":1}", await response.Content.ReadAsStringAsync());
        Assert.Empty(response.Content.Headers.ContentEncoding);
        Assert.Null(response.Content.Headers.ContentLength);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task OnlyTheLastEncoding_IsDecoded_AndOnlyWhenTheClientDecodesIt()
    {
        var gzipped = Encode("x", s => new GZipStream(s, CompressionLevel.Fastest, leaveOpen: true));
        using (var layered = Decompression.Apply(Response(gzipped, "identity", "gzip"), DecompressionMethods.GZip))
        {
            Assert.Equal("x", await layered.Content.ReadAsStringAsync());
            Assert.Equal(["identity"], layered.Content.Headers.ContentEncoding);
        }

        using var other = Decompression.Apply(Response(gzipped, "gzip"), DecompressionMethods.Brotli);
        Assert.Equal(gzipped, await other.Content.ReadAsByteArrayAsync());
        Assert.Equal(["gzip"], other.Content.Headers.ContentEncoding);
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("br")]
    public async Task AnEmptyEncodedBody_ReadsAsEmpty(string name)
    {
        // A 204 or a HEAD answer may name an encoding with no body at all.
        using var response = Decompression.Apply(Response([], name), DecompressionMethods.All);
        Assert.Equal(string.Empty, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public void Ask_AddsWhatTheClientDecodes_UnlessTheRequestNamesItAlready()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews/");
        request.Headers.TryAddWithoutValidation("Accept-Encoding", "gzip");
        Decompression.Ask(request, DecompressionMethods.GZip | DecompressionMethods.Brotli);
        Assert.Equal(["gzip", "br"], request.Headers.AcceptEncoding.Select(e => e.Value));
    }

    [Fact]
    public void TakeOver_TurnsThePrimaryHandlersDecompressionOff_AndReturnsItsMethods()
    {
        using var sockets = new SocketsHttpHandler { AutomaticDecompression = DecompressionMethods.GZip | DecompressionMethods.Brotli };
        Assert.Equal(DecompressionMethods.GZip | DecompressionMethods.Brotli, Decompression.TakeOver(sockets));
        Assert.Equal(DecompressionMethods.None, sockets.AutomaticDecompression);

        using var client = new HttpClientHandler { AutomaticDecompression = DecompressionMethods.All };
        Assert.Equal(DecompressionMethods.All, Decompression.TakeOver(client));
        Assert.Equal(DecompressionMethods.None, client.AutomaticDecompression);

        using var none = new SocketsHttpHandler();
        Assert.Equal(DecompressionMethods.None, Decompression.TakeOver(none));
    }
}
