using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;

namespace MeshKit.Http;

/// <summary>
/// The client's automatic decompression, applied above the mesh. Through a sidecar an application's client asks for
/// compressed bodies and decompresses them itself; in MeshKit the client's primary handler would do so only for the
/// calls it carries (plain text), not for those on the mesh's own connections (mutual TLS, connection-pool settings),
/// whose bodies came uncompressed, or compressed when the application named an encoding itself. So the mesh does it
/// for every call, as the primary handler's settings say, and turns them off there.
/// </summary>
internal static class Decompression
{
    private static readonly StringWithQualityHeaderValue Gzip = new("gzip");
    private static readonly StringWithQualityHeaderValue Deflate = new("deflate");
    private static readonly StringWithQualityHeaderValue Brotli = new("br");

    /// <summary>
    /// Takes decompression over from <paramref name="primary"/>: turns it off there and returns the methods it used
    /// (none when it used none, or when its settings can no longer change).
    /// </summary>
    public static DecompressionMethods TakeOver(HttpMessageHandler primary)
    {
        try
        {
            switch (primary)
            {
                case SocketsHttpHandler { AutomaticDecompression: not DecompressionMethods.None and var methods } sockets:
                    sockets.AutomaticDecompression = DecompressionMethods.None;
                    return methods;
                case HttpClientHandler { AutomaticDecompression: not DecompressionMethods.None and var methods } client:
                    client.AutomaticDecompression = DecompressionMethods.None;
                    return methods;
                default:
                    return DecompressionMethods.None;
            }
        }
        catch (InvalidOperationException)
        {
            return DecompressionMethods.None;
        }
    }

    /// <summary>Asks for the encodings <paramref name="methods"/> can decode, as .NET's handler does (unless the request names them already).</summary>
    public static void Ask(HttpRequestMessage request, DecompressionMethods methods)
    {
        var accept = request.Headers.AcceptEncoding;
        if ((methods & DecompressionMethods.GZip) != 0 && !accept.Contains(Gzip))
        {
            accept.Add(Gzip);
        }

        if ((methods & DecompressionMethods.Deflate) != 0 && !accept.Contains(Deflate))
        {
            accept.Add(Deflate);
        }

        if ((methods & DecompressionMethods.Brotli) != 0 && !accept.Contains(Brotli))
        {
            accept.Add(Brotli);
        }
    }

    /// <summary>Puts a response body in the last encoding it names under decompression, when <paramref name="methods"/> can decode it.</summary>
    public static HttpResponseMessage Apply(HttpResponseMessage response, DecompressionMethods methods)
    {
        var encodings = response.Content.Headers.ContentEncoding;
        if (encodings.Count == 0)
        {
            return response;
        }

        var last = encodings.Last();
        Func<Stream, Stream>? decoder = last switch
        {
            "gzip" when (methods & DecompressionMethods.GZip) != 0 => static s => new GZipStream(s, CompressionMode.Decompress),
            "deflate" when (methods & DecompressionMethods.Deflate) != 0 => static s => new ZLibStream(s, CompressionMode.Decompress),
            "br" when (methods & DecompressionMethods.Brotli) != 0 => static s => new BrotliStream(s, CompressionMode.Decompress),
            _ => null,
        };
        if (decoder is not null)
        {
            response.Content = new DecompressedContent(response.Content, decoder);
        }

        return response;
    }

    /// <summary>A body read through a decoder: its headers without the encoding it removes, and without a length (unknown until read).</summary>
    private sealed class DecompressedContent : WrappedContent
    {
        private readonly Func<Stream, Stream> _decoder;

        public DecompressedContent(HttpContent inner, Func<Stream, Stream> decoder)
            : base(inner)
        {
            _decoder = decoder;
            Headers.ContentLength = null;

            // The encoding this body is decoded from is gone; any under it stay named.
            var encodings = Headers.ContentEncoding;
            encodings.Remove(encodings.Last());
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            await SerializeToStreamAsync(stream, context, CancellationToken.None).ConfigureAwait(false);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            await using var decoded = await CreateContentReadStreamAsync(cancellationToken).ConfigureAwait(false);
            await decoded.CopyToAsync(stream, cancellationToken).ConfigureAwait(false);
        }

        protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            using var decoded = CreateContentReadStream(cancellationToken);
            decoded.CopyTo(stream);
        }

        protected override Task<Stream> CreateContentReadStreamAsync() => CreateContentReadStreamAsync(CancellationToken.None);

        protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken) =>
            _decoder(await Inner.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false));

        protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => _decoder(Inner.ReadAsStream(cancellationToken));
    }
}
