using MeshKit.Config.Expressions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using A = MeshKit.Config.Expressions.RequestAttributes;

namespace MeshKit.Telemetry;

/// <summary>
/// A finished outbound call as the Telemetry API's expressions see it (Envoy's attributes on the caller's side): an
/// access-log filter, a metric label's value. Rented per thread for one synchronous evaluation: a filter costs no
/// allocation beyond the values it reads that are not already strings (the query, an address).
/// </summary>
internal sealed class OutboundAttributes : ICelContext
{
    private HttpRequestMessage _request = null!;
    private HttpResponseMessage? _response;
    private string _host = string.Empty;
    private double _milliseconds;
    private long _requestBytes;
    private long? _responseBytes;
    private string? _route;
    private string? _upstreamPrincipal;

    /// <summary>Evaluates <paramref name="filter"/> for a call, on a per-thread instance.</summary>
    /// <remarks><paramref name="responseBytes"/>: the response body's bytes, declared or counted; null when not known.</remarks>
    public static bool Passes(CelProgram filter, HttpRequestMessage request, HttpResponseMessage? response, string host, double milliseconds, long requestBytes, long? responseBytes, string? route, string? upstreamPrincipal)
    {
        var attributes = Rent(request, response, host, milliseconds, requestBytes, responseBytes, route, upstreamPrincipal);
        try
        {
            return filter.IsTrue(attributes);
        }
        finally
        {
            attributes.Return();
        }
    }

    /// <summary>Evaluates the Telemetry API's label values (UPSERTs) of <paramref name="side"/> for a call.</summary>
    public static string[] Values(ReportPolicy.Side side, HttpRequestMessage request, HttpResponseMessage? response, string host, double milliseconds, long requestBytes, long? responseBytes, string? route, string? upstreamPrincipal)
    {
        var attributes = Rent(request, response, host, milliseconds, requestBytes, responseBytes, route, upstreamPrincipal);
        try
        {
            return side.Evaluate(attributes);
        }
        finally
        {
            attributes.Return();
        }
    }

    private static OutboundAttributes Rent(HttpRequestMessage request, HttpResponseMessage? response, string host, double milliseconds, long requestBytes, long? responseBytes, string? route, string? upstreamPrincipal)
    {
        var attributes = PerThread<OutboundAttributes>.Rent();
        attributes._responseBytes = responseBytes;
        attributes._request = request;
        attributes._response = response;
        attributes._host = host;
        attributes._milliseconds = milliseconds;
        attributes._requestBytes = requestBytes;
        attributes._route = route;
        attributes._upstreamPrincipal = upstreamPrincipal;
        return attributes;
    }

    private void Return()
    {
        _request = null!;
        _response = null;
        _route = _upstreamPrincipal = null;
        PerThread<OutboundAttributes>.Return(this);
    }

    public CelValue Get(int attribute)
    {
        var uri = _request.RequestUri;
        if (_response is null && attribute is A.ResponseCode or A.ResponseGrpcStatus or A.ResponseSize)
        {
            return CelValue.Error; // no response came (UF, DC)
        }

        return attribute switch
        {
            A.RequestPath => CelValue.Of(uri?.PathAndQuery),
            A.RequestUrlPath => CelValue.Of(uri?.AbsolutePath),
            A.RequestQuery => CelValue.Of(uri is null ? null : uri.Query.Length > 0 ? uri.Query[1..] : string.Empty),
            A.RequestHost => CelValue.Of(_host),
            A.RequestScheme => CelValue.Of(uri?.Scheme),
            A.RequestMethod => CelValue.Of(_request.Method.Method),
            A.RequestReferer => LogProtocol.Entry(this, "Referer"),
            A.RequestUserAgent => LogProtocol.Entry(this, "User-Agent"),
            A.RequestId => LogProtocol.Entry(this, "x-request-id"),
            A.RequestProtocol => CelValue.Of(LogProtocol.Of(_request.Version)),
            A.RequestDuration => CelValue.Of(TimeSpan.FromMilliseconds(_milliseconds)),
            A.RequestSize => CelValue.Of(_requestBytes),
            A.ResponseCode => CelValue.Of((long)_response!.StatusCode),
            A.ResponseGrpcStatus => LogProtocol.GrpcStatus(
                _response!.Headers.NonValidated.TryGetValues("grpc-status", out var h) ? h.ToString()
                : _response.TrailingHeaders.NonValidated.TryGetValues("grpc-status", out var t) ? t.ToString() : null),
            A.ResponseSize => _responseBytes is { } length ? CelValue.Of(length) : CelValue.Error,
            // The application's call reaches MeshKit in process: no downstream connection, so no mutual TLS (as the
            // plain-text connection from an app to its sidecar in Envoy).
            A.ConnectionMtls => CelValue.False,
            A.UpstreamAddress => CelValue.Of(uri?.Authority),
            A.UpstreamPort => uri is null ? CelValue.Error : CelValue.Of((long)uri.Port),
            A.UpstreamPeerUriSan => CelValue.Of(_upstreamPrincipal),
            A.RouteName => CelValue.Of(_route),
            _ => CelValue.Error,
        };
    }

    public bool TryGetEntry(int attribute, string key, out string? value)
    {
        System.Net.Http.Headers.HttpHeaders? headers = attribute == A.RequestHeaders ? _request.Headers : _response?.Headers;
        var content = attribute == A.RequestHeaders ? _request.Content?.Headers : _response?.Content.Headers;
        if ((headers is not null && headers.NonValidated.TryGetValues(key, out var values)) || (content is not null && content.NonValidated.TryGetValues(key, out values)))
        {
            value = values.ToString();
            return true;
        }

        value = null;
        return false;
    }

}

/// <summary>A request this workload served, as the Telemetry API's expressions see it (Envoy's attributes on the server's side).</summary>
internal sealed class InboundAttributes : ICelContext
{
    private HttpContext _context = null!;
    private int _status;
    private double _milliseconds;
    private string? _peer;
    private long _received;
    private long _sent;

    /// <summary>
    /// Evaluates <paramref name="filter"/> for a served request, on a per-thread instance; <paramref name="received"/>
    /// and <paramref name="sent"/> are its body bytes (<see cref="Http.BodyMeter"/>).
    /// </summary>
    public static bool Passes(CelProgram filter, HttpContext context, int status, double milliseconds, string? peer, long received, long sent)
    {
        var attributes = Rent(context, status, milliseconds, peer, received, sent);
        try
        {
            return filter.IsTrue(attributes);
        }
        finally
        {
            attributes.Return();
        }
    }

    /// <summary>Evaluates the Telemetry API's label values (UPSERTs) of <paramref name="side"/> for a served request.</summary>
    public static string[] Values(ReportPolicy.Side side, HttpContext context, int status, double milliseconds, string? peer, long received, long sent)
    {
        var attributes = Rent(context, status, milliseconds, peer, received, sent);
        try
        {
            return side.Evaluate(attributes);
        }
        finally
        {
            attributes.Return();
        }
    }

    private static InboundAttributes Rent(HttpContext context, int status, double milliseconds, string? peer, long received, long sent)
    {
        var attributes = PerThread<InboundAttributes>.Rent();
        attributes._received = received;
        attributes._sent = sent;
        attributes._context = context;
        attributes._status = status;
        attributes._milliseconds = milliseconds;
        attributes._peer = peer;
        return attributes;
    }

    private void Return()
    {
        _context = null!;
        _peer = null;
        PerThread<InboundAttributes>.Return(this);
    }

    public CelValue Get(int attribute)
    {
        var request = _context.Request;
        var connection = _context.Connection;
        return attribute switch
        {
            A.RequestPath => CelValue.Of(request.QueryString.HasValue ? request.Path.Value + request.QueryString.Value : request.Path.Value ?? "/"),
            A.RequestUrlPath => CelValue.Of(request.Path.Value ?? "/"),
            A.RequestQuery => CelValue.Of(request.QueryString.HasValue ? request.QueryString.Value![1..] : string.Empty),
            A.RequestHost => CelValue.Of(request.Host.Host),
            A.RequestScheme => CelValue.Of(request.Scheme),
            A.RequestMethod => CelValue.Of(request.Method),
            A.RequestReferer => LogProtocol.Entry(this, "Referer"),
            A.RequestUserAgent => LogProtocol.Entry(this, "User-Agent"),
            A.RequestId => LogProtocol.Entry(this, "x-request-id"),
            A.RequestProtocol => CelValue.Of(request.Protocol),
            A.RequestDuration => CelValue.Of(TimeSpan.FromMilliseconds(_milliseconds)),
            A.RequestSize => CelValue.Of(_received),
            A.ResponseCode => CelValue.Of((long)_status),
            A.ResponseGrpcStatus => LogProtocol.GrpcStatus(
                _context.Response.Headers.TryGetValue("grpc-status", out var h) ? h.ToString()
                : _context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers.TryGetValue("grpc-status", out var t) == true ? t.ToString() : null),
            A.ResponseSize => CelValue.Of(_sent),
            A.ConnectionMtls => CelValue.Of(_peer is not null),
            A.ConnectionPeerUriSan => CelValue.Of(_peer),
            A.SourceAddress => CelValue.Of(connection.RemoteIpAddress?.ToString()),
            A.SourcePort => connection.RemoteIpAddress is null ? CelValue.Error : CelValue.Of((long)connection.RemotePort),
            A.DestinationAddress => CelValue.Of(connection.LocalIpAddress?.ToString()),
            A.DestinationPort => connection.LocalIpAddress is null ? CelValue.Error : CelValue.Of((long)connection.LocalPort),
            _ => CelValue.Error,
        };
    }

    public bool TryGetEntry(int attribute, string key, out string? value)
    {
        var headers = attribute == A.RequestHeaders ? _context.Request.Headers : _context.Response.Headers;
        if (headers.TryGetValue(key, out var values))
        {
            value = values.ToString();
            return true;
        }

        value = null;
        return false;
    }

}

/// <summary>Values both sides present alike.</summary>
internal static class LogProtocol
{
    public static string Of(Version version) => version.Major switch
    {
        2 => "HTTP/2",
        3 => "HTTP/3",
        _ => version.Minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
    };

    /// <summary>A header of the request, as a string attribute (<c>request.referer</c> and the like).</summary>
    public static CelValue Entry(ICelContext context, string name) =>
        context.TryGetEntry(A.RequestHeaders, name, out var value) ? CelValue.Of(value) : CelValue.Error;

    public static CelValue GrpcStatus(string? text) =>
        long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) ? CelValue.Of(code) : CelValue.Error;
}
