using MeshKit.Protocol.ExtAuthz;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;

namespace MeshKit.Security;

/// <summary>
/// Asks an external authorization service about a request that a CUSTOM AuthorizationPolicy matches, with Envoy's
/// <c>ext_authz</c> protocols. gRPC (<c>envoy.service.auth.v3.Authorization/Check</c>): the request's attributes
/// (peers, method, path, host, every header) go in a <c>CheckRequest</c>; an OK status allows, with the answer's
/// header changes; any other status denies with the answer's status, headers and body. HTTP: the check request has
/// the request's method, its path behind the provider's
/// <c>pathPrefix</c>, its <c>Host</c>, <c>Authorization</c> and the headers the provider names, and no body unless the
/// provider asks for it. A 200 answer allows (the named headers of the answer go to the application and to the
/// caller); any other answer is the caller's response (status, body, headers); no answer in time, a failed
/// connection or a 5xx answer is an error: the request is allowed with <c>failOpen</c>, refused with
/// <c>statusOnError</c> (403) otherwise. The call goes through the mesh (discovery, load balancing, mutual TLS).
/// </summary>
internal sealed partial class ExtAuthzClient(IHttpClientFactory clients, TimeProvider time, ILogger<ExtAuthzClient> logger, WorkloadIdentity identity)
{
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<AuthorizationEngine.ExtAuthzSettings, Authorization.AuthorizationClient> _channels = [];

    /// <summary>The name of the <see cref="HttpClient"/> that carries checks.</summary>
    public const string ClientName = "MeshKit.ExtAuthz";

    /// <summary>The header that tells the service whether the body it got is the whole body.</summary>
    public const string PartialBodyHeader = "x-envoy-auth-partial-body";

    /// <summary>Checks the request; false when it is refused, and then the response is written.</summary>
    public async Task<bool> CheckAsync(HttpContext context, AuthorizationEngine.CompiledPolicy policy)
    {
        if (policy.ExtAuthz is not { } provider)
        {
            // A policy that cannot be enforced fails closed.
            Log.Unenforceable(logger, policy.Name, policy.Unenforceable ?? "no provider");
            await WriteAsync(context, StatusCodes.Status403Forbidden, "RBAC: access denied").ConfigureAwait(false);
            return false;
        }

        if (provider.Provider.Grpc)
        {
            return await CheckGrpcAsync(context, policy, provider).ConfigureAwait(false);
        }

        var request = context.Request;
        using var check = new HttpRequestMessage(new HttpMethod(request.Method), provider.BaseUrl + request.Path.ToUriComponent() + request.QueryString.ToUriComponent());
        check.Headers.TryAddWithoutValidation(HeaderNames.Host, request.Host.Value);
        var content = new ByteArrayContent([]);
        check.Content = content;
        if (provider.Provider.MaxRequestBytes > 0)
        {
            if (await BodyForCheckAsync(context, provider).ConfigureAwait(false) is not var (body, partial))
            {
                return false;
            }

            check.Content = content = new ByteArrayContent(body);
            check.Headers.TryAddWithoutValidation(PartialBodyHeader, partial ? "true" : "false");
        }

        foreach (var (name, values) in request.Headers)
        {
            if (Framing(name) || name.Equals(HeaderNames.Host, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            if (name.Equals(HeaderNames.Authorization, StringComparison.OrdinalIgnoreCase) || provider.Sends(name))
            {
                Add(check, name, (IEnumerable<string?>)values);
            }
        }

        foreach (var (name, value) in provider.Provider.IncludeAdditionalHeadersInCheck)
        {
            check.Headers.Remove(name);
            content.Headers.Remove(name);
            Add(check, name, [value]);
        }

        using var deadline = new CancellationTokenSource(provider.Timeout, time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, context.RequestAborted);
        HttpResponseMessage answer;
        try
        {
            answer = await clients.CreateClient(ClientName).SendAsync(check, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !context.RequestAborted.IsCancellationRequested))
        {
            Log.CheckFailed(logger, provider.Provider.Name, ex.Message);
            return await FailAsync(context, provider).ConfigureAwait(false);
        }

        using (answer)
        {
            var status = (int)answer.StatusCode;
            if (status == StatusCodes.Status200OK)
            {
                Allow(context, provider, answer);
                return true;
            }

            if (status >= 500)
            {
                Log.CheckFailed(logger, provider.Provider.Name, $"the service answered {status}");
                return await FailAsync(context, provider).ConfigureAwait(false);
            }

            Log.Denied(logger, request.Method, request.Path.Value ?? string.Empty, policy.Name, provider.Provider.Name, status);
            var response = context.Response;
            response.StatusCode = status;
            foreach (var (name, values) in answer.Headers.Concat(answer.Content.Headers))
            {
                if (!Framing(name) && (provider.AllHeadersOnDeny ? !name.Equals(HeaderNames.Host, StringComparison.OrdinalIgnoreCase) : provider.ToDownstreamOnDeny(name) || AlwaysOnDeny(name)))
                {
                    response.Headers[name] = values.ToArray();
                }
            }

            await using var body = await answer.Content.ReadAsStreamAsync(context.RequestAborted).ConfigureAwait(false);
            await body.CopyToAsync(response.Body, context.RequestAborted).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>Envoy's gRPC protocol: the request's attributes in a <c>CheckRequest</c>; the answer's status decides.</summary>
    private async Task<bool> CheckGrpcAsync(HttpContext context, AuthorizationEngine.CompiledPolicy policy, AuthorizationEngine.ExtAuthzSettings provider)
    {
        var request = context.Request;
        var http = new AttributeContext.Types.HttpRequest
        {
            Id = request.Headers["x-request-id"].ToString() is { Length: > 0 } id ? id : context.TraceIdentifier,
            Method = request.Method,
            Path = request.Path.ToUriComponent() + request.QueryString.ToUriComponent(),
            Host = request.Host.Value ?? string.Empty,
            Scheme = request.Scheme,
            Size = request.ContentLength ?? -1,
            Protocol = request.Protocol,
        };
        foreach (var (name, values) in request.Headers)
        {
            // Envoy's form: names in lower case, repeated values joined.
            http.Headers[name.ToLowerInvariant()] = values.ToString();
        }

        if (provider.Provider.MaxRequestBytes > 0)
        {
            if (await BodyForCheckAsync(context, provider).ConfigureAwait(false) is not var (body, partial))
            {
                return false;
            }

            if (provider.Provider.PackAsBytes)
            {
                http.RawBody = Google.Protobuf.ByteString.CopyFrom(body);
            }
            else
            {
                http.Body = System.Text.Encoding.UTF8.GetString(body);
            }

            http.Headers[PartialBodyHeader] = partial ? "true" : "false";
        }

        var peer = MeshPeer.Of(context);
        var check = new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Source = new AttributeContext.Types.Peer { Address = AddressOf(context.Connection.RemoteIpAddress, context.Connection.RemotePort), Principal = peer?.ToString() ?? string.Empty },
                Destination = new AttributeContext.Types.Peer { Address = AddressOf(context.Connection.LocalIpAddress, context.Connection.LocalPort), Principal = identity.Current?.IdText ?? string.Empty },
                Request = new AttributeContext.Types.Request { Time = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()), Http = http },
            },
        };

        using var deadline = new CancellationTokenSource(provider.Timeout, time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, context.RequestAborted);
        CheckResponse answer;
        try
        {
            answer = await ClientFor(provider).CheckAsync(check, cancellationToken: timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is Grpc.Core.RpcException or HttpRequestException || (ex is OperationCanceledException && !context.RequestAborted.IsCancellationRequested))
        {
            Log.CheckFailed(logger, provider.Provider.Name, ex.Message);
            return await FailAsync(context, provider).ConfigureAwait(false);
        }

        if (answer.Status is null or { Code: 0 })
        {
            if (answer.OkResponse is { } ok)
            {
                foreach (var name in ok.HeadersToRemove)
                {
                    // Host and pseudo-headers stay: the request would be malformed without them (as in Envoy).
                    if (!name.StartsWith(':') && !name.Equals(HeaderNames.Host, StringComparison.OrdinalIgnoreCase))
                    {
                        request.Headers.Remove(name);
                    }
                }

                foreach (var option in ok.Headers)
                {
                    Apply(request.Headers, option);
                }

                if (ok.ResponseHeadersToAdd.Count > 0)
                {
                    var added = ok.ResponseHeadersToAdd;
                    context.Response.OnStarting(() =>
                    {
                        foreach (var option in added)
                        {
                            Apply(context.Response.Headers, option);
                        }

                        return Task.CompletedTask;
                    });
                }
            }

            return true;
        }

        var status = answer.DeniedResponse?.Status is { Code: > 0 } code ? code.Code : StatusCodes.Status403Forbidden;
        Log.Denied(logger, request.Method, request.Path.Value ?? string.Empty, policy.Name, provider.Provider.Name, status);
        context.Response.StatusCode = status;
        if (answer.DeniedResponse is { } denied)
        {
            foreach (var option in denied.Headers)
            {
                if (!Framing(option.Header?.Key ?? string.Empty))
                {
                    Apply(context.Response.Headers, option);
                }
            }

            if (denied.Body.Length > 0)
            {
                await context.Response.WriteAsync(denied.Body, context.RequestAborted).ConfigureAwait(false);
            }
        }

        return false;
    }

    // Envoy's default for these messages is to replace a header (append unset or false); append adds a value.
    private static void Apply(IHeaderDictionary headers, HeaderValueOption option)
    {
        if (option.Header is not { Key.Length: > 0 } header)
        {
            return;
        }

        var value = header.Value.Length > 0 || header.RawValue.IsEmpty ? header.Value : header.RawValue.ToStringUtf8();
        headers[header.Key] = option.Append?.Value == true && headers.TryGetValue(header.Key, out var existing)
            ? Microsoft.Extensions.Primitives.StringValues.Concat(existing, value)
            : value;
    }

    private static MeshKit.Protocol.ExtAuthz.Address AddressOf(System.Net.IPAddress? ip, int port) =>
        new() { SocketAddress = new SocketAddress { Address = ip?.ToString() ?? string.Empty, PortValue = (uint)Math.Max(0, port) } };

    // One channel per provider of a config version (over the mesh's client); dropped with the version.
    private Authorization.AuthorizationClient ClientFor(AuthorizationEngine.ExtAuthzSettings provider) =>
        _channels.GetValue(provider, _newClient ??= p => new Authorization.AuthorizationClient(Grpc.Net.Client.GrpcChannel.ForAddress(p.BaseUrl, new Grpc.Net.Client.GrpcChannelOptions
        {
            HttpClient = clients.CreateClient(ClientName),
            DisposeHttpClient = true,
        })));

    private System.Runtime.CompilerServices.ConditionalWeakTable<AuthorizationEngine.ExtAuthzSettings, Authorization.AuthorizationClient>.CreateValueCallback? _newClient;

    private static void Allow(HttpContext context, AuthorizationEngine.ExtAuthzSettings provider, HttpResponseMessage answer)
    {
        List<KeyValuePair<string, string[]>>? downstream = null;
        foreach (var (name, values) in answer.Headers.Concat(answer.Content.Headers))
        {
            if (Framing(name))
            {
                continue;
            }

            if (provider.ToUpstreamOnAllow(name))
            {
                context.Request.Headers[name] = values.ToArray();
            }

            if (provider.ToDownstreamOnAllow(name))
            {
                (downstream ??= []).Add(new(name, values.ToArray()));
            }
        }

        if (downstream is not null)
        {
            context.Response.OnStarting(() =>
            {
                foreach (var (name, values) in downstream)
                {
                    context.Response.Headers[name] = values;
                }

                return Task.CompletedTask;
            });
        }
    }

    private static async Task<bool> FailAsync(HttpContext context, AuthorizationEngine.ExtAuthzSettings provider)
    {
        if (provider.Provider.FailOpen)
        {
            return true;
        }

        await WriteAsync(context, provider.StatusOnError, string.Empty).ConfigureAwait(false);
        return false;
    }

    /// <summary>
    /// The body for a check (<c>includeRequestBodyInCheck</c>): up to <c>maxRequestBytes</c>, and whether it is cut; null
    /// when a longer body may not be cut, after answering 413.
    /// </summary>
    private static async Task<(byte[] Body, bool Partial)?> BodyForCheckAsync(HttpContext context, AuthorizationEngine.ExtAuthzSettings provider)
    {
        var (body, partial) = await ReadBodyAsync(context.Request, (int)provider.Provider.MaxRequestBytes, context.RequestAborted).ConfigureAwait(false);
        if (partial && !provider.Provider.AllowPartialMessage)
        {
            await WriteAsync(context, StatusCodes.Status413PayloadTooLarge, string.Empty).ConfigureAwait(false);
            return null;
        }

        return (body, partial);
    }

    /// <summary>Reads up to <paramref name="max"/> bytes of the body (what arrives, not what is allowed) and rewinds it for the application.</summary>
    private static async Task<(byte[] Body, bool Partial)> ReadBodyAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        request.EnableBuffering();
        using var body = new MemoryStream();
        var chunk = System.Buffers.ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (body.Length <= max)
            {
                var n = await request.Body.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, max + 1 - body.Length)), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                body.Write(chunk, 0, n);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(chunk);
        }

        request.Body.Position = 0;
        var bytes = body.ToArray();
        return bytes.Length > max ? (bytes[..max], true) : (bytes, false);
    }

    private static void Add(HttpRequestMessage check, string name, IEnumerable<string?> values)
    {
        if (!check.Headers.TryAddWithoutValidation(name, values))
        {
            check.Content!.Headers.TryAddWithoutValidation(name, values);
        }
    }

    private static Task WriteAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        if (text.Length == 0)
        {
            return Task.CompletedTask;
        }

        context.Response.ContentType = "text/plain";
        return context.Response.WriteAsync(text);
    }

    // Framing is the server's own business: the response it writes has its own length and encoding.
    private static bool Framing(string name) =>
        name.Equals(HeaderNames.ContentLength, StringComparison.OrdinalIgnoreCase)
        || name.Equals(HeaderNames.TransferEncoding, StringComparison.OrdinalIgnoreCase)
        || name.Equals(HeaderNames.Connection, StringComparison.OrdinalIgnoreCase)
        || name.Equals(HeaderNames.KeepAlive, StringComparison.OrdinalIgnoreCase);

    // Envoy adds these to a headersToDownstreamOnDeny list (Path and Status are HTTP/2 pseudo-headers here).
    private static bool AlwaysOnDeny(string name) =>
        name.Equals(HeaderNames.WWWAuthenticate, StringComparison.OrdinalIgnoreCase) || name.Equals(HeaderNames.Location, StringComparison.OrdinalIgnoreCase);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "AuthorizationPolicy {Policy} cannot be enforced ({Reason}): request denied", EventName = "ExtAuthzUnenforceable")]
        public static partial void Unenforceable(ILogger logger, string policy, string reason);

        [LoggerMessage(2, LogLevel.Warning, "External authorization '{Provider}' failed: {Error}", EventName = "ExtAuthzFailed")]
        public static partial void CheckFailed(ILogger logger, string provider, string error);

        [LoggerMessage(3, LogLevel.Information, "Denied {Method} {Path} by {Policy}: external authorization '{Provider}' answered {Status}", EventName = "ExtAuthzDenied")]
        public static partial void Denied(ILogger logger, string method, string path, string policy, string provider, int status);
    }
}
