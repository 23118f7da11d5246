using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MeshKit.Security;

/// <summary>
/// Kestrel's side of mutual TLS. Every endpoint of a secure workload gets a connection middleware that looks at the
/// first byte: a TLS ClientHello goes through a TLS handshake with the workload certificate, the client's certificate
/// asked for and verified against the mesh trust bundle and SPIFFE rules; plain text is served only where the port's
/// PeerAuthentication mode is not STRICT. So PERMISSIVE serves both on one port, as Istio's sidecar does, and STRICT
/// refuses plain text and certificate-less TLS. A certificate that is sent must verify, in every mode. Where load
/// balancers send PROXY protocol headers (<see cref="MeshOptions.ProxyProtocolFrom"/>), their reader comes first.
/// </summary>
internal sealed partial class InboundTlsSetup(
    WorkloadIdentity identity,
    IServiceProvider services,
    ILogger<InboundTlsSetup> logger,
    IOptions<MeshOptions> meshOptions,
    ILoggerFactory loggers,
    TimeProvider time) : IConfigureOptions<KestrelServerOptions>
{
    // Resolved on the first connection: Kestrel's options are built with the host, before mesh options are validated.
    private MeshSnapshotProvider? _provider;

    private static readonly TimeSpan FirstByteTimeout = TimeSpan.FromSeconds(10);

    public void Configure(KestrelServerOptions options)
    {
        bool secure;
        ProxyProtocolReader? proxyProtocol;
        try
        {
            secure = identity.Enabled;
            proxyProtocol = ProxyProtocolOf(meshOptions.Value);
        }
        catch (OptionsValidationException)
        {
            // Invalid mesh options: the host's start fails with every problem listed (ValidateOnStart).
            return;
        }

        if (!secure && proxyProtocol is null)
        {
            return;
        }

        // Mesh callers send plain-text URLs over mutual TLS, so HTTP/2 requests say ":scheme: http" on a TLS
        // connection; the mesh middleware then sets the scheme from the connection, whatever the client claimed.
        options.AllowAlternateSchemes |= secure;
        options.ConfigureEndpointDefaults(listen =>
        {
            // A load balancer's PROXY header comes first on the connection, before the TLS handshake it carries.
            if (proxyProtocol is not null)
            {
                listen.Use(next => context => proxyProtocol.ReadAsync(context, next));
            }

            if (secure)
            {
                Attach(listen);
            }
        });
    }

    private ProxyProtocolReader? ProxyProtocolOf(MeshOptions options)
    {
        var trusted = new List<IPNetwork>();
        foreach (var entry in options.ProxyProtocolFrom)
        {
            if (Addresses.TryParseNetwork(entry ?? string.Empty, out var network))
            {
                trusted.Add(network);
            }
        }

        // An entry that does not parse fails the host's start (MeshOptionsValidator); none is read meanwhile.
        return trusted.Count == 0 || trusted.Count != options.ProxyProtocolFrom.Count ? null : new ProxyProtocolReader(trusted, loggers.CreateLogger<ProxyProtocolReader>(), time);
    }

    /// <summary>The effective mode on a local port.</summary>
    internal MtlsMode ModeOn(EndPoint? local)
    {
        _provider ??= services.GetRequiredService<MeshSnapshotProvider>();
        return ModeOn(_provider.Current.PeerAuthentication, (local as IPEndPoint)?.Port ?? 0);
    }

    /// <summary>The mode of <paramref name="policy"/> on a port: its port-level mode, else its own.</summary>
    internal static MtlsMode ModeOn(PeerAuthenticationPolicy policy, int port) =>
        policy.PortModes.TryGetValue((uint)port, out var mode) ? mode : policy.Mode;

    private void Attach(ListenOptions listen)
    {
        // The plain-text branch skips the TLS middleware: it is the delegate after it, captured when the pipeline is
        // built (from the inside out, so before the sniffer's factory runs).
        ConnectionDelegate? afterTls = null;
        var protocols = listen.Protocols switch
        {
            HttpProtocols.Http1 => new List<SslApplicationProtocol> { SslApplicationProtocol.Http11 },
            HttpProtocols.Http2 => [SslApplicationProtocol.Http2],
            _ => [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
        };
        listen.Use(tls => context => SniffAsync(context, tls, afterTls!));
        listen.UseHttps(new TlsHandshakeCallbackOptions { OnConnection = tls => OnConnection(tls, protocols) });
        listen.Use(next =>
        {
            afterTls = next;
            return next;
        });
    }

    private async Task SniffAsync(ConnectionContext context, ConnectionDelegate tls, ConnectionDelegate plain)
    {
        // Seen, no identity proved yet: a verified certificate replaces it; requests tell such a connection from one
        // that never came through here.
        context.Items[MeshPeer.ItemKey] = MeshPeer.Unverified;
        bool isTls;
        using (var timeout = ConnectionDeadline.Start(context, FirstByteTimeout, time))
        {
            System.IO.Pipelines.ReadResult result;
            try
            {
                result = await context.Transport.Input.ReadAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var buffer = result.Buffer;
            if (buffer.IsEmpty)
            {
                context.Transport.Input.AdvanceTo(buffer.Start);
                return;
            }

            // A TLS record of type handshake (a ClientHello) starts with 0x16; HTTP starts with a method or the
            // HTTP/2 preface, both printable.
            isTls = buffer.FirstSpan[0] == 0x16;
            context.Transport.Input.AdvanceTo(buffer.Start); // nothing consumed: the next reader sees every byte
        }

        if (isTls)
        {
            await tls(context).ConfigureAwait(false);
            return;
        }

        if (ModeOn(context.LocalEndPoint) == MtlsMode.Strict)
        {
            Log.PlaintextRefused(logger, context.RemoteEndPoint?.ToString() ?? "?", context.LocalEndPoint?.ToString() ?? "?");
            context.Abort(new ConnectionAbortedException("STRICT mutual TLS: plain text refused"));
            return;
        }

        await plain(context).ConfigureAwait(false);
    }

    private ValueTask<SslServerAuthenticationOptions> OnConnection(TlsHandshakeCallbackContext tls, List<SslApplicationProtocol> protocols)
    {
        // No certificate yet (or any more): the handshake fails, nothing falls back to plain text.
        var current = identity.Current ?? throw new AuthenticationException("this workload has no mesh certificate yet");
        var connection = tls.Connection;
        var mode = ModeOn(connection.LocalEndPoint);
        return ValueTask.FromResult(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = current.Context,
            ApplicationProtocols = protocols,
            ClientCertificateRequired = true,
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            {
                if (certificate is null)
                {
                    // TLS without a client certificate proves no identity: as plain text, refused under STRICT.
                    return mode != MtlsMode.Strict;
                }

                if (!identity.TryVerify(certificate, chain, CertificateProfile.ClientAuth, out var id, out var error))
                {
                    Log.PeerRefused(logger, connection.RemoteEndPoint?.ToString() ?? "?", error!);
                    return false;
                }

                var client = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                connection.Items[MeshPeer.ItemKey] = new VerifiedPeer(id!.Value, VerifiedPeer.ForwardedClientCertOf(current.IdText, client, id.Value.ToString()));
                return true;
            },
        });
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Refused a plain-text connection from {Remote} to {Local}: the port's mutual TLS mode is STRICT", EventName = "PlaintextRefused")]
        public static partial void PlaintextRefused(ILogger logger, string remote, string local);

        [LoggerMessage(2, LogLevel.Warning, "Refused the certificate of {Remote}: {Error}", EventName = "PeerCertificateRefused")]
        public static partial void PeerRefused(ILogger logger, string remote, string error);
    }
}
