using System.Globalization;
using System.Net;
using System.Net.Http.Headers;

namespace MeshKit.Http;

/// <summary>
/// Responses the mesh makes itself. A gRPC caller gets them as a gRPC "trailers-only" response carrying the status
/// its HTTP code maps to (as Envoy does), so the client sees <c>UNAVAILABLE</c> rather than a protocol error.
/// </summary>
internal static class LocalReply
{
    public static HttpResponseMessage ForGrpc(HttpResponseMessage response)
    {
        var request = response.RequestMessage;
        if (request is null)
        {
            return response;
        }

        response.Version = request.Version;
        if (request.Content?.Headers.ContentType?.MediaType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) != true)
        {
            return response;
        }

        var message = response.ReasonPhrase ?? response.StatusCode.ToString();
        var status = GrpcStatus(response.StatusCode);
        response.StatusCode = HttpStatusCode.OK;
        response.ReasonPhrase = null;
        response.Headers.TryAddWithoutValidation("grpc-status", status.ToString(CultureInfo.InvariantCulture));
        response.Headers.TryAddWithoutValidation("grpc-message", Uri.EscapeDataString(message));
        response.Content = new ByteArrayContent([]);
        response.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        return response;
    }

    // Envoy's HTTP-to-gRPC status mapping for local replies.
    private static int GrpcStatus(HttpStatusCode code) => (int)code switch
    {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 or 502 or 503 or 504 => 14,
        _ => 2,
    };
}
