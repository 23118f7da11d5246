using MeshKit.Config.Compilation;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// A directory of YAML files (recursively, <c>*.yaml</c> and <c>*.yml</c>), watched through file-system notifications
/// and a periodic rescan. Each file is accepted or rejected whole; a rejected file keeps its last accepted content.
/// </summary>
internal sealed partial class DirectoryConfigStore : IConfigStore, IConfigWriter, ICompleteChanges, IHostedService, IDisposable
{
    private readonly ControlPlaneOptions _options;
    private readonly ILogger<DirectoryConfigStore> _logger;
    private readonly TimeProvider _time;
    private readonly Lock _scanLock = new();
    private readonly Dictionary<string, FileState> _files = new(StringComparer.Ordinal);
    private readonly ChangeSignal _reload = new();
    private FileSystemWatcher? _watcher;
    private ITimer? _timer;
    private int _complete;
    private State _state = new(ConfigSet.Empty, [], new Dictionary<string, string>());

    // Which file's definition of each resource is in force, and the conflicts already logged (under _scanLock).
    private Dictionary<string, string> _owners = new(StringComparer.Ordinal);
    private HashSet<string> _conflicts = new(StringComparer.Ordinal);

    public DirectoryConfigStore(IOptions<ControlPlaneOptions> options, ILogger<DirectoryConfigStore> logger, TimeProvider time)
    {
        _options = options.Value;
        _logger = logger;
        _time = time;
        Directory = Path.GetFullPath(_options.ConfigDirectory);
    }

    public string Directory { get; }

    public ConfigSet Current => Volatile.Read(ref _state).Config;

    public IReadOnlyList<ConfigSourceStatus> Sources => Volatile.Read(ref _state).Sources;

    public IChangeToken GetReloadToken() => _reload.Token;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        System.IO.Directory.CreateDirectory(Directory);
        Scan();
        _watcher = new FileSystemWatcher(Directory) { IncludeSubdirectories = true, NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.DirectoryName };
        _watcher.Changed += (_, _) => Scan();
        _watcher.Created += (_, _) => Scan();
        _watcher.Deleted += (_, _) => Scan();
        _watcher.Renamed += (_, _) => Scan();
        _watcher.EnableRaisingEvents = true;

        // Notifications can be lost (network file systems, overflow); the rescan makes the store converge anyway.
        _timer = _time.CreateTimer(_ => Scan(), null, _options.ConfigPollInterval, _options.ConfigPollInterval);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _timer?.Dispose();
    }

    /// <summary>Gets the text of every file whose latest content was accepted, by source name.</summary>
    public IReadOnlyDictionary<string, string> AcceptedTexts => Volatile.Read(ref _state).AcceptedTexts;

    public async Task<string?> ApplyAsync(string name, string text, IReadOnlyList<ConfigResource> resources, CancellationToken cancellationToken)
    {
        // Write then rename, so the watcher never reads half a file.
        var temp = Path.Combine(Directory, "." + name + ".tmp");
        await File.WriteAllTextAsync(temp, text, cancellationToken).ConfigureAwait(false);
        lock (_scanLock)
        {
            // As the etcd store does: a resource another file defines is refused, not silently displaced or ignored.
            foreach (var resource in resources)
            {
                if (_owners.TryGetValue(resource.Key, out var owner) && owner != name)
                {
                    File.Delete(temp);
                    return $"{resource.Key} is already defined in {owner}";
                }
            }

            WriteComplete(() => File.Move(temp, Path.Combine(Directory, name), overwrite: true));
        }

        return null;
    }

    public Task<bool> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        var path = Path.Combine(Directory, name);
        if (!File.Exists(path))
        {
            return Task.FromResult(false);
        }

        WriteComplete(() => File.Delete(path));
        return Task.FromResult(true);
    }

    /// <summary>Whether the change being signalled was written through the admin API (a whole source at once).</summary>
    public bool TakeComplete() => Interlocked.Exchange(ref _complete, 0) == 1;

    /// <summary>
    /// Makes an API write and reads it back at once (the watcher may get there first; either scan reports the change as
    /// complete), so the change is in force when the API call returns.
    /// </summary>
    private void WriteComplete(Action write)
    {
        Volatile.Write(ref _complete, 1);
        try
        {
            write();
        }
        catch
        {
            Volatile.Write(ref _complete, 0);
            throw;
        }

        Scan();

        // The scan signalled synchronously, or found nothing new (the same content applied again).
        Volatile.Write(ref _complete, 0);
    }

    /// <summary>Reads every changed file, rebuilds the set if anything changed, and fires the reload token.</summary>
    public void Scan()
    {
        lock (_scanLock)
        {
            bool changed;
            try
            {
                changed = ScanCore();
            }
            catch (IOException ex)
            {
                Log.ScanFailed(_logger, Directory, ex);
                return;
            }

            if (!changed)
            {
                return;
            }

            var resources = new List<ConfigResource>();
            var owners = new Dictionary<string, string>(StringComparer.Ordinal);
            var conflicts = new HashSet<string>(StringComparer.Ordinal);
            var statuses = new List<ConfigSourceStatus>();
            foreach (var (name, file) in _files.OrderBy(f => f.Key, StringComparer.Ordinal))
            {
                var diagnostics = file.Diagnostics.ToList();
                var accepted = file.Accepted;
                foreach (var resource in file.InForce)
                {
                    // A definition in force keeps its place: a file that defines the same resource later is the one
                    // ignored, whatever its name (by name only when neither was in force: at start).
                    var owner = owners.GetValueOrDefault(resource.Key)
                        ?? (_owners.TryGetValue(resource.Key, out var before) && before != name && DefinedIn(before, resource.Key) ? before : null);
                    if (owner is not null)
                    {
                        var conflict = resource.Finding(DiagnosticSeverity.Error, "metadata.name",
                            $"{resource.DisplayName} is already defined in {owner}; this definition is ignored");
                        diagnostics.Add(conflict);
                        if (conflicts.Add(name + "|" + resource.Key) && !_conflicts.Contains(name + "|" + resource.Key))
                        {
                            Log.ConfigError(_logger, conflict.ToString());
                        }

                        accepted = false;
                        continue;
                    }

                    owners[resource.Key] = name;
                    resources.Add(resource);
                }

                statuses.Add(new ConfigSourceStatus(name, accepted, file.InForce.Count, diagnostics));
            }

            _owners = owners;
            _conflicts = conflicts;

            var texts = _files.Where(f => f.Value.Accepted).ToDictionary(f => f.Key, f => f.Value.Text, StringComparer.Ordinal);
            Volatile.Write(ref _state, new State(new ConfigSet(resources), statuses, texts));
            Log.ConfigLoaded(_logger, resources.Count, statuses.Count);
            _reload.Fire();
        }
    }

    private bool DefinedIn(string file, string key) =>
        _files.TryGetValue(file, out var state) && state.InForce.Any(r => r.Key == key);

    private static readonly EnumerationOptions VisibleTree = new()
    {
        RecurseSubdirectories = true,
        AttributesToSkip = FileAttributes.Hidden | FileAttributes.System,
    };

    private bool ScanCore()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var changed = false;
        // Hidden entries are skipped: a Kubernetes ConfigMap volume holds each file three times, as the link the pod
        // sees and again under the kubelet's "..data" link and its timestamped folder (and editors keep dotfiles).
        var files = System.IO.Directory.EnumerateFiles(Directory, "*.*", VisibleTree)
            .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase));
        foreach (var path in files)
        {
            // A link's own stamp never changes when the kubelet swaps the folder it points into: the target's does.
            var info = new FileInfo(path);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target)
            {
                info = target;
            }

            if (!info.Exists)
            {
                continue; // a dangling link: as if the file were gone
            }

            var name = Path.GetRelativePath(Directory, path).Replace('\\', '/');
            seen.Add(name);
            var stamp = (info.LastWriteTimeUtc.Ticks, info.Length);
            if (_files.TryGetValue(name, out var existing) && existing.Stamp == stamp)
            {
                continue;
            }

            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (IOException)
            {
                // Being written right now; the next notification or rescan reads it.
                continue;
            }

            if (existing is not null && existing.Text == text)
            {
                existing.Stamp = stamp;
                continue;
            }

            var state = existing ?? new FileState();
            state.Stamp = stamp;
            var result = state.Update(text, name);

            foreach (var diagnostic in result.Diagnostics)
            {
                if (diagnostic.Severity == DiagnosticSeverity.Error)
                {
                    Log.ConfigError(_logger, diagnostic.ToString());
                }
                else
                {
                    Log.ConfigWarning(_logger, diagnostic.ToString());
                }
            }

            if (!state.Accepted)
            {
                Log.FileRejected(_logger, name, state.InForce.Count);
            }

            _files[name] = state;
            changed = true;
        }

        foreach (var gone in _files.Keys.Where(k => !seen.Contains(k)).ToList())
        {
            _files.Remove(gone);
            Log.FileRemoved(_logger, gone);
            changed = true;
        }

        return changed;
    }

    private sealed class FileState : SourceState
    {
        public (long Ticks, long Length) Stamp { get; set; }
    }

    private sealed record State(ConfigSet Config, IReadOnlyList<ConfigSourceStatus> Sources, IReadOnlyDictionary<string, string> AcceptedTexts);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Configuration loaded: {ResourceCount} resources from {FileCount} files", EventName = "ConfigLoaded")]
        public static partial void ConfigLoaded(ILogger logger, int resourceCount, int fileCount);

        [LoggerMessage(2, LogLevel.Error, "{Diagnostic}", EventName = "ConfigError")]
        public static partial void ConfigError(ILogger logger, string diagnostic);

        [LoggerMessage(3, LogLevel.Warning, "{Diagnostic}", EventName = "ConfigWarning")]
        public static partial void ConfigWarning(ILogger logger, string diagnostic);

        [LoggerMessage(4, LogLevel.Error, "Rejected {File}; its last good content ({ResourceCount} resources) stays in force", EventName = "FileRejected")]
        public static partial void FileRejected(ILogger logger, string file, int resourceCount);

        [LoggerMessage(5, LogLevel.Information, "Removed {File}; its resources are withdrawn", EventName = "FileRemoved")]
        public static partial void FileRemoved(ILogger logger, string file);

        [LoggerMessage(6, LogLevel.Warning, "Scanning {Directory} failed; retrying on the next change", EventName = "ScanFailed")]
        public static partial void ScanFailed(ILogger logger, string directory, Exception exception);
    }
}
