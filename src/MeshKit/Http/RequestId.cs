using Microsoft.AspNetCore.Http;

namespace MeshKit.Http;

/// <summary>
/// Envoy's request id: the <c>x-request-id</c> header, a random UUID (version 4) given to a request that has none, kept
/// when it has one (a caller's, an application's forwarding it). Not a secret and not trusted for anything: it ties the
/// log entries of one request's calls together.
/// </summary>
internal static class RequestId
{
    /// <summary>The header's name, as Envoy writes it.</summary>
    public const string Header = "x-request-id";

    /// <summary>Gives an outbound request an id unless it has one (it keeps it after the call: the application may log it).</summary>
    public static void EnsureOn(HttpRequestMessage request)
    {
        // Unvalidated access: a lookup, no parsing.
        if (!request.Headers.NonValidated.Contains(Header))
        {
            request.Headers.TryAddWithoutValidation(Header, New());
        }
    }

    /// <summary>Gives an inbound request an id unless its caller sent one.</summary>
    public static void EnsureOn(IHeaderDictionary headers)
    {
        if (!headers.ContainsKey(Header))
        {
            headers[Header] = New();
        }
    }

    /// <summary>A random (version 4) UUID.</summary>
    /// <remarks>
    /// From the thread's pseudo-random generator, seeded from the system's: 40 ns here, where <see cref="Guid.NewGuid"/>
    /// asks the system's cryptographic source on every call (650 ns on Linux). An id needs to be unique, not secret;
    /// Envoy's are not cryptographic either.
    /// </remarks>
    internal static string New()
    {
        Span<byte> bytes = stackalloc byte[16];
        Random.Shared.NextBytes(bytes);
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40); // the version (4), in the third group's first digit
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // the variant (RFC 9562)
        return new Guid(bytes).ToString();
    }

    /// <summary>The request's id for a log entry; "-" when it has none.</summary>
    public static string Of(HttpRequestMessage request) =>
        request.Headers.NonValidated.TryGetValues(Header, out var values) ? values.ToString() : "-";

    /// <summary>The request's id for a log entry; "-" when it has none.</summary>
    public static string Of(IHeaderDictionary headers) =>
        headers.TryGetValue(Header, out var values) ? values.ToString() : "-";
}
