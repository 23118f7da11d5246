using MeshKit.Config.Parsing;
using MeshKit.ControlPlane.Sources;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Store;

/// <summary>
/// With the etcd store and <see cref="ControlPlaneOptions.EtcdImportDirectory"/>, keeps etcd in step with the config
/// directory: every accepted file is applied as a source (origin <c>directory</c>), and a source that came from the
/// directory is removed when its file is. Sources applied with meshctl are left alone. A file that is rejected keeps
/// its last accepted content in etcd, as it would in the directory store.
/// </summary>
internal sealed partial class DirectoryImport(DirectoryConfigStore directory, EtcdConfigStore etcd, ILogger<DirectoryImport> logger) : IHostedService, IDisposable
{
    private readonly SemaphoreSlim _running = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private IDisposable? _subscription;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await ImportAsync().ConfigureAwait(false);
        _subscription = ChangeToken.OnChange(directory.GetReloadToken, () => _ = ImportAsync());
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _subscription?.Dispose();
        _stopping.Cancel();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _subscription?.Dispose();
        _stopping.Dispose();
        _running.Dispose();
    }

    private async Task ImportAsync()
    {
        await _running.WaitAsync(_stopping.Token).ConfigureAwait(false);
        try
        {
            var texts = directory.AcceptedTexts;
            foreach (var (name, text) in texts)
            {
                var parsed = ConfigParser.Parse(text, name);
                if (await etcd.ApplyAsync(name, text, parsed.Resources, EtcdConfigStore.DirectoryOrigin, _stopping.Token).ConfigureAwait(false) is { } refused)
                {
                    Log.Refused(logger, name, refused);
                }
            }

            foreach (var gone in etcd.SourcesFrom(EtcdConfigStore.DirectoryOrigin).Where(s => !texts.ContainsKey(s)).ToArray())
            {
                await etcd.DeleteAsync(gone, _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Grpc.Core.RpcException ex)
        {
            Log.Failed(logger, ex.Status.Detail);
        }
        finally
        {
            _running.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Error, "Importing {File} into etcd was refused: {Reason}", EventName = "ImportRefused")]
        public static partial void Refused(ILogger logger, string file, string reason);

        [LoggerMessage(2, LogLevel.Warning, "Importing the config directory into etcd failed ({Reason}); the next change retries", EventName = "ImportFailed")]
        public static partial void Failed(ILogger logger, string reason);
    }
}
