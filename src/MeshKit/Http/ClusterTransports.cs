using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using MeshKit.Protocol.V1;

namespace MeshKit.Http;

/// <summary>
/// Connection pools of destinations (a service, or a subset or port of it that has a policy of its own) whose
/// DestinationRule sets connection settings (<c>connectionPool.tcp</c>, <c>http.idleTimeout</c>,
/// <c>h2UpgradePolicy</c>, <c>maxRequestsPerConnection</c>, <c>maxConcurrentStreams</c>, <c>proxyProtocol</c>) or TLS origination
/// (<c>tls.mode</c> SIMPLE or MUTUAL): a <see cref="SocketsHttpHandler"/> per destination, by its Envoy-style name
/// (<c>outbound|port|subset|host</c>), kept across snapshots while its settings stay the same. A pool that new
/// settings replace, or whose destination no longer has any, is drained at once, as Envoy drains a changed cluster's
/// pools: its idle connections close, while requests already handed to it (sending, waiting for a connection, or
/// reading a body) finish on it. A later attempt of a call that started before (a retry) goes to the pool that took
/// its place. Other destinations use the client's own handler.
/// </summary>
internal sealed class ClusterTransports : IDisposable
{
    private readonly ConcurrentDictionary<string, Transport> _transports = new(StringComparer.Ordinal);
    private readonly Security.WorkloadIdentity? _identity;
    private Transport? _mesh;

    public ClusterTransports(Security.WorkloadIdentity? identity = null)
    {
        _identity = identity;
    }

    /// <summary>Gets the pool for mutual TLS to clusters without connection settings of their own; null when the workload has no mesh identity.</summary>
    /// <remarks>Read per mutual-TLS request: no closure, only the first read creates it.</remarks>
    public Transport? Mesh => _identity is { Enabled: true } identity ? Volatile.Read(ref _mesh) ?? CreateMesh(identity) : null;

    private Transport CreateMesh(Security.WorkloadIdentity identity)
    {
        var created = new Transport(new ConnectionSettings(), identity);
        if (Interlocked.CompareExchange(ref _mesh, created, null) is { } first)
        {
            created.Dispose();
            return first;
        }

        return created;
    }

    /// <summary>
    /// Returns the pool of the destination <paramref name="name"/> for these settings: the one it has while they stay
    /// the same. A new or replacing pool takes the destination's place (and the one it replaces is retired) only when
    /// the build that asked commits (<paramref name="changes"/>); a build that fails disposes what it created.
    /// </summary>
    public Transport? For(string name, ConnectionSettings? settings, TlsOrigination? origination, LoadBalancing.RuntimeChanges changes)
    {
        if (settings is null && origination is null)
        {
            changes.Defer(() => Retire(name));
            return null;
        }

        settings ??= new ConnectionSettings();
        if (changes.Created.TryGetValue(name, out var pending) && pending.Settings.Equals(settings) && Equals(pending.Origination, origination))
        {
            return pending;
        }

        if (_transports.TryGetValue(name, out var current) && current.Settings.Equals(settings) && Equals(current.Origination, origination))
        {
            return current;
        }

        // The commit installs it in the place of whatever is there then (another build may have committed since),
        // retiring that one.
        var created = new Transport(settings, _identity, origination);
        changes.Created[name] = created;
        changes.Defer(
            () =>
            {
                while (true)
                {
                    if (_transports.TryGetValue(name, out var replaced))
                    {
                        if (_transports.TryUpdate(name, created, replaced))
                        {
                            replaced.Retire(created);
                            return;
                        }
                    }
                    else if (_transports.TryAdd(name, created))
                    {
                        return;
                    }
                }
            },
            created.Dispose);
        return created;
    }

    /// <summary>Retires the pools of destinations no longer in <paramref name="names"/>.</summary>
    public void Retain(IReadOnlySet<string> names)
    {
        foreach (var name in _transports.Keys)
        {
            if (!names.Contains(name))
            {
                Retire(name);
            }
        }
    }

    public void Dispose()
    {
        foreach (var transport in _transports.Values)
        {
            transport.Dispose();
        }

        _mesh?.Dispose();

        _transports.Clear();
    }

    private void Retire(string name)
    {
        if (_transports.TryRemove(name, out var old))
        {
            old.Retire(null);
        }
    }

    /// <summary>
    /// One cluster's connection pools: plain text, and (for a workload with a mesh identity) mutual TLS. They are
    /// separate pools so a connection of one kind is never reused for the other.
    /// </summary>
    internal sealed class Transport : IDisposable
    {
        // The identity each endpoint must prove (secure naming), by the address and port the pool connects to: a request
        // writes its endpoint's entry before it is sent (a lookup, and a write only when new or changed), and reads it
        // when that request opens a connection. Bounded: past MaxExpected entries it starts over, and the next request
        // to each endpoint writes its entry again. Per request this replaces a request option, which allocated the
        // request's option dictionary on every call.
        private const int MaxExpected = 65_536;
        private readonly ConcurrentDictionary<(string Host, int Port), string> _expected = new(HostPortComparer.Instance);

        /// <summary>Records that connections to <paramref name="host"/>:<paramref name="port"/> must prove <paramref name="identity"/>.</summary>
        public void Expect(string host, int port, string identity)
        {
            var key = (host, port);
            if (_expected.TryGetValue(key, out var known) && string.Equals(known, identity, StringComparison.Ordinal))
            {
                return;
            }

            if (_expected.Count >= MaxExpected)
            {
                _expected.Clear();
            }

            _expected[key] = identity;
        }

        /// <summary>Returns the identity a connection to <paramref name="endpoint"/> must prove; null when none was recorded.</summary>
        internal string? ExpectedFor(DnsEndPoint endpoint)
        {
            var host = endpoint.Host;
            if (host.Length > 2 && host[0] == '[' && host[^1] == ']')
            {
                host = host[1..^1];
            }

            return _expected.TryGetValue((host, endpoint.Port), out var identity) ? identity : null;
        }

        private sealed class HostPortComparer : IEqualityComparer<(string Host, int Port)>
        {
            public static readonly HostPortComparer Instance = new();

            public bool Equals((string Host, int Port) x, (string Host, int Port) y) =>
                x.Port == y.Port && string.Equals(x.Host, y.Host, StringComparison.OrdinalIgnoreCase);

            public int GetHashCode((string Host, int Port) obj) => HashCode.Combine(StringComparer.OrdinalIgnoreCase.GetHashCode(obj.Host), obj.Port);
        }

        public Transport(ConnectionSettings settings, Security.WorkloadIdentity? identity = null, TlsOrigination? origination = null)
        {
            Settings = settings;
            Origination = origination;
            Invoker = new HttpMessageInvoker(CreateHandler(settings, null, origination is null ? null : new TlsOriginator(origination)), disposeHandler: true);
            if (identity is { Enabled: true })
            {
                MutualTls = new HttpMessageInvoker(CreateHandler(settings, identity, null, this), disposeHandler: true);
            }

            UpgradeToHttp2 = settings.H2UpgradePolicy == "UPGRADE";
            CloseAfterRequest = settings.MaxRequestsPerConnection == 1;
        }

        /// <summary>
        /// Gets whether each HTTP/1.1 connection carries one request (<c>maxRequestsPerConnection: 1</c>): the request
        /// itself says <c>Connection: close</c>, so the pool never offers the connection again. Higher limits, and every
        /// limit on HTTP/2, are kept by the connection's stream filter.
        /// </summary>
        public bool CloseAfterRequest { get; }

        public ConnectionSettings Settings { get; }

        /// <summary>Gets the DestinationRule's TLS origination (SIMPLE, MUTUAL); null for none.</summary>
        public TlsOrigination? Origination { get; }

        /// <summary>Gets the pool of the cluster's own connections: plain text, or TLS when the rule originates it.</summary>
        public HttpMessageInvoker Invoker { get; }

        /// <summary>Gets the mutual TLS pool; null when the workload has no mesh identity.</summary>
        public HttpMessageInvoker? MutualTls { get; }

        public bool UpgradeToHttp2 { get; }

        /// <summary>Gets whether the pool was retired: it takes no new requests.</summary>
        public bool Retired => _retired;

        // Written before _retired (both volatile), so whoever sees the pool retired sees what replaced it.
        private volatile Transport? _successor;
        private volatile bool _retired;

        /// <summary>
        /// The pool an attempt should use in place of <paramref name="transport"/>: itself while it is in service,
        /// else the one that took its place (null: the destination has no pool of its own now, and the client's
        /// handler or the mesh's mutual-TLS pool serves it, as the snapshot in force says).
        /// </summary>
        public static Transport? InService(Transport? transport)
        {
            while (transport is { _retired: true })
            {
                transport = transport._successor;
            }

            return transport;
        }

        /// <summary>
        /// Takes the pool out of service (<paramref name="successor"/> serves its destination now) and drains it:
        /// disposing a <see cref="SocketsHttpHandler"/> closes its idle connections at once, while requests it already
        /// has (sending, queued for a connection, reading a body) finish on their connections, which close then.
        /// </summary>
        public void Retire(Transport? successor)
        {
            _successor = successor;
            _retired = true;
            Dispose();
        }

        public void Dispose()
        {
            Invoker.Dispose();
            MutualTls?.Dispose();
        }

        internal static SocketsHttpHandler CreateHandler(ConnectionSettings settings, Security.WorkloadIdentity? identity, TlsOriginator? originator, Transport? owner = null)
        {
            var handler = new SocketsHttpHandler
            {
                // A mesh hop behaves like a sidecar's: no cookies, no redirects, no decompression of its own.
                UseCookies = false,
                AllowAutoRedirect = false,
                EnableMultipleHttp2Connections = true,
            };

            // A sidecar connects to the endpoint it picked, never through an HTTP proxy; a connection the mesh secures
            // as it connects (mutual TLS, TLS origination) cannot be handed to one. A plain-text pool asks the
            // process's proxy about endpoints outside the mesh only, as the application's client would; a TLS
            // origination pool opens the proxy's tunnel to such an endpoint itself (below). A PROXY protocol header
            // is for the endpoint, so a pool that writes one connects to the endpoint, as a sidecar does.
            if (identity is not null || originator is not null || settings.ProxyProtocolVersion != 0)
            {
                handler.UseProxy = false;
            }
            else
            {
                handler.Proxy = MeshProxy.Default;
            }

            if (settings.ConnectTimeoutMs > 0)
            {
                handler.ConnectTimeout = TimeSpan.FromMilliseconds(settings.ConnectTimeoutMs);
            }

            if (settings.MaxConnections > 0)
            {
                handler.MaxConnectionsPerServer = (int)settings.MaxConnections;
            }

            if (settings.IdleTimeoutMs == ulong.MaxValue)
            {
                handler.PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan; // tcp.idleTimeout: 0s
            }
            else if (settings.IdleTimeoutMs > 0)
            {
                handler.PooledConnectionIdleTimeout = TimeSpan.FromMilliseconds(settings.IdleTimeoutMs);
            }

            if (settings.MaxConnectionDurationMs > 0)
            {
                handler.PooledConnectionLifetime = TimeSpan.FromMilliseconds(settings.MaxConnectionDurationMs);
            }

            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                if (originator is not null && settings.ProxyProtocolVersion == 0 && ProxyTunnel.For(context) is { } proxy)
                {
                    var tunnel = await ProxyTunnel.OpenAsync(proxy, context.DnsEndPoint, (at, token) => ConnectAsync(settings, at, token), cancellationToken).ConfigureAwait(false);
                    return await originator.ConnectAsync(tunnel, context, cancellationToken).ConfigureAwait(false);
                }

                var network = await ConnectAsync(settings, context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
                return identity is not null ? await MutualTlsAsync(network, identity, owner!, context, cancellationToken).ConfigureAwait(false)
                    : originator is not null ? await originator.ConnectAsync(network, context, cancellationToken).ConfigureAwait(false)
                    : network;
            };

            var maxRequests = (int)Math.Min(settings.MaxRequestsPerConnection, int.MaxValue);
            var maxStreams = settings.MaxConcurrentStreams;
            if (maxRequests > 1 || maxStreams > 0)
            {
                // .NET's pool has no per-connection request or stream limits; they are kept on the connection's bytes.
                var primeTimeout = settings.ConnectTimeoutMs > 0 ? TimeSpan.FromMilliseconds(settings.ConnectTimeoutMs) : TimeSpan.FromSeconds(10);
                handler.PlaintextStreamFilter = async (context, cancellationToken) =>
                {
                    switch (context.NegotiatedHttpVersion.Major)
                    {
                        case 2:
                            var http2 = new Http2ConnectionLimitStream(context.PlaintextStream, maxRequests, maxStreams);
                            if (maxStreams > 0)
                            {
                                await http2.PrimeAsync(primeTimeout, cancellationToken).ConfigureAwait(false);
                            }

                            return http2;
                        case 1 when maxRequests > 1:
                            return new Http1RequestLimitStream(context.PlaintextStream, maxRequests);
                        default:
                            return context.PlaintextStream;
                    }
                };
            }

            return handler;
        }

        /// <summary>ALPN as the pool would choose the version for a plain-text URL: HTTP/2 only when the request insists on it.</summary>
        internal static SslApplicationProtocol AlpnFor(HttpRequestMessage request) =>
            request.Version.Major >= 2 && request.VersionPolicy != HttpVersionPolicy.RequestVersionOrLower
                ? SslApplicationProtocol.Http2
                : SslApplicationProtocol.Http11;

        private static async ValueTask<Stream> ConnectAsync(ConnectionSettings settings, DnsEndPoint endpoint, CancellationToken cancellationToken)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                if (settings.KeepaliveTimeMs > 0 || settings.KeepaliveIntervalMs > 0 || settings.KeepaliveProbes > 0)
                {
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                    if (settings.KeepaliveTimeMs > 0)
                    {
                        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, (int)Math.Max(1, settings.KeepaliveTimeMs / 1000));
                    }

                    if (settings.KeepaliveIntervalMs > 0)
                    {
                        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, (int)Math.Max(1, settings.KeepaliveIntervalMs / 1000));
                    }

                    if (settings.KeepaliveProbes > 0)
                    {
                        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, (int)settings.KeepaliveProbes);
                    }
                }

                await socket.ConnectAsync(endpoint, cancellationToken).ConfigureAwait(false);
                var stream = new NetworkStream(socket, ownsSocket: true);
                if (settings.ProxyProtocolVersion != 0)
                {
                    // First on the connection, before any TLS handshake (Envoy's transport socket wraps the TLS one).
                    await stream.WriteAsync(ProxyProtocolHeader.For(settings.ProxyProtocolVersion, socket.LocalEndPoint, socket.RemoteEndPoint), cancellationToken).ConfigureAwait(false);
                }

                return stream;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        /// <summary>Whether the proved identity is the expected one, or one of the expected ones (comma-separated).</summary>
        internal static bool IsExpected(string proved, string expected)
        {
            foreach (var range in expected.AsSpan().Split(','))
            {
                if (expected.AsSpan(range).SequenceEqual(proved))
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>
        /// The mutual TLS handshake, done here rather than by the pool so that the request opening the connection says
        /// which identity the server must prove (secure naming), and the certificate presented is the one current at
        /// this moment (renewals apply to new connections without a restart). ALPN follows the request's version as
        /// the pool would choose it for a plain-text URL: HTTP/2 only when the request insists on it.
        /// </summary>
        private static async ValueTask<Stream> MutualTlsAsync(Stream network, Security.WorkloadIdentity identity, Transport owner, SocketsHttpConnectionContext context, CancellationToken cancellationToken)
        {
            var request = context.InitialRequestMessage;
            var expected = owner.ExpectedFor(context.DnsEndPoint);
            var current = identity.Current;
            var ssl = new SslStream(network, leaveInnerStreamOpen: false);
            try
            {
                if (current is null || expected is null)
                {
                    throw new AuthenticationException(current is null ? "this workload has no mesh certificate yet" : "no expected peer identity for a mutual TLS connection");
                }

                string? refusal = null;
                await ssl.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = context.DnsEndPoint.Host,
                        ApplicationProtocols = [AlpnFor(request)],
                        ClientCertificateContext = current.Context,
                        RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                        {
                            if (!identity.TryVerify(certificate, chain, Security.CertificateProfile.ServerAuth, out var id, out refusal))
                            {
                                return false;
                            }

                            refusal = $"the server is {id}, but {context.DnsEndPoint.Host}:{context.DnsEndPoint.Port} registered as {expected}";
                            return IsExpected(id.ToString() ?? string.Empty, expected);
                        },
                    },
                    cancellationToken).ConfigureAwait(false);
                return ssl;
            }
            catch (AuthenticationException ex)
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw new HttpRequestException(HttpRequestError.SecureConnectionError, $"mutual TLS to {context.DnsEndPoint.Host}:{context.DnsEndPoint.Port} failed: {ex.Message}", ex);
            }
            catch
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }
}
