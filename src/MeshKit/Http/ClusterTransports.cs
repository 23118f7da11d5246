using System.Collections.Concurrent;
using System.Net.Sockets;
using MeshKit.Protocol.V1;

namespace MeshKit.Http;

/// <summary>
/// Connection pools of clusters whose DestinationRule sets connection settings (<c>connectionPool.tcp</c>,
/// <c>http.idleTimeout</c>, <c>h2UpgradePolicy</c>, <c>maxRequestsPerConnection</c>, <c>maxConcurrentStreams</c>): a <see cref="SocketsHttpHandler"/> per cluster, kept across
/// snapshots while its settings stay the same. A pool replaced by new settings is disposed after a grace period, so
/// requests in flight on it finish. Other clusters use the client's own handler.
/// </summary>
internal sealed class ClusterTransports : IDisposable
{
    private static readonly TimeSpan RetireAfter = TimeSpan.FromMinutes(2);
    private readonly ConcurrentDictionary<string, Transport> _transports = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    public ClusterTransports(TimeProvider time) => _time = time;

    public Transport? For(string host, ConnectionSettings? settings)
    {
        if (settings is null)
        {
            Retire(host);
            return null;
        }

        while (true)
        {
            if (_transports.TryGetValue(host, out var existing))
            {
                if (existing.Settings.Equals(settings))
                {
                    return existing;
                }

                var replacement = new Transport(settings);
                if (_transports.TryUpdate(host, replacement, existing))
                {
                    Later(existing);
                    return replacement;
                }

                replacement.Dispose();
                continue;
            }

            var created = new Transport(settings);
            if (_transports.TryAdd(host, created))
            {
                return created;
            }

            created.Dispose();
        }
    }

    public void Retain(IReadOnlySet<string> hosts)
    {
        foreach (var host in _transports.Keys)
        {
            if (!hosts.Contains(host))
            {
                Retire(host);
            }
        }
    }

    public void Dispose()
    {
        foreach (var transport in _transports.Values)
        {
            transport.Dispose();
        }

        _transports.Clear();
    }

    private void Retire(string host)
    {
        if (_transports.TryRemove(host, out var old))
        {
            Later(old);
        }
    }

    private void Later(Transport transport)
    {
        ITimer? timer = null;
        timer = _time.CreateTimer(_ =>
        {
            transport.Dispose();
            timer?.Dispose();
        }, null, RetireAfter, Timeout.InfiniteTimeSpan);
    }

    /// <summary>One cluster's connection pool.</summary>
    internal sealed class Transport : IDisposable
    {
        public Transport(ConnectionSettings settings)
        {
            Settings = settings;
            var handler = new SocketsHttpHandler
            {
                // A mesh hop behaves like a sidecar's: no cookies, no redirects, no decompression of its own.
                UseCookies = false,
                AllowAutoRedirect = false,
                EnableMultipleHttp2Connections = true,
            };
            if (settings.ConnectTimeoutMs > 0)
            {
                handler.ConnectTimeout = TimeSpan.FromMilliseconds(settings.ConnectTimeoutMs);
            }

            if (settings.MaxConnections > 0)
            {
                handler.MaxConnectionsPerServer = (int)settings.MaxConnections;
            }

            if (settings.IdleTimeoutMs > 0)
            {
                handler.PooledConnectionIdleTimeout = TimeSpan.FromMilliseconds(settings.IdleTimeoutMs);
            }

            if (settings.MaxConnectionDurationMs > 0)
            {
                handler.PooledConnectionLifetime = TimeSpan.FromMilliseconds(settings.MaxConnectionDurationMs);
            }

            handler.ConnectCallback = async (context, cancellationToken) =>
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

                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
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

            Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
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

        public HttpMessageInvoker Invoker { get; }

        public bool UpgradeToHttp2 { get; }

        public void Dispose() => Invoker.Dispose();
    }
}
