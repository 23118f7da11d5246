using System.Text.Json;
using System.Text.Json.Nodes;
using MeshKit.Config.Compilation;
using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// The configuration of the primary store (the config folder, or etcd) together with the resources a Kubernetes API
/// server holds (<see cref="ControlPlaneOptions.KubernetesApiServer"/>), as istiod reads its cluster: each kind is
/// listed, then watched from the list's resource version (bookmarks keep the version fresh; an expired one, 410,
/// lists again; a dropped watch resumes where it was). Every object is a source of its own, named
/// <c>kubernetes/&lt;kind&gt;/&lt;namespace&gt;/&lt;name&gt;</c> and validated by the same parser as a file: an object
/// that does not validate keeps its last good version in force, and its findings show in the sources' status. A kind
/// the server does not serve (a CRD not installed) is asked for again every minute; the others are read meanwhile.
/// A resource the primary store defines too is the primary store's: the object's definition is reported and ignored.
/// </summary>
internal sealed partial class KubernetesConfigStore : IConfigStore, ICompleteChanges, IHostedService, IDisposable
{
    /// <summary>The pods, read for their labels and addresses only (an EndpointSlice's address that runs no MeshKit has its pod's labels).</summary>
    /// <remarks>Declared before <see cref="Kinds"/>, which holds it: static fields are set in their order.</remarks>
    internal static readonly KubernetesKind Pods = new(string.Empty, "pods", "Pod", "v1");

    /// <summary>
    /// The kinds read: the cluster's and the Istio and Gateway API resources MeshKit reads from files, each in the first
    /// of its versions the server serves (Istio's v1 since 1.22, its v1beta1 before; Gateway API's v1, or an older one).
    /// </summary>
    internal static readonly KubernetesKind[] Kinds =
    [
        new(string.Empty, "services", "Service", "v1"),
        new("discovery.k8s.io", "endpointslices", "EndpointSlice", "v1"),
        new("networking.istio.io", "virtualservices", "VirtualService", "v1", "v1beta1"),
        new("networking.istio.io", "destinationrules", "DestinationRule", "v1", "v1beta1"),
        new("networking.istio.io", "serviceentries", "ServiceEntry", "v1", "v1beta1"),
        new("networking.istio.io", "workloadentries", "WorkloadEntry", "v1", "v1beta1"),
        new("networking.istio.io", "sidecars", "Sidecar", "v1", "v1beta1"),
        new("security.istio.io", "peerauthentications", "PeerAuthentication", "v1", "v1beta1"),
        new("security.istio.io", "requestauthentications", "RequestAuthentication", "v1", "v1beta1"),
        new("security.istio.io", "authorizationpolicies", "AuthorizationPolicy", "v1", "v1beta1"),
        new("telemetry.istio.io", "telemetries", "Telemetry", "v1", "v1alpha1"),
        new("gateway.networking.k8s.io", "httproutes", "HTTPRoute", "v1", "v1beta1"),
        new("gateway.networking.k8s.io", "grpcroutes", "GRPCRoute", "v1", "v1alpha2"),
        Pods,
    ];

    /// <summary>The nodes, read for their topology labels (the locality of the pods on them) when every namespace is read.</summary>
    internal static readonly KubernetesKind Nodes = new(string.Empty, "nodes", "Node", "v1");

    /// <summary>The namespaces, read for their labels (MeshConfig's <c>discoverySelectors</c>) when every namespace is read.</summary>
    internal static readonly KubernetesKind Namespaces = new(string.Empty, "namespaces", "Namespace", "v1");

    // How long the first publication waits for every kind's first list: istiod too serves once its caches synced.
    internal static readonly TimeSpan SyncBound = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan NotServedRetry = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan RepeatWarning = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan MinWatch = TimeSpan.FromSeconds(1);

    // The server ends each watch after this many seconds; the client drops one that has not ended half a minute later.
    private const int WatchSeconds = 300;
    private const int PageSize = 500;

    private readonly IConfigStore _primary;
    private readonly ControlPlaneOptions _options;
    private readonly Uri _server;
    private readonly TimeProvider _time;
    private readonly ILogger<KubernetesConfigStore> _logger;
    private readonly ChangeSignal _reload = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<string, SourceState> _objects = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyDictionary<string, string>> _namespaceLabels = new(StringComparer.Ordinal);
    private readonly Dictionary<string, KubernetesPod> _pods = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyDictionary<string, string>> _nodeLabels = new(StringComparer.Ordinal);
    private bool _selectorsIgnoredReported;
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _http;
    private IDisposable? _primaryChanges;
    private Task[] _watches = [];
    private int _kindsSynced;
    private (ConfigSet Config, IReadOnlyList<ConfigSourceStatus> Sources)? _merged;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Kind, string? Namespace), KubernetesKindStatus> _status = new();

    public KubernetesConfigStore(IConfigStore primary, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<KubernetesConfigStore> logger)
    {
        _primary = primary;
        _options = options.Value;
        _server = KubernetesApi.Server(_options) ?? throw new InvalidOperationException("ControlPlane:KubernetesApiServer is not set");
        _time = time;
        _logger = logger;

        // A watch stays open for minutes: the client's own timeout would cut it; each request has its own bound. Over
        // TLS the kinds' watches share one HTTP/2 connection, as client-go's do; plain text (kubectl proxy) is HTTP/1.1.
        _http = new HttpClient(KubernetesApi.CreateHandler(_options))
        {
            BaseAddress = _server,
            Timeout = Timeout.InfiniteTimeSpan,
            DefaultRequestVersion = System.Net.HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
    }

    /// <summary>Gets how each kind is read (in each namespace read), for <c>/debug/kubernetes</c>.</summary>
    public IReadOnlyList<KubernetesKindStatus> Status => [.. _status.Values.OrderBy(k => k.Kind, StringComparer.Ordinal).ThenBy(k => k.Namespace, StringComparer.Ordinal)];

    /// <summary>Gets or sets how long a watch may stay open before it is dropped and resumed (the server ends it sooner unless its connection died).</summary>
    internal TimeSpan WatchBound { get; set; } = TimeSpan.FromSeconds(WatchSeconds + 30);

    /// <summary>
    /// Gets the HTTPRoutes and GRPCRoutes read from the cluster (of the namespaces read): each object's source, latest
    /// text (JSON, with its metadata and status) and findings, for <see cref="KubernetesRouteStatus"/>.
    /// </summary>
    public IReadOnlyList<ClusterObject> Routes()
    {
        lock (_lock)
        {
            var scope = DiscoveryScope(_primary.Current.MeshConfig);
            return [.. _objects
                .Where(o => (o.Key.StartsWith("kubernetes/HTTPRoute/", StringComparison.Ordinal) || o.Key.StartsWith("kubernetes/GRPCRoute/", StringComparison.Ordinal))
                    && (scope is null || scope(o.Key.Split('/')[2])))
                .Select(o => new ClusterObject(o.Key, o.Value.Text, o.Value.Diagnostics))];
        }
    }

    /// <summary>Gets how many nodes' labels are held (the locality of the pods on them).</summary>
    public int NodesRead
    {
        get
        {
            lock (_lock)
            {
                return _nodeLabels.Count;
            }
        }
    }

    /// <summary>Gets how many pods' labels and addresses are held.</summary>
    public int PodsRead
    {
        get
        {
            lock (_lock)
            {
                return _pods.Count;
            }
        }
    }

    /// <summary>Gets how many namespaces' labels are held (for <c>discoverySelectors</c>).</summary>
    public int NamespacesRead
    {
        get
        {
            lock (_lock)
            {
                return _namespaceLabels.Count;
            }
        }
    }

    /// <summary>Completes when every kind has been listed once (or found not served).</summary>
    public Task Synced => _synced.Task;

    public ConfigSet Current => Merged().Config;

    public IReadOnlyList<ConfigSourceStatus> Sources => Merged().Sources;

    public IChangeToken GetReloadToken() => _reload.Token;

    public bool TakeComplete() => _primary is ICompleteChanges complete && complete.TakeComplete();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _primaryChanges = ChangeToken.OnChange(_primary.GetReloadToken, Changed);
        // The whole cluster (a ClusterRole), or each namespace named (a Role in each suffices).
        _watches = [.. Scopes.SelectMany(ns => Kinds.Select(kind => Task.Run(() => ReadKindAsync(kind, ns, _stopping.Token), CancellationToken.None)))];
        if (ReadsNamespaces)
        {
            _watches = [.. _watches, Task.Run(() => ReadKindAsync(Namespaces, null, _stopping.Token), CancellationToken.None), Task.Run(() => ReadKindAsync(Nodes, null, _stopping.Token), CancellationToken.None)];
        }

        Log.Reading(_logger, _server.ToString(), Kinds.Length, _options.KubernetesNamespaces.Count == 0 ? "every namespace" : string.Join(", ", _options.KubernetesNamespaces));
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_watches).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _primaryChanges?.Dispose();
        _stopping.Dispose();
        _http.Dispose();
    }

    private void Changed()
    {
        lock (_lock)
        {
            _merged = null;
        }

        _reload.Fire();
    }

    // Built when read after a change: a burst of watch events costs one merge, when the publisher gets to it.
    private (ConfigSet Config, IReadOnlyList<ConfigSourceStatus> Sources) Merged()
    {
        lock (_lock)
        {
            if (_merged is { } merged)
            {
                return merged;
            }

            var primary = _primary.Current;
            var scope = DiscoveryScope(primary.MeshConfig);
            var owners = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var resource in primary.Resources)
            {
                owners.TryAdd(resource.Key, resource.Source.File);
            }

            var resources = new List<ConfigResource>(primary.Resources);
            var statuses = new List<ConfigSourceStatus>(_primary.Sources);
            foreach (var (name, state) in _objects.OrderBy(o => o.Key, StringComparer.Ordinal))
            {
                // kubernetes/<kind>/<namespace>/<name>: a namespace discoverySelectors leave out is not read at all.
                if (scope is not null && !scope(name.Split('/')[2]))
                {
                    continue;
                }

                var diagnostics = state.Diagnostics.ToList();
                var accepted = state.Accepted;
                foreach (var resource in state.InForce)
                {
                    if (owners.TryGetValue(resource.Key, out var owner))
                    {
                        diagnostics.Add(resource.Finding(DiagnosticSeverity.Error, "metadata.name", $"{resource.DisplayName} is already defined in {owner}; this definition is ignored"));
                        accepted = false;
                        continue;
                    }

                    owners[resource.Key] = name;
                    resources.Add(resource);
                }

                statuses.Add(new ConfigSourceStatus(name, accepted, state.InForce.Count, diagnostics));
            }

            // The pods (not sources of configuration: their labels and addresses, for the endpoints that run no MeshKit).
            resources.AddRange(_pods.Values.Where(pod => scope is null || scope(pod.Namespace)).OrderBy(pod => pod.Source.File, StringComparer.Ordinal)
                .Select(pod => pod.NodeName is { } node && _nodeLabels.TryGetValue(node, out var topology) ? pod with { Locality = LocalityOf(topology) } : pod));
            merged = (new ConfigSet(resources), statuses);
            _merged = merged;
            return merged;
        }
    }

    /// <summary>Returns whether MeshConfig's <c>discoverySelectors</c> pick a namespace (held under the lock); null: every namespace is.</summary>
    internal bool Selects(string ns)
    {
        lock (_lock)
        {
            return DiscoveryScope(_primary.Current.MeshConfig) is not { } scope || scope(ns);
        }
    }

    // Which namespaces MeshConfig's discoverySelectors pick, by the labels read (the lock held); null: every one. A
    // namespace not read (yet) is not picked; the root namespace, where mesh-wide policy lives, always is.
    private Func<string, bool>? DiscoveryScope(MeshConfigResource? mesh)
    {
        if (mesh is not { DiscoverySelectors.Count: > 0 } config)
        {
            return null;
        }

        if (!ReadsNamespaces)
        {
            if (!_selectorsIgnoredReported)
            {
                _selectorsIgnoredReported = true;
                Log.SelectorsIgnored(_logger, string.Join(", ", _options.KubernetesNamespaces));
            }

            return null;
        }

        var root = config.RootNamespace ?? MeshCompiler.DefaultRootNamespace;
        var labels = _namespaceLabels;
        return ns => ns == root || (labels.TryGetValue(ns, out var held) && config.DiscoverySelectors.Any(s => s.Matches(held)));
    }

    // The namespaces' labels are read when every namespace is (a ClusterRole); with KubernetesNamespaces the namespaces are those named.
    private bool ReadsNamespaces => _options.KubernetesNamespaces.Count == 0;

    // Null: every namespace at once.
    private string?[] Scopes => _options.KubernetesNamespaces.Count == 0 ? [null] : [.. _options.KubernetesNamespaces.Distinct(StringComparer.Ordinal)];

    /// <summary>Lists a kind (in one namespace, or all), then watches it, for as long as the control plane runs.</summary>
    private async Task ReadKindAsync(KubernetesKind kind, string? ns, CancellationToken cancellationToken)
    {
        var failures = 0;
        var synced = false;
        var versionIndex = 0;
        (string Error, long At)? logged = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan wait;
            var served = kind.In(kind.Versions[versionIndex], ns);
            try
            {
                var version = await ListAsync(served, cancellationToken).ConfigureAwait(false);
                Report(served, "watching", null);
                failures = 0;
                logged = null;
                if (!synced)
                {
                    synced = true;
                    KindSynced();
                }

                while (version is not null)
                {
                    var started = _time.GetTimestamp();
                    version = await WatchAsync(served, version, cancellationToken).ConfigureAwait(false);

                    // A watch the server (or a proxy before it) ends at once is not resumed at once: a loop of
                    // empty watches would hammer the API server.
                    if (version is not null && _time.GetElapsedTime(started) < MinWatch)
                    {
                        await Task.Delay(MinWatch, _time, cancellationToken).ConfigureAwait(false);
                    }
                }

                // The watch's version expired (410): list again at once.
                continue;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (KubernetesApiException ex) when (ex.Status == 404 && versionIndex + 1 < kind.Versions.Length)
            {
                // Not in this version: the next one, at once (an older Istio serves v1beta1 only).
                versionIndex++;
                continue;
            }
            catch (KubernetesApiException ex) when (ex.Status == 404)
            {
                // The kind is not served (its CRD is not installed): nothing of it is in force, and it is asked for again.
                if (!synced)
                {
                    synced = true;
                    KindSynced();
                    Log.NotServed(_logger, kind.Kind, string.Join(", ", kind.Versions.Select(v => kind.In(v, ns).Path)), NotServedRetry);
                }

                Replace(served, new Dictionary<string, string>());
                Report(served with { ApiVersion = string.Empty }, "not served", ex.Message);
                versionIndex = 0;
                wait = NotServedRetry;
            }
            catch (Exception ex) when (ex is KubernetesApiException or HttpRequestException or IOException or JsonException or TaskCanceledException)
            {
                wait = TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * Math.Min(MaxBackoff.TotalMilliseconds, 1000 * Math.Pow(2, Math.Min(failures++, 10))));

                // A warning when the failure is new, or again every few minutes while it lasts; each retry in between
                // at Debug (an API server down is one warning per kind, not one per backoff step).
                var now = _time.GetTimestamp();
                var repeat = logged is { } last && last.Error == ex.Message && _time.GetElapsedTime(last.At, now) < RepeatWarning;
                Log.Failed(_logger, repeat ? LogLevel.Debug : LogLevel.Warning, kind.Kind, ex.Message, wait);
                if (!repeat)
                {
                    logged = (ex.Message, now);
                }

                Report(served, "failing", ex.Message);
            }

            try
            {
                await Task.Delay(wait, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Report(ServedKind kind, string state, string? error)
    {
        var now = _time.GetUtcNow();
        _status.AddOrUpdate(
            (kind.Kind, kind.Namespace),
            _ => new KubernetesKindStatus(kind.Kind, kind.Namespace, kind.ApiVersion, state, error, state == "watching" ? now : null),
            (_, before) => new KubernetesKindStatus(kind.Kind, kind.Namespace, kind.ApiVersion, state, error, state == "watching" ? now : before.Listed));
    }

    private void KindSynced()
    {
        if (Interlocked.Increment(ref _kindsSynced) == (Kinds.Length * Scopes.Length) + (ReadsNamespaces ? 2 : 0))
        {
            _synced.TrySetResult();
        }
    }

    /// <summary>Lists every object of a kind (page by page) and puts them in place of the ones held; returns the list's version.</summary>
    private async Task<string> ListAsync(ServedKind kind, CancellationToken cancellationToken)
    {
        var listed = new Dictionary<string, string>(StringComparer.Ordinal);
        var labels = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        var pods = new Dictionary<string, KubernetesPod>(StringComparer.Ordinal);
        string? next = null;
        string version;
        do
        {
            var path = $"{kind.Path}?limit={PageSize}" + (next is null ? string.Empty : "&continue=" + Uri.EscapeDataString(next));
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            using var response = await _http.SendAsync(request, timeout.Token).ConfigureAwait(false);
            await KubernetesApi.EnsureSuccessAsync(response, timeout.Token).ConfigureAwait(false);
            await using var body = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
            var list = (await JsonNode.ParseAsync(body, cancellationToken: timeout.Token).ConfigureAwait(false))?.AsObject()
                ?? throw new JsonException($"the API server's list of {kind.Path} is not an object");
            foreach (var item in list["items"]?.AsArray() ?? [])
            {
                if (item is not JsonObject entry)
                {
                    continue;
                }

                if (kind.Kind is "Namespace" or "Node")
                {
                    if (LabelsOf(entry) is { } read)
                    {
                        labels[read.Name] = read.Labels;
                    }
                }
                else if (kind.Kind == Pods.Kind)
                {
                    if (PodOf(entry) is { } pod)
                    {
                        pods[pod.Source.File] = pod;
                    }
                }
                else if (Describe(entry, kind) is { } described)
                {
                    listed[described.Source] = described.Text;
                }
            }

            version = list["metadata"]?["resourceVersion"]?.GetValue<string>() ?? string.Empty;
            next = list["metadata"]?["continue"]?.GetValue<string>() is { Length: > 0 } more ? more : null;
        }
        while (next is not null);

        if (kind.Kind == Namespaces.Kind)
        {
            ReplaceNamespaces(labels);
        }
        else if (kind.Kind == Nodes.Kind)
        {
            ReplaceHeld(_nodeLabels, string.Empty, labels, SameLabels);
        }
        else if (kind.Kind == Pods.Kind)
        {
            ReplacePods(kind.Namespace, pods);
        }
        else
        {
            Replace(kind, listed);
        }

        return version;
    }

    /// <summary>
    /// Follows a kind's changes from <paramref name="version"/> until the server ends the watch; returns the version to
    /// watch from next, or null when it expired (the kind is listed again).
    /// </summary>
    private async Task<string?> WatchAsync(ServedKind kind, string version, CancellationToken cancellationToken)
    {
        // The server ends a watch after timeoutSeconds; it is resumed from the last version seen. A connection that
        // went silent (a peer gone without a word, a middlebox that dropped it) would never end on its own: past
        // WatchBound the watch is dropped here and resumed the same way.
        var path = $"{kind.Path}?watch=1&allowWatchBookmarks=true&timeoutSeconds={WatchSeconds}&resourceVersion={Uri.EscapeDataString(version)}";
        var reached = new System.Runtime.CompilerServices.StrongBox<string>(version);
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(WatchBound);
        try
        {
            return await FollowAsync(kind, path, reached, bound.Token).ConfigureAwait(false) ? reached.Value! : null;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return reached.Value!;
        }
    }

    // Applies a watch's events, keeping the version reached; false when the version expired (410).
    private async Task<bool> FollowAsync(ServedKind kind, string path, System.Runtime.CompilerServices.StrongBox<string> reached, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if ((int)response.StatusCode == 410)
        {
            return false;
        }

        await KubernetesApi.EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false));
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            var change = JsonNode.Parse(line)?.AsObject() ?? throw new JsonException("a watch event is not an object");
            var type = change["type"]?.GetValue<string>();
            if (change["object"] is not JsonObject entry)
            {
                throw new JsonException($"a watch event of {kind.Path} has no object");
            }

            if (type == "ERROR")
            {
                // A Status: 410 Gone (the version is too old) lists again; anything else is a failure of the watch.
                var code = entry["code"]?.GetValue<int>() ?? 0;
                return code == 410 ? false : throw new KubernetesApiException(code, entry["message"]?.GetValue<string>() ?? "watch error");
            }

            reached.Value = entry["metadata"]?["resourceVersion"]?.GetValue<string>() ?? reached.Value!;
            switch (type)
            {
                case "ADDED" or "MODIFIED" or "DELETED" when kind.Kind is "Namespace" or "Node":
                    if (LabelsOf(entry) is { } read)
                    {
                        SetHeld(kind.Kind == Nodes.Kind ? _nodeLabels : _namespaceLabels, read.Name, type == "DELETED" ? null : read.Labels, SameLabels);
                    }

                    break;
                case "ADDED" or "MODIFIED" or "DELETED" when kind.Kind == Pods.Kind:
                    if (entry["metadata"] is JsonObject podMetadata && podMetadata["name"]?.GetValue<string>() is { Length: > 0 } podName)
                    {
                        SetPod(PodSource(podMetadata["namespace"]?.GetValue<string>() ?? "default", podName), type == "DELETED" ? null : PodOf(entry));
                    }

                    break;
                case "ADDED" or "MODIFIED" when Describe(entry, kind) is { } described:
                    Put(described.Source, described.Text);
                    break;
                case "DELETED" when Describe(entry, kind) is { } described:
                    Remove(described.Source);
                    break;
            }
        }

        return true;
    }

    /// <summary>
    /// An object as a source: its name, and its text for the parser (JSON is YAML), with the kind and version a list's
    /// items leave out, without the bookkeeping the API server adds (managed fields), and marked as the cluster's current
    /// state (<see cref="ConfigParser.LiveObjectAnnotation"/>).
    /// </summary>
    private static (string Source, string Text)? Describe(JsonObject entry, ServedKind kind)
    {
        if (entry["metadata"] is not JsonObject metadata || metadata["name"]?.GetValue<string>() is not { Length: > 0 } name)
        {
            return null;
        }

        var ns = metadata["namespace"]?.GetValue<string>() ?? "default";
        metadata.Remove("managedFields");
        if (metadata["annotations"] is not JsonObject annotations)
        {
            metadata["annotations"] = annotations = [];
        }

        annotations[ConfigParser.LiveObjectAnnotation] = "true";
        entry["apiVersion"] = kind.ApiVersion;
        entry["kind"] = kind.Kind;
        return ($"kubernetes/{kind.Kind}/{ns}/{name}", entry.ToJsonString());
    }

    // A namespace's name and labels.
    private static (string Name, IReadOnlyDictionary<string, string> Labels)? LabelsOf(JsonObject entry) =>
        entry["metadata"] is JsonObject { } metadata && metadata["name"]?.GetValue<string>() is { Length: > 0 } name
            ? (name, (metadata["labels"] as JsonObject ?? []).Where(l => l.Value is JsonValue).ToDictionary(l => l.Key, l => l.Value!.GetValue<string>(), StringComparer.Ordinal))
            : null;

    private static string PodSource(string ns, string name) => $"kubernetes/Pod/{ns}/{name}";

    // A pod's labels and addresses; null for one without an address yet (pending), which no slice lists.
    private static KubernetesPod? PodOf(JsonObject entry)
    {
        if (entry["metadata"] is not JsonObject metadata || metadata["name"]?.GetValue<string>() is not { Length: > 0 } name)
        {
            return null;
        }

        var ns = metadata["namespace"]?.GetValue<string>() ?? "default";
        var status = entry["status"] as JsonObject;
        var addresses = (status?["podIPs"] as JsonArray ?? []).Select(a => a?["ip"]?.GetValue<string>()).OfType<string>().ToList();
        if (addresses.Count == 0 && status?["podIP"]?.GetValue<string>() is { Length: > 0 } single)
        {
            addresses.Add(single);
        }

        return addresses.Count == 0 ? null : new KubernetesPod
        {
            Kind = Pods.Kind, ApiVersion = "v1", Name = name, Namespace = ns,
            NodeName = entry["spec"]?["nodeName"]?.GetValue<string>() is { Length: > 0 } node ? node : null,
            Labels = (metadata["labels"] as JsonObject ?? []).Where(l => l.Value is JsonValue).ToDictionary(l => l.Key, l => l.Value!.GetValue<string>(), StringComparer.Ordinal),
            Addresses = addresses,
            Source = new SourceLocation(PodSource(ns, name), 0, 0),
        };
    }

    private static bool SamePod(KubernetesPod a, KubernetesPod b) => SameLabels(a.Labels, b.Labels) && a.Addresses.SequenceEqual(b.Addresses) && a.NodeName == b.NodeName;

    // A node's locality as Istio reads it from its labels: region/zone/subzone; null without a region or a zone.
    private static string? LocalityOf(IReadOnlyDictionary<string, string> labels)
    {
        var region = labels.GetValueOrDefault("topology.kubernetes.io/region") ?? labels.GetValueOrDefault("failure-domain.beta.kubernetes.io/region");
        var zone = labels.GetValueOrDefault("topology.kubernetes.io/zone") ?? labels.GetValueOrDefault("failure-domain.beta.kubernetes.io/zone");
        var subzone = labels.GetValueOrDefault("topology.istio.io/subzone");
        return region is null && zone is null ? null : $"{region}/{zone}/{subzone}".TrimEnd('/');
    }

    // The pods of one namespace (or all) listed in place of the ones held; a merge follows only when one's labels or
    // addresses changed (its status changes often, and is not read).
    private void ReplacePods(string? ns, Dictionary<string, KubernetesPod> listed) =>
        ReplaceHeld(_pods, ns is null ? "kubernetes/Pod/" : $"kubernetes/Pod/{ns}/", listed, SamePod);

    private void SetPod(string source, KubernetesPod? pod) => SetHeld(_pods, source, pod, SamePod);

    // The namespaces listed in place of the ones held; a merge follows only when a label changed (they change seldom,
    // their objects often: status, annotations).
    private void ReplaceNamespaces(Dictionary<string, IReadOnlyDictionary<string, string>> listed) =>
        ReplaceHeld(_namespaceLabels, string.Empty, listed, SameLabels);

    // What a list read of a table the store keeps beside its sources (the keys under a prefix), in place of what it held.
    private void ReplaceHeld<T>(Dictionary<string, T> table, string prefix, Dictionary<string, T> listed, Func<T, T, bool> same)
        where T : class
    {
        bool changed;
        lock (_lock)
        {
            var held = table.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            changed = held.Count != listed.Count || listed.Any(e => !table.TryGetValue(e.Key, out var before) || !same(before, e.Value));
            if (changed)
            {
                foreach (var key in held)
                {
                    table.Remove(key);
                }

                foreach (var (key, value) in listed)
                {
                    table[key] = value;
                }
            }
        }

        if (changed)
        {
            Changed();
        }
    }

    // One watch event's entry of such a table (null: gone); a merge follows only when it changed.
    private void SetHeld<T>(Dictionary<string, T> table, string key, T? value, Func<T, T, bool> same)
        where T : class
    {
        lock (_lock)
        {
            var held = table.GetValueOrDefault(key);
            if (value is null ? held is null : held is not null && same(held, value))
            {
                return;
            }

            if (value is null)
            {
                table.Remove(key);
            }
            else
            {
                table[key] = value;
            }
        }

        Changed();
    }

    private static bool SameLabels(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(l => b.TryGetValue(l.Key, out var v) && v == l.Value);

    /// <summary>Puts the listed objects of a kind in place of the ones held.</summary>
    /// <remarks>Objects are parsed outside the lock, which guards only the table: a long list does not hold up a merge.</remarks>
    private void Replace(ServedKind kind, IReadOnlyDictionary<string, string> listed)
    {
        var prefix = kind.Namespace is null ? $"kubernetes/{kind.Kind}/" : $"kubernetes/{kind.Kind}/{kind.Namespace}/";
        Dictionary<string, SourceState> held;
        lock (_lock)
        {
            held = _objects.Where(o => o.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(o => o.Key, o => o.Value, StringComparer.Ordinal);
        }

        // Only this kind's reader writes these sources: what it read above is still what the table holds.
        var next = new Dictionary<string, SourceState>(StringComparer.Ordinal);
        foreach (var (source, text) in listed)
        {
            if (Parsed(source, text, held.GetValueOrDefault(source)) is { } state)
            {
                next[source] = state;
            }
        }

        var gone = held.Keys.Where(k => !listed.ContainsKey(k)).ToList();
        if (next.Count == 0 && gone.Count == 0)
        {
            return;
        }

        lock (_lock)
        {
            foreach (var source in gone)
            {
                _objects.Remove(source);
            }

            foreach (var (source, state) in next)
            {
                _objects[source] = state;
            }
        }

        Changed();
    }

    private void Put(string source, string text)
    {
        SourceState? held;
        lock (_lock)
        {
            held = _objects.GetValueOrDefault(source);
        }

        if (Parsed(source, text, held) is { } state)
        {
            lock (_lock)
            {
                _objects[source] = state;
            }

            Changed();
        }
    }

    // The source's next state, or null when its text is the one held.
    private SourceState? Parsed(string source, string text, SourceState? held)
    {
        if (held?.Text == text)
        {
            return null;
        }

        var state = (held ?? new SourceState()).Next(text, source, out var result);
        if (!state.Accepted)
        {
            Log.Rejected(_logger, source, string.Join("; ", result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)), state.InForce.Count);
        }

        return state;
    }

    private void Remove(string source)
    {
        bool removed;
        lock (_lock)
        {
            removed = _objects.Remove(source);
        }

        if (removed)
        {
            Changed();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Reading {Count} kinds of resources from the Kubernetes API server at {Server}, in {Namespaces}", EventName = "KubernetesReading")]
        public static partial void Reading(ILogger logger, string server, int count, string namespaces);

        [LoggerMessage(2, LogLevel.Information, "The Kubernetes API server does not serve {Kind} ({Path}: its CRD is not installed); asking again every {Retry}", EventName = "KubernetesKindNotServed")]
        public static partial void NotServed(ILogger logger, string kind, string path, TimeSpan retry);

        [LoggerMessage(EventId = 3, Message = "Reading {Kind} from the Kubernetes API server failed: {Error}; what was read stays in force; retrying in {Delay}", EventName = "KubernetesReadFailed")]
        public static partial void Failed(ILogger logger, LogLevel level, string kind, string error, TimeSpan delay);

        [LoggerMessage(5, LogLevel.Warning, "MeshConfig's discoverySelectors are not applied: ControlPlane:KubernetesNamespaces names the namespaces read ({Namespaces})", EventName = "KubernetesSelectorsIgnored")]
        public static partial void SelectorsIgnored(ILogger logger, string namespaces);

        [LoggerMessage(4, LogLevel.Error, "Rejected {Source}: {Errors}; its last good version ({ResourceCount} resources) stays in force", EventName = "KubernetesObjectRejected")]
        public static partial void Rejected(ILogger logger, string source, string errors, int resourceCount);
    }
}

/// <summary>An object read from the cluster: its source name (<c>kubernetes/&lt;kind&gt;/&lt;namespace&gt;/&lt;name&gt;</c>), its latest text and its findings.</summary>
internal sealed record ClusterObject(string Source, string Text, IReadOnlyList<ConfigDiagnostic> Diagnostics);

/// <summary>How one kind is read: the version served (empty: none), its state (watching, failing, not served), the last error, and when it was last listed.</summary>
internal sealed record KubernetesKindStatus(string Kind, string? Namespace, string ApiVersion, string State, string? Error, DateTimeOffset? Listed);

/// <summary>A kind the control plane reads: its group, its resource's plural name, and its versions, preferred first.</summary>
internal sealed record KubernetesKind(string Group, string Plural, string Kind, params string[] Versions)
{
    /// <summary>The kind in one of its versions, in one namespace or all: its collection's path and the apiVersion of its objects.</summary>
    public ServedKind In(string version, string? ns = null)
    {
        var scope = ns is null ? string.Empty : $"namespaces/{Uri.EscapeDataString(ns)}/";
        return Group.Length == 0
            ? new ServedKind($"api/{version}/{scope}{Plural}", version, Kind, ns)
            : new ServedKind($"apis/{Group}/{version}/{scope}{Plural}", $"{Group}/{version}", Kind, ns);
    }
}

/// <summary>A kind in the version the server serves it in, in one namespace (or, null, all).</summary>
internal readonly record struct ServedKind(string Path, string ApiVersion, string Kind, string? Namespace);

/// <summary>A request the Kubernetes API server refused, with its status code and its explanation.</summary>
internal sealed class KubernetesApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}
