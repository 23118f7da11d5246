using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using MeshKit.Config.Compilation;
using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using MeshKit.ControlPlane.Sources;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Store;

/// <summary>
/// Configuration in etcd, shared by every replica: each resource is one key, <c>{prefix}/config/{kind}/{namespace}/{name}</c>,
/// holding its YAML document and the source (file name) it was applied from; its etcd revision is its version. A source
/// is applied in one transaction (its resources written, the ones it no longer has deleted), guarded by the revisions
/// it read, so two replicas applying at once cannot interleave. Every replica watches the prefix and converges on the
/// same set.
/// </summary>
internal sealed partial class EtcdConfigStore : IConfigStore, IConfigWriter, ICompleteChanges, IHostedService, IDisposable
{
    /// <summary>The origin of a source written by the directory import (others come from the admin API).</summary>
    public const string DirectoryOrigin = "directory";

    private const int MaxAttempts = 5;

    private readonly EtcdCluster _etcd;
    private readonly ILogger<EtcdConfigStore> _logger;
    private readonly string _prefix;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _apply = new();
    private Dictionary<string, StoredResource> _stored = new(StringComparer.Ordinal);
    private State _state = new(ConfigSet.Empty, [], 0);
    private readonly ChangeSignal _reload = new();
    private Task? _watch;

    public EtcdConfigStore(EtcdCluster etcd, ILogger<EtcdConfigStore> logger)
    {
        _etcd = etcd;
        _logger = logger;
        _prefix = etcd.Prefix + "/config/";
    }

    public ConfigSet Current => Volatile.Read(ref _state).Config;

    public IReadOnlyList<ConfigSourceStatus> Sources => Volatile.Read(ref _state).Sources;

    /// <summary>Gets the etcd revision the set in force was read at.</summary>
    public long Revision => Volatile.Read(ref _state).Revision;

    public IChangeToken GetReloadToken() => _reload.Token;

    /// <summary>Every change comes from a committed etcd transaction (one applied source each), so it is complete.</summary>
    public bool TakeComplete() => true;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _watch = _etcd.WatchPrefixAsync(_prefix, OnSnapshot, OnEvents, _stopping.Token);
        await _synced.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_watch is not null)
        {
            try
            {
                await _watch.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public void Dispose() => _stopping.Dispose();

    public Task<string?> ApplyAsync(string name, string text, IReadOnlyList<ConfigResource> resources, CancellationToken cancellationToken) =>
        ApplyAsync(name, text, resources, "api", cancellationToken);

    /// <summary>Stores a parsed source: its resources written, those it no longer has removed, in one transaction.</summary>
    public async Task<string?> ApplyAsync(string name, string text, IReadOnlyList<ConfigResource> resources, string origin, CancellationToken cancellationToken)
    {
        var documents = YamlDocuments.Split(text);
        var wanted = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        foreach (var resource in resources)
        {
            var document = documents[0];
            foreach (var candidate in documents.Where(d => d.FirstLine <= resource.Source.Line))
            {
                document = candidate;
            }

            var value = JsonSerializer.SerializeToUtf8Bytes(new StoredValue(name, origin, document.FirstLine, document.Text), StoredValueContext.Default.StoredValue);
            wanted[KeyOf(resource)] = ByteString.CopyFrom(value);
        }

        for (var attempt = 1; ; attempt++)
        {
            var current = await _etcd.RangeAsync(_prefix, cancellationToken).ConfigureAwait(false);
            var request = new TxnRequest();
            foreach (var kv in current.Kvs)
            {
                var key = kv.Key.ToStringUtf8();
                var owner = Read(kv)?.Source;
                if (wanted.ContainsKey(key) && owner is not null && owner != name)
                {
                    return $"{key[_prefix.Length..]} is already defined in {owner}";
                }

                if (owner == name || wanted.ContainsKey(key))
                {
                    // Nothing this source touches may have changed since it was read.
                    request.Compare.Add(new Compare { Key = kv.Key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = kv.ModRevision });
                    if (!wanted.ContainsKey(key))
                    {
                        request.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = kv.Key } });
                    }
                }
            }

            foreach (var (key, value) in wanted)
            {
                var keyBytes = ByteString.CopyFromUtf8(key);
                if (!current.Kvs.Any(kv => kv.Key == keyBytes))
                {
                    // Created by nobody else meanwhile.
                    request.Compare.Add(new Compare { Key = keyBytes, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
                }

                var existing = current.Kvs.FirstOrDefault(kv => kv.Key == keyBytes);
                if (existing is null || existing.Value != value)
                {
                    request.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = keyBytes, Value = value } });
                }
            }

            if (request.Success.Count == 0)
            {
                return null;
            }

            var response = await _etcd.TxnAsync(request, cancellationToken).ConfigureAwait(false);
            if (response.Succeeded)
            {
                Log.Applied(_logger, name, wanted.Count, response.Header.Revision);
                return null;
            }

            if (attempt == MaxAttempts)
            {
                return $"{name} kept changing under concurrent writes; try again";
            }
        }
    }

    public async Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            var current = await _etcd.RangeAsync(_prefix, cancellationToken).ConfigureAwait(false);
            var request = new TxnRequest();
            foreach (var kv in current.Kvs.Where(kv => Read(kv)?.Source == name))
            {
                request.Compare.Add(new Compare { Key = kv.Key, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = kv.ModRevision });
                request.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = kv.Key } });
            }

            if (request.Success.Count == 0)
            {
                return false;
            }

            if ((await _etcd.TxnAsync(request, cancellationToken).ConfigureAwait(false)).Succeeded)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Gets the names of the sources in etcd that came from <paramref name="origin"/>.</summary>
    public IReadOnlyCollection<string> SourcesFrom(string origin) =>
        Volatile.Read(ref _stored).Values.Where(s => s.Value.Origin == origin).Select(s => s.Value.Source).ToHashSet(StringComparer.Ordinal);

    private string KeyOf(ConfigResource resource) => $"{_prefix}{resource.Kind}/{resource.Namespace}/{resource.Name}";

    private StoredValue? Read(Mvccpb.KeyValue kv)
    {
        try
        {
            return JsonSerializer.Deserialize(kv.Value.Span, StoredValueContext.Default.StoredValue);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void OnSnapshot(IReadOnlyList<Mvccpb.KeyValue> kvs, long revision)
    {
        var stored = new Dictionary<string, StoredResource>(StringComparer.Ordinal);
        foreach (var kv in kvs)
        {
            Add(stored, kv);
        }

        Rebuild(stored, revision);
        _synced.TrySetResult();
    }

    private void OnEvents(IReadOnlyList<Mvccpb.Event> events, long revision)
    {
        var stored = new Dictionary<string, StoredResource>(Volatile.Read(ref _stored), StringComparer.Ordinal);
        foreach (var e in events)
        {
            if (e.Type == Mvccpb.Event.Types.EventType.Delete)
            {
                stored.Remove(e.Kv.Key.ToStringUtf8());
            }
            else
            {
                Add(stored, e.Kv);
            }
        }

        Rebuild(stored, revision);
    }

    private void Add(Dictionary<string, StoredResource> stored, Mvccpb.KeyValue kv)
    {
        var key = kv.Key.ToStringUtf8();
        if (Volatile.Read(ref _stored).TryGetValue(key, out var known) && known.ModRevision == kv.ModRevision)
        {
            stored[key] = known;
            return;
        }

        var value = Read(kv);
        if (value is null)
        {
            stored[key] = new StoredResource(new StoredValue("(unreadable)", "unknown", 1, string.Empty), kv.ModRevision, null,
                [new ConfigDiagnostic(DiagnosticSeverity.Error, key, 1, 1, string.Empty, "the etcd value is not a MeshKit resource record", null)]);
            return;
        }

        // Blank lines in front keep the document's line numbers those of the source it was applied from.
        var result = ConfigParser.Parse(new string('\n', Math.Max(0, value.Line - 1)) + value.Yaml, value.Source);
        var resource = result.Resources.FirstOrDefault(r => KeyOf(r) == key);
        var diagnostics = result.Diagnostics.ToList();
        if (resource is null && !result.HasErrors)
        {
            diagnostics.Add(new ConfigDiagnostic(DiagnosticSeverity.Error, value.Source, value.Line, 1, "metadata.name", $"the document stored under {key} does not define that resource", null));
        }

        stored[key] = new StoredResource(value, kv.ModRevision, result.HasErrors ? null : resource, diagnostics);
    }

    private void Rebuild(Dictionary<string, StoredResource> stored, long revision)
    {
        lock (_apply)
        {
            var statuses = stored.Values.GroupBy(s => s.Value.Source, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => new ConfigSourceStatus(g.Key, g.All(s => s.Resource is not null), g.Count(s => s.Resource is not null), g.SelectMany(s => s.Diagnostics).ToArray()))
                .ToArray();
            foreach (var bad in stored.Values.Where(s => s.Resource is null).SelectMany(s => s.Diagnostics).Where(d => d.Severity == DiagnosticSeverity.Error))
            {
                Log.BadResource(_logger, bad.ToString());
            }

            Volatile.Write(ref _stored, stored);
            Volatile.Write(ref _state, new State(new ConfigSet(stored.Values.Where(s => s.Resource is not null).Select(s => s.Resource!)), statuses, revision));
            Log.Loaded(_logger, stored.Count, revision);
            _reload.Fire();
        }
    }

    private sealed record State(ConfigSet Config, IReadOnlyList<ConfigSourceStatus> Sources, long Revision);

    private sealed record StoredResource(StoredValue Value, long ModRevision, ConfigResource? Resource, IReadOnlyList<ConfigDiagnostic> Diagnostics);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Applied {Source} to etcd: {Count} resources (revision {Revision})", EventName = "EtcdConfigApplied")]
        public static partial void Applied(ILogger logger, string source, int count, long revision);

        [LoggerMessage(2, LogLevel.Information, "Configuration from etcd: {Count} resources at revision {Revision}", EventName = "EtcdConfigLoaded")]
        public static partial void Loaded(ILogger logger, int count, long revision);

        [LoggerMessage(3, LogLevel.Error, "{Diagnostic}", EventName = "EtcdConfigError")]
        public static partial void BadResource(ILogger logger, string diagnostic);
    }
}

/// <summary>The value of a configuration key in etcd.</summary>
/// <param name="Source">Gets the source (file name) the resource was applied from.</param>
/// <param name="Origin">Gets who wrote it: <c>api</c> (meshctl) or <c>directory</c> (the directory import).</param>
/// <param name="Line">Gets the line of the source the document starts on.</param>
/// <param name="Yaml">Gets the resource's YAML document.</param>
internal sealed record StoredValue(string Source, string Origin, int Line, string Yaml);

[System.Text.Json.Serialization.JsonSerializable(typeof(StoredValue))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class StoredValueContext : System.Text.Json.Serialization.JsonSerializerContext;

/// <summary>Splits multi-document YAML into its documents, with the line each starts on.</summary>
internal static class YamlDocuments
{
    public static IReadOnlyList<(int FirstLine, string Text)> Split(string text)
    {
        var documents = new List<(int, string)>();
        var lines = text.Split('\n');
        var start = 0;
        for (var i = 0; i <= lines.Length; i++)
        {
            if (i == lines.Length || lines[i].TrimEnd('\r') == "---" || lines[i].StartsWith("--- ", StringComparison.Ordinal))
            {
                if (i > start)
                {
                    documents.Add((start + 1, string.Join('\n', lines[start..i])));
                }

                start = i + 1;
            }
        }

        return documents.Count > 0 ? documents : [(1, text)];
    }
}
