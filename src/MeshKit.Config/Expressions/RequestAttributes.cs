namespace MeshKit.Config.Expressions;

/// <summary>
/// The attributes an expression of the Telemetry API may name (an access-log filter,
/// <c>accessLogging[].filter.expression</c>, or a metric label's value, <c>metrics[].overrides[].tagOverrides.*.value</c>):
/// Envoy's attribute names and types, those MeshKit knows on a call. An attribute a side does not have (the caller's
/// <c>source.address</c>, the server's <c>upstream.address</c>) is absent there: naming it is an error at evaluation,
/// so the entry is not written unless the rest of the expression decides without it (<c>||</c>, <c>&amp;&amp;</c>).
/// </summary>
internal static class RequestAttributes
{
    public const int RequestPath = 0;
    public const int RequestUrlPath = 1;
    public const int RequestQuery = 2;
    public const int RequestHost = 3;
    public const int RequestScheme = 4;
    public const int RequestMethod = 5;
    public const int RequestHeaders = 6;
    public const int RequestReferer = 7;
    public const int RequestUserAgent = 8;
    public const int RequestId = 9;
    public const int RequestProtocol = 10;
    public const int RequestDuration = 11;
    public const int RequestSize = 12;
    public const int ResponseCode = 13;
    public const int ResponseGrpcStatus = 14;
    public const int ResponseHeaders = 15;
    public const int ResponseSize = 16;
    public const int ConnectionMtls = 17;
    public const int ConnectionPeerUriSan = 18;
    public const int SourceAddress = 19;
    public const int SourcePort = 20;
    public const int DestinationAddress = 21;
    public const int DestinationPort = 22;
    public const int UpstreamAddress = 23;
    public const int UpstreamPort = 24;
    public const int UpstreamPeerUriSan = 25;
    public const int RouteName = 26;

    /// <summary>Gets every attribute, indexed by id.</summary>
    public static IReadOnlyList<CelAttribute> All { get; } =
    [
        new("request.path", CelType.String, RequestPath, "the path with the query string"),
        new("request.url_path", CelType.String, RequestUrlPath, "the path without the query string"),
        new("request.query", CelType.String, RequestQuery, "the query string without the leading '?'"),
        new("request.host", CelType.String, RequestHost, "the host the request names"),
        new("request.scheme", CelType.String, RequestScheme, "http or https"),
        new("request.method", CelType.String, RequestMethod, "GET, POST, ..."),
        new("request.headers", CelType.StringMap, RequestHeaders, "the request's headers by name"),
        new("request.referer", CelType.String, RequestReferer, "the Referer header"),
        new("request.useragent", CelType.String, RequestUserAgent, "the User-Agent header"),
        new("request.id", CelType.String, RequestId, "the x-request-id header"),
        new("request.protocol", CelType.String, RequestProtocol, "HTTP/1.1, HTTP/2 or HTTP/3"),
        new("request.duration", CelType.Duration, RequestDuration, "from the start of the request to its response"),
        new("request.size", CelType.Int, RequestSize, "the request body's size, when known"),
        new("response.code", CelType.Int, ResponseCode, "the HTTP status"),
        new("response.grpc_status", CelType.Int, ResponseGrpcStatus, "the gRPC status of a gRPC call"),
        new("response.headers", CelType.StringMap, ResponseHeaders, "the response's headers by name"),
        new("response.size", CelType.Int, ResponseSize, "the response body's size, when known"),
        new("connection.mtls", CelType.Bool, ConnectionMtls, "whether the downstream connection is mutual TLS (the server's side)"),
        new("connection.uri_san_peer_certificate", CelType.String, ConnectionPeerUriSan, "the verified caller's SPIFFE ID (the server's side)"),
        new("source.address", CelType.String, SourceAddress, "the caller's IP address (the server's side)"),
        new("source.port", CelType.Int, SourcePort, "the caller's port (the server's side)"),
        new("destination.address", CelType.String, DestinationAddress, "the IP address the server received on (the server's side)"),
        new("destination.port", CelType.Int, DestinationPort, "the port the server received on (the server's side)"),
        new("upstream.address", CelType.String, UpstreamAddress, "the endpoint the call went to, host:port (the caller's side)"),
        new("upstream.port", CelType.Int, UpstreamPort, "the endpoint's port (the caller's side)"),
        new("upstream.uri_san_peer_certificate", CelType.String, UpstreamPeerUriSan, "the upstream's SPIFFE ID under mutual TLS (the caller's side)"),
        new("xds.route_name", CelType.String, RouteName, "the VirtualService route's name (the caller's side)"),
    ];

    /// <summary>Compiles a filter; throws <see cref="CelException"/> when it is not a valid bool expression over these attributes.</summary>
    public static CelProgram CompileFilter(string expression)
    {
        var program = CelProgram.Compile(expression, All);
        if (program.Type is not (CelType.Bool or CelType.Dyn))
        {
            throw new CelException($"a filter must be a bool expression; this one is {CelCompiler.Article(program.Type)}", 1);
        }

        return program;
    }

    /// <summary>
    /// Compiles a metric label's value; throws <see cref="CelException"/> unless it is an expression whose value a label
    /// can hold (a string, or a number, bool or duration, written as <c>string()</c> writes it).
    /// </summary>
    public static CelProgram CompileValue(string expression)
    {
        var program = CelProgram.Compile(expression, All);
        if (program.Type is CelType.StringMap or CelType.List or CelType.Null)
        {
            throw new CelException($"a label's value must be a string (or a number, bool or duration); this one is {CelCompiler.Article(program.Type)}", 1);
        }

        return program;
    }
}
