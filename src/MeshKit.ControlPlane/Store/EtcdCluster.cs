using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Store;

/// <summary>
/// A connection to an etcd cluster through etcd's v3 gRPC API (the generated clients of the dotnet-etcd package) with
/// failover: a call that finds its member unavailable moves on to the next member, so losing one member of three is
/// not noticed beyond one retried call. Watches resume from the last revision they saw.
/// </summary>
internal sealed partial class EtcdCluster : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    private readonly GrpcChannel[] _channels;
    private readonly ILogger<EtcdCluster> _logger;
    private readonly TimeProvider _time;
    private int _current;

    public EtcdCluster(IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<EtcdCluster> logger)
        : this(ParseEndpoints(options.Value.EtcdEndpoints), options.Value.EtcdPrefix, time, logger)
    {
    }

    public EtcdCluster(IReadOnlyList<Uri> endpoints, string prefix, TimeProvider time, ILogger<EtcdCluster> logger)
    {
        _time = time;
        if (endpoints.Count == 0)
        {
            throw new InvalidOperationException("ControlPlane:EtcdEndpoints is empty: give one or more etcd client URLs (http://127.0.0.1:2379,...)");
        }

        _logger = logger;
        Prefix = prefix.TrimEnd('/');
        Endpoints = endpoints;
        _channels = endpoints.Select(e => GrpcChannel.ForAddress(e, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                ConnectTimeout = TimeSpan.FromSeconds(2),
                KeepAlivePingDelay = TimeSpan.FromSeconds(10),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            },
            DisposeHttpClient = true,
        })).ToArray();
        _current = Random.Shared.Next(_channels.Length);
    }

    /// <summary>Gets the key prefix every MeshKit key lives under (no trailing slash), e.g. <c>/meshkit</c>.</summary>
    public string Prefix { get; }

    public IReadOnlyList<Uri> Endpoints { get; }

    public static IReadOnlyList<Uri> ParseEndpoints(string endpoints) =>
        endpoints.Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(e => new Uri(e.Contains("://", StringComparison.Ordinal) ? e : "http://" + e))
            .ToArray();

    public static string RangeEnd(string prefix)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (var i = bytes.Length - 1; i >= 0; i--)
        {
            if (bytes[i] < 0xff)
            {
                bytes[i]++;
                return System.Text.Encoding.UTF8.GetString(bytes, 0, i + 1);
            }
        }

        return "\0";
    }

    /// <summary>Runs a unary call on the current member, moving to the next one while members are unavailable.</summary>
    public async Task<T> CallAsync<T>(Func<CallInvoker, CallOptions, Task<T>> call, CancellationToken cancellationToken)
    {
        var attempts = 0;
        while (true)
        {
            var index = Volatile.Read(ref _current);
            try
            {
                return await call(_channels[index].CreateCallInvoker(), new CallOptions(deadline: _time.GetUtcNow().UtcDateTime + CallTimeout, cancellationToken: cancellationToken)).ConfigureAwait(false);
            }
            catch (RpcException ex) when (Retryable(ex) && !cancellationToken.IsCancellationRequested && ++attempts < _channels.Length * 3)
            {
                Failover(index, ex);
                if (attempts % _channels.Length == 0)
                {
                    // Every member failed once: wait a little before the next round (a leader election takes ~1 s).
                    await Task.Delay(TimeSpan.FromMilliseconds(200 * attempts / _channels.Length), _time, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    public Task<RangeResponse> RangeAsync(string prefix, CancellationToken cancellationToken) =>
        CallAsync((invoker, options) => new KV.KVClient(invoker).RangeAsync(new RangeRequest
        {
            Key = ByteString.CopyFromUtf8(prefix),
            RangeEnd = ByteString.CopyFromUtf8(RangeEnd(prefix)),
        }, options).ResponseAsync, cancellationToken);

    public Task<RangeResponse> GetAsync(string key, CancellationToken cancellationToken) =>
        CallAsync((invoker, options) => new KV.KVClient(invoker).RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(key) }, options).ResponseAsync, cancellationToken);

    public Task<TxnResponse> TxnAsync(TxnRequest request, CancellationToken cancellationToken) =>
        CallAsync((invoker, options) => new KV.KVClient(invoker).TxnAsync(request, options).ResponseAsync, cancellationToken);

    public Task<PutResponse> PutAsync(string key, ByteString value, long lease, CancellationToken cancellationToken) =>
        CallAsync((invoker, options) => new KV.KVClient(invoker).PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = value, Lease = lease }, options).ResponseAsync, cancellationToken);

    public Task<LeaseGrantResponse> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken) =>
        CallAsync((invoker, options) => new Lease.LeaseClient(invoker).LeaseGrantAsync(new LeaseGrantRequest { TTL = (long)Math.Ceiling(ttl.TotalSeconds) }, options).ResponseAsync, cancellationToken);

    /// <summary>Refreshes a lease once; returns its remaining TTL in seconds (0 or less: the lease is gone).</summary>
    public Task<long> KeepAliveOnceAsync(long lease, CancellationToken cancellationToken) =>
        CallAsync(async (invoker, options) =>
        {
            using var call = new Lease.LeaseClient(invoker).LeaseKeepAlive(options);
            await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, cancellationToken).ConfigureAwait(false);
            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            return await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false) ? call.ResponseStream.Current.TTL : 0;
        }, cancellationToken);

    /// <summary>
    /// Watches every key under <paramref name="prefix"/>: first the whole range (<paramref name="onSnapshot"/>), then each
    /// change (<paramref name="onEvents"/>) in revision order, across member failures (resumed from the next revision)
    /// and compactions (listed again). Runs until cancelled.
    /// </summary>
    public async Task WatchPrefixAsync(
        string prefix,
        Action<IReadOnlyList<Mvccpb.KeyValue>, long> onSnapshot,
        Action<IReadOnlyList<Mvccpb.Event>, long> onEvents,
        CancellationToken cancellationToken)
    {
        long next = 0;
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (next == 0)
                {
                    var range = await RangeAsync(prefix, cancellationToken).ConfigureAwait(false);
                    onSnapshot(range.Kvs, range.Header.Revision);
                    next = range.Header.Revision + 1;
                }

                var index = Volatile.Read(ref _current);
                using var call = new Watch.WatchClient(_channels[index].CreateCallInvoker()).Watch(cancellationToken: cancellationToken);
                await call.RequestStream.WriteAsync(new WatchRequest
                {
                    CreateRequest = new WatchCreateRequest
                    {
                        Key = ByteString.CopyFromUtf8(prefix),
                        RangeEnd = ByteString.CopyFromUtf8(RangeEnd(prefix)),
                        StartRevision = next,
                        ProgressNotify = true,
                    },
                }, cancellationToken).ConfigureAwait(false);
                try
                {
                    while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                    {
                        var response = call.ResponseStream.Current;
                        failures = 0;
                        if (response.CompactRevision > 0)
                        {
                            // The revisions we need are gone: list the range again.
                            Log.WatchCompacted(_logger, prefix, response.CompactRevision);
                            next = 0;
                            break;
                        }

                        if (response.Canceled)
                        {
                            throw new RpcException(new Status(StatusCode.Unavailable, "watch cancelled by the server: " + response.CancelReason));
                        }

                        if (response.Events.Count > 0)
                        {
                            onEvents(response.Events, response.Header.Revision);
                            next = response.Events[^1].Kv.ModRevision + 1;
                        }
                    }
                }
                finally
                {
                    await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                }

                if (next != 0)
                {
                    // The member closed the stream without error (shutting down): go to another one.
                    Failover(index, null);
                }
            }
            catch (Exception ex) when (cancellationToken.IsCancellationRequested && ex is RpcException or OperationCanceledException)
            {
                return;
            }
            catch (RpcException ex)
            {
                failures++;
                Failover(Volatile.Read(ref _current), ex);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(2000, 100 * failures) * (0.8 + (Random.Shared.NextDouble() * 0.4))), _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public void Dispose()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
    }

    private static bool Retryable(RpcException ex) =>
        ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown;

    private void Failover(int failed, RpcException? ex)
    {
        var next = (failed + 1) % _channels.Length;
        if (Interlocked.CompareExchange(ref _current, next, failed) == failed && _channels.Length > 1)
        {
            Log.Failover(_logger, Endpoints[failed].ToString(), Endpoints[next].ToString(), ex?.Status.Detail ?? "stream ended");
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "etcd member {Failed} unavailable ({Reason}); using {Next}", EventName = "EtcdFailover")]
        public static partial void Failover(ILogger logger, string failed, string next, string reason);

        [LoggerMessage(2, LogLevel.Warning, "etcd compacted past the watch of {Prefix} (revision {Revision}); listing again", EventName = "EtcdWatchCompacted")]
        public static partial void WatchCompacted(ILogger logger, string prefix, long revision);
    }
}
