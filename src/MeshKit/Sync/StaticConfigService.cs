using MeshKit.Config.Compilation;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using MeshKit.Snapshot;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MeshKit.Sync;

/// <summary>
/// Static mode: compiles <see cref="MeshOptions.ConfigFile"/> with the same code the control plane uses (endpoints come
/// from ServiceEntries) and serves it, alone or until the control plane has answered. An invalid file at start fails
/// the start with every error; an invalid change is logged and the previous snapshot stays.
/// </summary>
internal sealed partial class StaticConfigService(
    MeshSnapshotProvider provider,
    IOptions<MeshOptions> options,
    WorkloadAnnouncer announcer,
    TimeProvider time,
    ILogger<StaticConfigService> logger) : IHostedService, IDisposable
{
    private FileSystemWatcher? _watcher;
    private ITimer? _debounce;
    private int _version;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var file = options.Value.ConfigFile;
        if (string.IsNullOrEmpty(file))
        {
            return Task.CompletedTask;
        }

        var path = Path.GetFullPath(file);
        var error = Load(path);
        if (error is not null)
        {
            throw new InvalidOperationException($"Mesh config file '{file}' is invalid:{Environment.NewLine}{error}");
        }

        _watcher = new FileSystemWatcher(Path.GetDirectoryName(path)!, Path.GetFileName(path))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.FileName,
        };
        _debounce = time.CreateTimer(_ => Reload(path), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        FileSystemEventHandler changed = (_, _) => _debounce.Change(TimeSpan.FromMilliseconds(100), Timeout.InfiniteTimeSpan);
        _watcher.Changed += changed;
        _watcher.Created += changed;
        _watcher.Renamed += (_, _) => _debounce.Change(TimeSpan.FromMilliseconds(100), Timeout.InfiniteTimeSpan);
        _watcher.EnableRaisingEvents = true;
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
        _debounce?.Dispose();
    }

    private void Reload(string path)
    {
        try
        {
            var error = Load(path);
            if (error is not null)
            {
                Log.ReloadRejected(logger, path, error);
            }
        }
        catch (IOException ex)
        {
            Log.ReloadRejected(logger, path, ex.Message);
        }
    }

    /// <summary>Parses, compiles and publishes the file. Returns the errors, or null when it was applied.</summary>
    internal string? Load(string path)
    {
        var result = ConfigParser.ParseFile(path);
        foreach (var warning in result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Warning))
        {
            Log.ConfigWarning(logger, warning.ToString());
        }

        if (result.HasErrors)
        {
            return string.Join(Environment.NewLine, result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        }

        var mesh = MeshCompiler.Compile(new ConfigSet(result.Resources), []);
        var view = mesh.ViewFor(options.Value.Namespace, announcer.Source.Labels, announcer.Source.Service);
        MeshSnapshot snapshot;
        try
        {
            snapshot = SnapshotBuilder.Build(view.Resources, announcer.Source, $"file-{Interlocked.Increment(ref _version)}", ready: true, provider.Runtime);
        }
        catch (MeshConfigException ex)
        {
            return ex.Message;
        }

        if (provider.PublishFromFile(snapshot))
        {
            Log.Loaded(logger, path, result.Resources.Count);
        }

        return null;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Mesh config loaded from {File}: {Count} resources", EventName = "StaticConfigLoaded")]
        public static partial void Loaded(ILogger logger, string file, int count);

        [LoggerMessage(2, LogLevel.Error, "Mesh config file {File} rejected; the previous config stays in force:\n{Errors}", EventName = "StaticConfigRejected")]
        public static partial void ReloadRejected(ILogger logger, string file, string errors);

        [LoggerMessage(3, LogLevel.Warning, "{Diagnostic}", EventName = "StaticConfigWarning")]
        public static partial void ConfigWarning(ILogger logger, string diagnostic);
    }
}
