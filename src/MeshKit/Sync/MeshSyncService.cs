using Grpc.Core;
using Grpc.Net.Client;
using MeshKit.Config.Compilation;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using MeshKit.Snapshot;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MeshKit.Sync;

/// <summary>
/// Keeps one discovery stream to the control plane: announces the workload, applies each delta into a new snapshot
/// (ACK) or rejects it keeping the previous one (NACK), and reconnects with exponential backoff and full jitter,
/// resuming from the versions it holds. A lost stream never deletes configuration. On shutdown it closes the stream
/// cleanly (the control plane deregisters it at once) and keeps serving for the drain duration.
/// </summary>
internal sealed partial class MeshSyncService : BackgroundService, IHostedLifecycleService
{
    private readonly MeshSnapshotProvider _provider;
    private readonly MeshOptions _options;
    private readonly ControlPlaneEndpoints _endpoints;
    private readonly WorkloadAnnouncer _announcer;
    private readonly WorkloadIdentity _identity;
    private readonly MeshSyncStatus _status;
    private readonly Telemetry.MeshMetrics? _metrics;
    private readonly TimeProvider _time;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger<MeshSyncService> _logger;
    private readonly Dictionary<string, Dictionary<string, Resource>> _held = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _appliedVersions = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _closing = new();
    private AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse>? _call;
    private bool _announcedPorts;
    private volatile bool _leaving;
    private TaskCompletionSource _streamEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ControlPlaneFailures _failures;

    public MeshSyncService(MeshSnapshotProvider provider, IOptions<MeshOptions> options, WorkloadAnnouncer announcer, WorkloadIdentity identity, MeshSyncStatus status, TimeProvider time, IHostApplicationLifetime lifetime, ILogger<MeshSyncService> logger, Telemetry.MeshMetrics? metrics = null, ControlPlaneEndpoints? endpoints = null)
    {
        _metrics = metrics;
        _endpoints = endpoints ?? new ControlPlaneEndpoints(options);
        _provider = provider;
        _options = options.Value;
        _announcer = announcer;
        _identity = identity;
        _status = status;
        _time = time;
        _lifetime = lifetime;
        _logger = logger;
        _failures = new ControlPlaneFailures(time);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_endpoints.Current is null)
        {
            return;
        }

        // The announcement carries the addresses Kestrel listens on, known once the application has started.
        await WhenStartedAsync(stoppingToken).ConfigureAwait(false);
        using var token = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _closing.Token);
        var attempt = 0;
        while (!token.IsCancellationRequested && !_leaving)
        {
            var address = _endpoints.Current!;
            try
            {
                // A new channel per stream: on the TLS port it presents the certificate current at the time.
                using var channel = await CreateChannelAsync(address, token.Token).ConfigureAwait(false);
                var client = new MeshDiscovery.MeshDiscoveryClient(channel);
                var announcement = _announcer.Build();
                _announcedPorts = announcement.Ports.Count > 0;
                await RunStreamAsync(
                    client,
                    address,
                    announcement,
                    () =>
                    {
                        attempt = 0;
                        _failures.Answered();
                    },
                    token.Token).ConfigureAwait(false);
                Log.StreamEnded(_logger);
            }
            catch (Exception) when (token.IsCancellationRequested || _leaving)
            {
                break;
            }
            catch (Exception ex)
            {
                var (level, unreachable) = _failures.Failed(ex);
                if (level == LogLevel.Debug)
                {
                    Log.StreamLost(_logger, address, ControlPlaneFailures.Describe(ex));
                }
                else if (ControlPlaneFailures.IsTransient(ex))
                {
                    Log.Unreachable(_logger, address, (int)unreachable.TotalSeconds, ControlPlaneFailures.Describe(ex));
                }
                else
                {
                    Log.StreamFailed(_logger, address, ControlPlaneFailures.Describe(ex));
                }
            }

            if (_leaving)
            {
                break;
            }

            // The stream ended or failed: the next attempt goes to the next replica (the held versions go with it).
            _endpoints.Failed(address);

            var delay = Backoff(attempt++);
            try
            {
                await Task.Delay(delay, _time, token.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private async Task<GrpcChannel> CreateChannelAsync(Uri address, CancellationToken cancellationToken)
    {
        static void KeepAlive(SocketsHttpHandler handler)
        {
            handler.ConnectTimeout = TimeSpan.FromSeconds(5);
            handler.KeepAlivePingDelay = TimeSpan.FromSeconds(10);
            handler.KeepAlivePingTimeout = TimeSpan.FromSeconds(5);
            handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always;
        }

        if (!_identity.Enabled)
        {
            var handler = new SocketsHttpHandler();
            KeepAlive(handler);
            return GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        }

        // Discovery on the TLS port is authenticated by the workload certificate: wait for it.
        await _identity.FirstIssued.WaitAsync(cancellationToken).ConfigureAwait(false);
        var current = _identity.Current!;
        return CertificateManager.ControlPlaneChannel(address, current.Bundle, current, _time, KeepAlive);
    }

    /// <summary>Full jitter: a uniform delay between 0 and min(max, base × 2^attempt).</summary>
    internal TimeSpan Backoff(int attempt)
    {
        var ceiling = Math.Min(_options.ReconnectMaxDelay.TotalMilliseconds, _options.ReconnectBaseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 20)));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
    }

    private async Task RunStreamAsync(MeshDiscovery.MeshDiscoveryClient client, Uri address, WorkloadAnnouncement announcement, Action connected, CancellationToken cancellationToken)
    {
        using var call = client.StreamResources(cancellationToken: cancellationToken);
        _streamEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _call = call;
        try
        {
            var hello = new DiscoveryRequest { Workload = announcement };
            foreach (var (typeUrl, resources) in _held)
            {
                var versions = new ResourceVersions { TypeUrl = typeUrl };
                foreach (var (name, resource) in resources)
                {
                    versions.Versions[name] = resource.Version;
                }

                hello.InitialResourceVersions.Add(versions);
            }

            await WriteAsync(call, hello).ConfigureAwait(false);
            Log.Connected(_logger, address, announcement.InstanceId);
            while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                connected();
                _status.SetConnected(true);
                var response = call.ResponseStream.Current;
                var error = Apply(response);
                if (error is null)
                {
                    _status.Applied(response.TypeUrl);
                }
                else
                {
                    // Counted first: whoever sees the status (a health check) sees the count with it.
                    _metrics?.Nack();
                    _status.Rejected(response.TypeUrl, error);
                }

                var answer = new DiscoveryRequest
                {
                    TypeUrl = response.TypeUrl,
                    ResponseNonce = response.Nonce,
                    VersionInfo = _appliedVersions.GetValueOrDefault(response.TypeUrl, string.Empty),
                };
                if (error is not null)
                {
                    answer.ErrorDetail = new ErrorDetail { Message = error };
                }

                await WriteAsync(call, answer).ConfigureAwait(false);
            }
        }
        finally
        {
            _status.SetConnected(false);
            _call = null;
            _streamEnded.TrySetResult();
        }
    }

    /// <summary>Applies one delta. Returns null on success, or the reason it was rejected (the previous state stays).</summary>
    internal string? Apply(DiscoveryResponse response)
    {
        if (!ResourceTypes.All.Contains(response.TypeUrl))
        {
            Log.Rejected(_logger, response.TypeUrl, response.Nonce, "unknown resource type");
            return $"unknown resource type '{response.TypeUrl}'";
        }

        var candidate = _held.TryGetValue(response.TypeUrl, out var current)
            ? new Dictionary<string, Resource>(current, StringComparer.Ordinal)
            : new Dictionary<string, Resource>(StringComparer.Ordinal);
        foreach (var resource in response.Resources)
        {
            candidate[resource.Name] = resource;
        }

        foreach (var name in response.RemovedResources)
        {
            candidate.Remove(name);
        }

        var all = new Dictionary<string, IReadOnlyDictionary<string, Resource>>(StringComparer.Ordinal);
        foreach (var (typeUrl, resources) in _held)
        {
            all[typeUrl] = resources;
        }

        all[response.TypeUrl] = candidate;
        var ready = ResourceTypes.All.All(all.ContainsKey);
        MeshSnapshot snapshot;
        try
        {
            snapshot = SnapshotBuilder.Build(all, _announcer.Source, response.SystemVersionInfo, ready, _provider.Runtime);
        }
        catch (MeshConfigException ex)
        {
            Log.Rejected(_logger, response.TypeUrl, response.Nonce, ex.Message);
            return ex.Message;
        }

        _held[response.TypeUrl] = candidate;
        _appliedVersions[response.TypeUrl] = response.SystemVersionInfo;
        _provider.PublishFromControlPlane(snapshot);
        if (_identity.Enabled && response.TypeUrl == ResourceTypes.Mesh && candidate.TryGetValue(ResourceTypes.MeshResourceName, out var mesh)
            && mesh.Resource_?.TryUnpack<MeshSettings>(out var settings) == true && settings.TrustRoots.Count > 0)
        {
            // Only the TLS stream is enabled for a secure workload, so these roots come from the verified control plane.
            _identity.UpdateTrustRoots(settings.TrustRoots.Select(r => r.ToByteArray()));
        }
        Log.Applied(_logger, response.TypeUrl, response.SystemVersionInfo, response.Resources.Count, response.RemovedResources.Count);
        return null;
    }

    private async Task WriteAsync(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call, DiscoveryRequest request)
    {
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await call.RequestStream.WriteAsync(request).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private Task WhenStartedAsync(CancellationToken cancellationToken)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var registration = _lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        return started.Task.WaitAsync(cancellationToken).ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Leaves the registry before the server stops, then lets callers converge for the drain duration.</summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        // Close our side first (a clean close deregisters at once), and only then cancel the stream.
        _leaving = true;
        var call = _call;
        if (call is null)
        {
            await _closing.CancelAsync().ConfigureAwait(false);
            return;
        }

        try
        {
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or OperationCanceledException or IOException)
        {
            // The stream is already gone; the control plane removes the entry after its grace period.
        }

        // Let the control plane see the clean close and end the call before anything is cancelled (at most 2 s).
        await Task.WhenAny(_streamEnded.Task, Task.Delay(TimeSpan.FromSeconds(2), _time, cancellationToken)).ConfigureAwait(false);

        if (_announcedPorts && _options.DrainDuration > TimeSpan.Zero)
        {
            Log.Draining(_logger, _options.DrainDuration);
            try
            {
                await Task.Delay(_options.DrainDuration, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The host's shutdown timeout came first: stopping goes on (an exception here would fail the
                // application's exit after it had stopped cleanly).
                Log.DrainCutShort(_logger, _options.DrainDuration);
            }
        }

        await _closing.CancelAsync().ConfigureAwait(false);
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Dispose()
    {
        _closing.Dispose();
        _writeLock.Dispose();
        base.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Connected to the control plane at {Address} as {InstanceId}", EventName = "ControlPlaneConnected")]
        public static partial void Connected(ILogger logger, Uri address, string instanceId);

        [LoggerMessage(2, LogLevel.Warning, "Control plane stream to {Address} failed: {Reason}; keeping the current config and reconnecting", EventName = "ControlPlaneStreamFailed")]
        public static partial void StreamFailed(ILogger logger, Uri address, string reason);

        [LoggerMessage(3, LogLevel.Information, "Control plane closed the stream; reconnecting", EventName = "ControlPlaneStreamEnded")]
        public static partial void StreamEnded(ILogger logger);

        [LoggerMessage(4, LogLevel.Debug, "Applied {TypeUrl} version {Version}: {Changed} changed, {Removed} removed", EventName = "ConfigApplied")]
        public static partial void Applied(ILogger logger, string typeUrl, string version, int changed, int removed);

        [LoggerMessage(5, LogLevel.Error, "Rejected {TypeUrl} (nonce {Nonce}): {Reason}; the previous config stays in force", EventName = "ConfigRejected")]
        public static partial void Rejected(ILogger logger, string typeUrl, string nonce, string reason);

        [LoggerMessage(6, LogLevel.Information, "Left the mesh registry; draining for {Duration}", EventName = "Draining")]
        public static partial void Draining(ILogger logger, TimeSpan duration);

        [LoggerMessage(9, LogLevel.Warning, "Draining cut short by the host's shutdown timeout before {Duration} had passed; raise HostOptions.ShutdownTimeout above Mesh:DrainDuration", EventName = "DrainCutShort")]
        public static partial void DrainCutShort(ILogger logger, TimeSpan duration);

        [LoggerMessage(7, LogLevel.Debug, "Control plane stream to {Address} lost: {Reason}; reconnecting", EventName = "ControlPlaneStreamLost")]
        public static partial void StreamLost(ILogger logger, Uri address, string reason);

        [LoggerMessage(8, LogLevel.Warning, "Control plane unreachable for {Seconds} s (last tried {Address}: {Reason}); keeping the current config and reconnecting", EventName = "ControlPlaneUnreachable")]
        public static partial void Unreachable(ILogger logger, Uri address, int seconds, string reason);
    }
}
