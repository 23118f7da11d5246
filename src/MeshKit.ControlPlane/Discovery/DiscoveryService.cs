using System.Collections.Concurrent;
using Grpc.Core;
using MeshKit.Config;
using MeshKit.ControlPlane.Ca;
using MeshKit.Config.Compilation;
using MeshKit.ControlPlane.Registry;
using MeshKit.Protocol.V1;

namespace MeshKit.ControlPlane.Discovery;

/// <summary>
/// The discovery stream: registers the workload from its first message, then sends it deltas of the resources it can
/// use whenever a newer mesh state changes them, and records its ACKs and NACKs.
/// </summary>
internal sealed partial class DiscoveryService(
    MeshStatePublisher publisher,
    CertificateAuthority ca,
    IWorkloadRegistry registry,
    ConnectionTracker tracker,
    PushThrottle throttle,
    TimeProvider time,
    ControlPlaneMetrics metrics,
    IHostApplicationLifetime lifetime,
    ILogger<DiscoveryService> logger) : MeshDiscovery.MeshDiscoveryBase
{
    public override async Task StreamResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
    {
        // Streams end when the control plane stops, so a restart does not wait out the host's shutdown timeout; the
        // workloads reconnect (to this one again, or another replica) and resume.
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        var cancellation = stopping.Token;
        bool announced;
        try
        {
            announced = await requestStream.MoveNext(cancellation).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            // Stopping (or the workload went away) before it announced itself: an ordinary end, not a handler error.
            throw new RpcException(new Status(StatusCode.Unavailable, "the control plane is stopping"));
        }

        if (!announced || requestStream.Current.Workload is null)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "the first message must carry the workload announcement"));
        }

        var first = requestStream.Current;
        var workload = first.Workload;
        var problem = Validate(workload);
        if (problem is not null)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, problem));
        }

        workload.Identity = Authenticate(workload, context);

        var connection = new WorkloadConnection(workload, time.GetUtcNow());
        foreach (var held in first.InitialResourceVersions)
        {
            connection.Resume(held.TypeUrl, held.Versions);
        }

        var lease = await registry.RegisterAsync(workload, cancellation).ConfigureAwait(false);
        tracker.Add(connection);
        Log.Connected(logger, workload.InstanceId, workload.Service, workload.Namespace);
        using var streamEnd = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var graceful = false;
        var writer = WriteLoopAsync(connection, responseStream, streamEnd.Token);
        try
        {
            while (await requestStream.MoveNext(cancellation).ConfigureAwait(false))
            {
                var request = requestStream.Current;
                if (request.ErrorDetail is { } error)
                {
                    connection.Nack(request.TypeUrl, request.ResponseNonce, error.Message, time.GetUtcNow());
                    metrics.Nacked(request.TypeUrl);
                    Log.Nacked(logger, workload.InstanceId, request.TypeUrl, request.ResponseNonce, error.Message);
                }
                else if (request.ResponseNonce.Length > 0)
                {
                    if (connection.Ack(request.TypeUrl, request.ResponseNonce, request.VersionInfo) is { } changedAt)
                    {
                        metrics.Converged(request.TypeUrl, time.GetUtcNow() - changedAt);
                    }
                }
            }

            // The workload closed its side: a clean shutdown, not a network failure.
            graceful = true;
        }
        catch (Exception) when (cancellation.IsCancellationRequested)
        {
        }
        catch (IOException)
        {
        }
        finally
        {
            await streamEnd.CancelAsync().ConfigureAwait(false);
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
            {
            }

            tracker.Remove(connection);
            registry.Release(workload.InstanceId, lease, graceful);
            Log.Disconnected(logger, workload.InstanceId, graceful);
        }
    }

    private async Task WriteLoopAsync(WorkloadConnection connection, IServerStreamWriter<DiscoveryResponse> stream, CancellationToken cancellationToken)
    {
        var version = 0L;
        while (!cancellationToken.IsCancellationRequested)
        {
            var state = await publisher.WaitForNewerAsync(version, cancellationToken).ConfigureAwait(false);
            version = state.Version;
            var view = state.Mesh.ViewFor(connection.Workload.Namespace, connection.Workload.Labels, connection.Workload.Service);
            foreach (var typeUrl in ResourceTypes.All)
            {
                var response = connection.Diff(typeUrl, view.OfType(typeUrl), state.Version, state.ChangedAt);
                if (response is not null)
                {
                    await throttle.WriteAsync(stream, response, cancellationToken).ConfigureAwait(false);
                    metrics.Pushed(typeUrl, response.CalculateSize());
                }
            }

            connection.StateVersion = state.Version;
        }
    }

    /// <summary>
    /// On the TLS port a workload proves its identity with its certificate, and may announce itself only as that
    /// namespace and service account. On the plaintext port it is registered without an identity.
    /// </summary>
    private string Authenticate(WorkloadAnnouncement workload, ServerCallContext context)
    {
        var http = context.GetHttpContext();
        if (!http.Request.IsHttps)
        {
            return string.Empty;
        }

        if (http.Connection.ClientCertificate is not { } certificate)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "discovery on the TLS port needs the workload's certificate"));
        }

        if (!ca.TryVerifyWorkload(certificate, [], out var id, out var error))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, error!));
        }

        if (workload.Namespace != id!.Value.Namespace || workload.ServiceAccount != id.Value.ServiceAccount)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"the certificate is {id}; it cannot announce namespace '{workload.Namespace}' and service account '{workload.ServiceAccount}'"));
        }

        return id.Value.ToString();
    }

    private static string? Validate(WorkloadAnnouncement workload)
    {
        if (workload.Service.Length == 0 || !Names.IsDnsLabel(workload.Service))
        {
            return $"service '{workload.Service}' must be a lower-case DNS-1123 label";
        }

        if (workload.Namespace.Length == 0 || !Names.IsDnsLabel(workload.Namespace))
        {
            return $"namespace '{workload.Namespace}' must be a lower-case DNS-1123 label";
        }

        if (workload.InstanceId.Length == 0)
        {
            return "instance_id is required";
        }

        foreach (var port in workload.Ports)
        {
            if (port.TargetPort is 0 or > 65535 || port.ServicePort > 65535)
            {
                return $"port '{port.Name}': target_port {port.TargetPort} and service_port {port.ServicePort} must be valid port numbers";
            }

            // An unset service port means callers use the port the workload listens on.
            if (port.ServicePort == 0)
            {
                port.ServicePort = port.TargetPort;
            }
        }

        return null;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Workload {InstanceId} ({Service}.{Namespace}) connected", EventName = "WorkloadConnected")]
        public static partial void Connected(ILogger logger, string instanceId, string service, string @namespace);

        [LoggerMessage(2, LogLevel.Information, "Workload {InstanceId} disconnected (clean close: {Graceful})", EventName = "WorkloadDisconnected")]
        public static partial void Disconnected(ILogger logger, string instanceId, bool graceful);

        [LoggerMessage(3, LogLevel.Warning, "Workload {InstanceId} rejected {TypeUrl} (nonce {Nonce}): {Error}", EventName = "ConfigNacked")]
        public static partial void Nacked(ILogger logger, string instanceId, string typeUrl, string nonce, string error);
    }
}

/// <summary>Bounds how many discovery responses are being written at once (<see cref="ControlPlaneOptions.PushConcurrency"/>).</summary>
internal sealed class PushThrottle(Microsoft.Extensions.Options.IOptions<ControlPlaneOptions> options, TimeProvider time) : IDisposable
{
    /// <summary>How long one write may hold a slot: a workload that stops reading must not stall the pushes to the rest.</summary>
    internal static readonly TimeSpan SlotHold = TimeSpan.FromSeconds(5);

    private readonly SemaphoreSlim _slots = new(options.Value.PushConcurrency, options.Value.PushConcurrency);

    /// <summary>Writes one response when a slot is free; the write completes once the stream has taken most of it.</summary>
    public async Task WriteAsync(IServerStreamWriter<DiscoveryResponse> stream, DiscoveryResponse response, CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        var write = Task.CompletedTask;
        try
        {
            write = stream.WriteAsync(response, cancellationToken);
            await write.WaitAsync(SlotHold, time, cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (TimeoutException)
        {
            // A slow reader: it gives its slot back and finishes its write outside the throttle.
        }
        finally
        {
            _slots.Release();
        }

        await write.ConfigureAwait(false);
    }

    public void Dispose() => _slots.Dispose();
}

/// <summary>The live connections, for status and diagnostics.</summary>
internal sealed class ConnectionTracker
{
    private readonly ConcurrentDictionary<WorkloadConnection, byte> _connections = new();

    public IReadOnlyCollection<WorkloadConnection> Connections => (IReadOnlyCollection<WorkloadConnection>)_connections.Keys;

    public void Add(WorkloadConnection connection) => _connections.TryAdd(connection, 0);

    public void Remove(WorkloadConnection connection) => _connections.TryRemove(connection, out _);
}
