using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MeshKit.Protocol.V1;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MeshKit.Security;

/// <summary>
/// Gets this workload its mesh certificate and keeps it fresh. The key pair is made in-process and never leaves it;
/// the control plane sees a CSR. The first certificate is paid for with the join token, after the control plane has
/// shown the root the token pins (or, on Kubernetes, with the pod's service-account token, after it has shown one of
/// the roots the workload was given); each renewal (at half the lifetime, with jitter) is authenticated by the current
/// certificate. A failed renewal keeps the current certificate and retries with backoff; once it expires, handshakes
/// fail (there is no fallback to plain text) and the certificate no longer authenticates a renewal, so the next attempt
/// pays with the bootstrap credential again (the join token, or the service-account token the kubelet keeps fresh): a
/// control-plane outage longer than a certificate's remaining life heals when the control plane returns.
/// </summary>
internal sealed partial class CertificateManager : IHostedService, IDisposable
{
    private static readonly TimeSpan MinRetry = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(30);
    private readonly MeshOptions _options;
    private readonly Sync.ControlPlaneEndpoints _endpoints;
    private readonly WorkloadIdentity _identity;
    private readonly TimeProvider _time;
    private readonly ILogger<CertificateManager> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;

    public CertificateManager(IOptions<MeshOptions> options, WorkloadIdentity identity, TimeProvider time, ILogger<CertificateManager> logger, Sync.ControlPlaneEndpoints? endpoints = null)
    {
        _options = options.Value;
        _endpoints = endpoints ?? new Sync.ControlPlaneEndpoints(options);
        _identity = identity;
        _time = time;
        _logger = logger;
    }

    /// <summary>Raised after a certificate is installed (first or renewed); for tests and diagnostics.</summary>
    public event Action<IssuedCertificate>? Installed;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!_identity.Enabled)
        {
            return;
        }

        _loop = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);

        // Start waits for the first certificate (bounded), so the app does not serve before it can do TLS; past the
        // bound it starts anyway, and handshakes fail closed until the certificate arrives.
        try
        {
            await _identity.FirstIssued.WaitAsync(_options.InitialFetchTimeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Log.NoCertificateYet(_logger, _options.InitialFetchTimeout);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose() => _stopping.Dispose();

    /// <summary>Renews at once (what the timer does at half the lifetime); for operations and tests.</summary>
    internal async Task RenewNowAsync(CancellationToken cancellationToken)
    {
        var issued = await ObtainAsync(cancellationToken).ConfigureAwait(false);
        _identity.Install(issued);
        Installed?.Invoke(issued);
    }

    /// <summary>
    /// When to renew a certificate just installed: half its remaining life, give or take 5 % of it, so replicas do not
    /// renew together. Counted from now, not from NotBefore: certificates are backdated a minute (for peers whose clock
    /// is behind), and a short lifetime counted from NotBefore would renew at once, again and again.
    /// </summary>
    internal static TimeSpan RenewalDelay(IssuedCertificate certificate, DateTimeOffset now, double jitter) =>
        RenewalDelay(certificate.NotBefore, certificate.NotAfter, now, jitter);

    /// <inheritdoc cref="RenewalDelay(IssuedCertificate, DateTimeOffset, double)"/>
    internal static TimeSpan RenewalDelay(DateTimeOffset notBefore, DateTimeOffset notAfter, DateTimeOffset now, double jitter)
    {
        var start = now > notBefore ? now : notBefore;
        var remaining = notAfter - start;
        if (remaining <= TimeSpan.Zero)
        {
            return TimeSpan.Zero;
        }

        return start - now + (remaining * (0.5 + ((jitter - 0.5) * 0.1)));
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        var outage = new Sync.ControlPlaneFailures(_time); // a control-plane restart is not a warning per attempt
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan delay;
            try
            {
                var issued = await ObtainAsync(cancellationToken).ConfigureAwait(false);
                _identity.Install(issued);
                Installed?.Invoke(issued);
                Log.Installed(_logger, issued.Id.ToString(), issued.NotAfter);
                failures = 0;
                outage.Answered();
                delay = RenewalDelay(issued, _time.GetUtcNow(), Random.Shared.NextDouble());
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is RpcException or HttpRequestException or IOException or InvalidOperationException or CryptographicException or MeshConfigException)
            {
                var ceiling = Math.Min(MaxRetry.TotalMilliseconds, MinRetry.TotalMilliseconds * Math.Pow(2, Math.Min(failures++, 10)));
                delay = TimeSpan.FromMilliseconds(Math.Max(100, Random.Shared.NextDouble() * ceiling));
                var (level, unreachable) = outage.Failed(ex);
                var what = _identity.Current switch
                {
                    null => "getting the first certificate",
                    { } expired when expired.NotAfter <= _time.GetUtcNow() => $"replacing the certificate that expired at {expired.NotAfter:u}",
                    _ => "renewing the certificate",
                };
                Log.Failed(_logger, level, what, (int)unreachable.TotalSeconds, Sync.ControlPlaneFailures.Describe(ex), delay);
            }

            try
            {
                await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<IssuedCertificate> ObtainAsync(CancellationToken cancellationToken)
    {
        // Every replica signs (they share the CA): a replica that is down costs one attempt, not a renewal.
        for (var tried = 1; ; tried++)
        {
            var address = _endpoints.Current!;
            try
            {
                return await ObtainFromAsync(address, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded && tried < _endpoints.All.Count)
            {
                _endpoints.Failed(address);
            }
        }
    }

    private async Task<IssuedCertificate> ObtainFromAsync(Uri address, CancellationToken cancellationToken)
    {
        var current = _identity.Current;
        if (current is not null && current.NotAfter <= _time.GetUtcNow())
        {
            // It no longer authenticates anything: the workload joins again with the credential it started with (a
            // secure workload always has one; Istio's agent sends the pod's token with every CSR for the same reason).
            current = null;
        }

        string? token = null;
        SpiffeId id;
        TrustBundle bundle;
        if (current is null && !string.IsNullOrWhiteSpace(_options.ServiceAccountTokenFile))
        {
            // Kubernetes' projected token, read afresh (the kubelet rotates it); sent only to a control plane that
            // shows one of the roots the workload was given.
            token = File.ReadAllText(_options.ServiceAccountTokenFile).Trim();
            var subject = ServiceAccountTokens.ReadSubject(token) ?? throw new MeshConfigException("the service-account token names no service account (subject system:serviceaccount:<namespace>:<name>)");
            if (subject.Namespace != _options.Namespace || subject.ServiceAccount != _options.ServiceAccount)
            {
                throw new MeshConfigException($"the service-account token is for namespace '{subject.Namespace}', service account '{subject.ServiceAccount}', but this workload is namespace '{_options.Namespace}', service account '{_options.ServiceAccount}'");
            }

            var roots = ReadRoots(_options.RootCertificateFile!);
            bundle = await FetchPinnedBundleAsync(address, r => roots.Contains(CertificateProfile.Pin(r)), $"none of the roots in {_options.RootCertificateFile}", cancellationToken).ConfigureAwait(false);
            id = new SpiffeId(bundle.TrustDomain, subject.Namespace, subject.ServiceAccount);
        }
        else if (current is null)
        {
            token = ReadToken();
            id = JoinTokens.ReadSubject(token) ?? throw new MeshConfigException("the join token names no valid identity");
            if (id.Namespace != _options.Namespace || id.ServiceAccount != _options.ServiceAccount)
            {
                throw new MeshConfigException($"the join token is for {id}, but this workload is namespace '{_options.Namespace}', service account '{_options.ServiceAccount}'");
            }

            var pin = JoinTokens.ReadRootPin(token) ?? throw new MeshConfigException("the join token carries no root pin");
            bundle = await FetchPinnedBundleAsync(address, r => CertificateProfile.Pin(r) == pin, "the root CA the join token pins", cancellationToken).ConfigureAwait(false);
        }
        else
        {
            id = current.Id;
            bundle = current.Bundle;
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var channel = ControlPlaneChannel(address, bundle, current, _time);
        var client = new MeshCertificates.MeshCertificatesClient(channel);
        var headers = new Metadata();
        if (token is not null)
        {
            headers.Add("authorization", "Bearer " + token);
        }

        var response = await client.SignAsync(
            new SignRequest
            {
                Csr = ByteString.CopyFrom(CertificateProfile.CreateSigningRequest(key, id)),
                TtlSeconds = (ulong)(_options.CertificateLifetime?.TotalSeconds ?? 0),
            },
            headers,
            cancellationToken: cancellationToken).ConfigureAwait(false);

        if (response.CertificateChain.Count == 0)
        {
            throw new InvalidOperationException("the control plane returned no certificate");
        }

        using var issued = X509CertificateLoader.LoadCertificate(response.CertificateChain[0].Span);
        var certificate = CertificateProfile.WithKey(issued, key);
        var intermediates = new X509Certificate2Collection();
        foreach (var der in response.CertificateChain.Skip(1))
        {
            intermediates.Add(X509CertificateLoader.LoadCertificate(der.Span));
        }

        var newBundle = response.TrustRoots.Count > 0 ? TrustBundle.FromDer(bundle.TrustDomain, response.TrustRoots.Select(r => r.ToByteArray())) : bundle;

        // Never install what would not verify: the identity asked for, chained to the (new) bundle.
        if (!PeerVerifier.TryVerify(certificate, intermediates, newBundle, _time.GetUtcNow(), CertificateProfile.ClientAuth, out var got, out var error) || got != id)
        {
            certificate.Dispose();
            throw new InvalidOperationException($"the issued certificate does not verify as {id}: {error ?? $"it is {got}"}");
        }

        return new IssuedCertificate(certificate, intermediates, newBundle, id);
    }

    /// <summary>
    /// Fetches the roots over an unverified connection and keeps those the workload trusts (the join token's pin, or the
    /// roots it was given), failing when there are none; nothing secret is sent on that connection.
    /// </summary>
    private async Task<TrustBundle> FetchPinnedBundleAsync(Uri address, Func<X509Certificate2, bool> pinned, string expected, CancellationToken cancellationToken)
    {
        using var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5) };
        handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        using var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var response = await new MeshCertificates.MeshCertificatesClient(channel).GetTrustBundleAsync(new TrustBundleRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);
        var bundle = TrustBundle.FromDer(response.TrustDomain, response.TrustRoots.Select(r => r.ToByteArray()));
        if (!bundle.Roots.Any(pinned))
        {
            throw new InvalidOperationException($"the control plane at {address} does not hold {expected}; refusing to send the token");
        }

        // Only the trusted roots vouch for the server the token goes to: an impostor could list the mesh's root (it is
        // public) beside its own and present a certificate of its own root. The mesh's whole bundle comes with the
        // certificate, from the server so verified.
        return new TrustBundle(bundle.TrustDomain, bundle.Roots.Where(pinned));
    }

    /// <summary>
    /// A channel to the control plane's TLS port: the server must chain to <paramref name="bundle"/> and be the control
    /// plane's identity; the workload presents <paramref name="current"/> when it has one.
    /// </summary>
    internal static GrpcChannel ControlPlaneChannel(Uri address, TrustBundle bundle, IssuedCertificate? current, TimeProvider time, Action<SocketsHttpHandler>? configure = null)
    {
        var expected = SpiffeId.ControlPlane(bundle.TrustDomain);
        var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5) };
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
            certificate is not null
            && PeerVerifier.TryVerify(
                CertificateProfile.AsCertificate2(certificate),
                chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>() ?? [],
                bundle,
                time.GetUtcNow(),
                CertificateProfile.ServerAuth,
                out var id,
                out _)
            && id == expected;
        if (current is not null)
        {
            handler.SslOptions.ClientCertificateContext = current.Context;
        }

        configure?.Invoke(handler);

        // The channel owns its handler: without DisposeHttpClient, disposing a channel given a handler leaves the
        // handler's connection open (the control plane then holds it until its idle timeout).
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    // The pins of the roots in a PEM file (one or more certificates).
    private static HashSet<string> ReadRoots(string file)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(file);
        if (roots.Count == 0)
        {
            throw new MeshConfigException($"Mesh:RootCertificateFile '{file}' holds no certificate");
        }

        var pins = roots.Select(CertificateProfile.Pin).ToHashSet(StringComparer.Ordinal);
        foreach (var root in roots)
        {
            root.Dispose();
        }

        return pins;
    }

    private string ReadToken()
    {
        var token = !string.IsNullOrWhiteSpace(_options.JoinToken) ? _options.JoinToken : File.ReadAllText(_options.JoinTokenFile!);
        return token.Trim();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Installed mesh certificate {Identity}, valid until {NotAfter:u}", EventName = "CertificateInstalled")]
        public static partial void Installed(ILogger logger, string identity, DateTimeOffset notAfter);

        // Debug while a control-plane outage is young, Warning once it lasts or when retrying will not cure it (ControlPlaneFailures).
        [LoggerMessage(EventId = 2, Message = "Failed {What} (failing for {Seconds} s): {Error}; retrying in {Delay}", EventName = "CertificateFailed")]
        public static partial void Failed(ILogger logger, LogLevel level, string what, int seconds, string error, TimeSpan delay);

        [LoggerMessage(3, LogLevel.Warning, "No mesh certificate after {Timeout}; starting anyway: TLS handshakes fail until it arrives", EventName = "NoCertificateYet")]
        public static partial void NoCertificateYet(ILogger logger, TimeSpan timeout);
    }
}
