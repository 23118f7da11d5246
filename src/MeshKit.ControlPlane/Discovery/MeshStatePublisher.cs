using System.Threading.Channels;
using MeshKit.Config.Compilation;
using MeshKit.ControlPlane.Registry;
using MeshKit.ControlPlane.Sources;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Discovery;

/// <summary>A compiled, versioned state of the mesh: what every connection diffs against.</summary>
/// <param name="Version">Gets the monotonically increasing version.</param>
/// <param name="Mesh">Gets the compiled mesh.</param>
/// <param name="ChangedAt">Gets when the first change folded into this state happened.</param>
/// <param name="WorkloadCount">Gets how many registered workloads the state was compiled from.</param>
internal sealed record MeshState(long Version, CompiledMesh Mesh, DateTimeOffset ChangedAt, int WorkloadCount);

/// <summary>
/// Turns config and registry changes into versioned <see cref="MeshState"/>s: debounced (quiet period, capped by a
/// maximum delay), coalesced, compiled once, then published to every connection.
/// </summary>
/// <remarks>
/// The quiet period exists to let a burst end: file writes that come in pieces, a fleet registering. A change the
/// store reports as complete (<see cref="ICompleteChanges"/>: an apply or delete through the admin API, a committed
/// etcd transaction) is published at once when nothing else changed within the last quiet period; changes that
/// follow it within that period are debounced as usual.
/// </remarks>
internal sealed partial class MeshStatePublisher : BackgroundService
{
    private readonly IConfigStore _store;
    private readonly IWorkloadRegistry _registry;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<MeshStatePublisher> _logger;
    private readonly Channel<DateTimeOffset> _signals = Channel.CreateBounded<DateTimeOffset>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private long _lastSignalTicks;
    private int _completeSignal;
    private readonly DateTimeOffset _startedAt;
    private TaskCompletionSource<MeshState> _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private MeshState? _current;

    private readonly JwksCache _jwks;
    private string? _reportedTrustDomain;

    private readonly Ca.CertificateAuthority _ca;

    public MeshStatePublisher(IConfigStore store, IWorkloadRegistry registry, JwksCache jwks, Ca.CertificateAuthority ca, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<MeshStatePublisher> logger)
    {
        _ca = ca;
        _store = store;
        _jwks = jwks;
        _registry = registry;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _startedAt = time.GetUtcNow();
        ChangeToken.OnChange(store.GetReloadToken, () => Signal(store is ICompleteChanges complete && complete.TakeComplete()));
        ChangeToken.OnChange(registry.GetChangeToken, Signal);
        ChangeToken.OnChange(jwks.GetChangeToken, Signal);
    }

    public MeshState? Current => Volatile.Read(ref _current);

    /// <summary>Waits for a state newer than <paramref name="afterVersion"/>.</summary>
    public async Task<MeshState> WaitForNewerAsync(long afterVersion, CancellationToken cancellationToken)
    {
        while (true)
        {
            var next = Volatile.Read(ref _next).Task;
            var current = Current;
            if (current is not null && current.Version > afterVersion)
            {
                return current;
            }

            await next.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void Signal() => Signal(complete: false);

    private void Signal(bool complete)
    {
        var now = _time.GetUtcNow();
        var previous = new DateTimeOffset(Interlocked.Exchange(ref _lastSignalTicks, now.UtcTicks), TimeSpan.Zero);

        // Only the first change after a quiet period skips the debounce: within a burst, even complete changes wait.
        if (complete && now - previous >= _options.Debounce)
        {
            Volatile.Write(ref _completeSignal, 1);
        }

        _signals.Writer.TryWrite(now);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var syncUntil = _startedAt + _options.StartupSyncDelay;
        var wait = syncUntil - _time.GetUtcNow();
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, _time, stoppingToken).ConfigureAwait(false);
        }

        if (_store is Sources.KubernetesConfigStore cluster)
        {
            // The first state holds the cluster's resources, as istiod serves once its caches have synced.
            try
            {
                await cluster.Synced.WaitAsync(Sources.KubernetesConfigStore.SyncBound, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Log.ClusterNotSynced(_logger, Sources.KubernetesConfigStore.SyncBound);
            }
        }

        var firstChange = _time.GetUtcNow();
        var version = 0L;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Drop the signals that the startup wait already covers, then publish.
                while (_signals.Reader.TryRead(out var at))
                {
                    firstChange = at < firstChange ? at : firstChange;
                }

                Publish(++version, firstChange);
                firstChange = await _signals.Reader.ReadAsync(stoppingToken).ConfigureAwait(false);
                if (Interlocked.Exchange(ref _completeSignal, 0) == 0)
                {
                    await DebounceAsync(firstChange, stoppingToken).ConfigureAwait(false);

                    // A complete change that arrived during the debounce is in the state about to be published.
                    Volatile.Write(ref _completeSignal, 0);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.PublishFailed(_logger, ex);
                await Task.Delay(TimeSpan.FromSeconds(1), _time, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private async Task DebounceAsync(DateTimeOffset firstChange, CancellationToken cancellationToken)
    {
        var deadline = firstChange + _options.MaxDebounce;
        while (true)
        {
            var quiet = _options.Debounce;
            var remaining = deadline - _time.GetUtcNow();
            if (remaining <= TimeSpan.Zero || quiet <= TimeSpan.Zero)
            {
                return;
            }

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var delay = Task.Delay(quiet < remaining ? quiet : remaining, _time, cts.Token);
            var signal = _signals.Reader.WaitToReadAsync(cts.Token).AsTask();
            var done = await Task.WhenAny(delay, signal).ConfigureAwait(false);
            await cts.CancelAsync().ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            if (done == delay)
            {
                return;
            }

            _signals.Reader.TryRead(out _);
        }
    }

    private void Publish(long version, DateTimeOffset changedAt)
    {
        var config = _store.Current;
        if (config.MeshConfig?.TrustDomain is { } trustDomain && trustDomain != _options.TrustDomain && trustDomain != _reportedTrustDomain)
        {
            _reportedTrustDomain = trustDomain;
            Log.TrustDomainMismatch(_logger, trustDomain, _options.TrustDomain);
        }

        var workloads = _registry.Workloads;
        // With nothing registered yet (a control plane started before its workloads) every host is unknown, and
        // saying so of each VirtualService is noise, not a finding.
        var mesh = MeshCompiler.Compile(config, workloads, registryKnown: workloads.Count > 0, jwks: _jwks.Keys);
        if (_reportedFindings.Count > 10_000)
        {
            _reportedFindings.Clear();
        }

        foreach (var finding in mesh.Diagnostics)
        {
            // Cross-resource findings (an unknown subset, an ignored namespace-wide policy) depend on the whole config
            // and the registry: each is logged when it first appears, not on every publish.
            var text = finding.ToString();
            if (_reportedFindings.Add(text))
            {
                Log.CrossResourceFinding(_logger, text);
            }
        }

        mesh.Settings.TrustDomain = _options.TrustDomain;
        mesh.Settings.TrustRoots.AddRange(_ca.Bundle.Roots.Select(r => Google.Protobuf.ByteString.CopyFrom(r.RawData)));
        var state = new MeshState(version, mesh, changedAt, workloads.Count);
        Volatile.Write(ref _current, state);
        Log.Published(_logger, version, mesh.ServiceHosts.Count);
        var previous = Interlocked.Exchange(ref _next, new TaskCompletionSource<MeshState>(TaskCreationOptions.RunContinuationsAsynchronously));
        previous.TrySetResult(state);
    }

    // The findings logged so far (Publish runs on one thread at a time). Cleared past 10,000, so a long-lived control
    // plane does not keep every finding it ever saw; a finding still present is then logged once more.
    private readonly HashSet<string> _reportedFindings = new(StringComparer.Ordinal);

    private static partial class Log
    {
        [LoggerMessage(4, LogLevel.Warning, "{Finding}", EventName = "CrossResourceFinding")]
        public static partial void CrossResourceFinding(ILogger logger, string finding);

        [LoggerMessage(1, LogLevel.Debug, "Published mesh state {Version} with {ServiceCount} services", EventName = "StatePublished")]
        public static partial void Published(ILogger logger, long version, int serviceCount);

        [LoggerMessage(3, LogLevel.Error, "MeshConfig trustDomain '{Configured}' differs from the CA's trust domain '{Ca}' (ControlPlane:TrustDomain); identities stay in '{Ca}'", EventName = "TrustDomainMismatch")]
        public static partial void TrustDomainMismatch(ILogger logger, string configured, string ca);

        [LoggerMessage(2, LogLevel.Error, "Compiling the mesh state failed; the previous state stays in force", EventName = "PublishFailed")]
        public static partial void PublishFailed(ILogger logger, Exception exception);

        [LoggerMessage(5, LogLevel.Warning, "The Kubernetes API server's resources were not all read within {Bound}; publishing without the rest, which follows as it arrives", EventName = "ClusterNotSynced")]
        public static partial void ClusterNotSynced(ILogger logger, TimeSpan bound);
    }
}
