using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshKit.Protocol.V1;

namespace MeshKit.Http;

/// <summary>
/// DestinationRule <c>tls.mode: SIMPLE</c> or <c>MUTUAL</c>: the caller's plain-text request leaves over TLS. The server
/// must chain to <c>caCertificates</c> (or the system's roots) and carry one of <c>subjectAltNames</c> (or match the
/// server name), and pass <c>caCrl</c>'s revocation lists when given; MUTUAL presents
/// <c>clientCertificate</c>/<c>privateKey</c>. The files are read when the rule is
/// applied: a missing or bad file rejects the config version (the previous one stays), it never means plain text.
/// </summary>
internal sealed class TlsOriginator
{
    private readonly TlsOrigination _settings;
    private readonly X509Certificate2Collection? _roots;
    private readonly X509Certificate2? _client;
    private readonly RevocationLists? _crl;
    private readonly TimeProvider _time;

    public TlsOriginator(TlsOrigination settings, TimeProvider? time = null)
    {
        _settings = settings;
        _time = time ?? TimeProvider.System;
        try
        {
            if (settings.CaCrl.Length > 0)
            {
                _crl = RevocationLists.Load(settings.CaCrl);
            }

            if (settings.CaCertificates.Length > 0)
            {
                _roots = [];
                _roots.ImportFromPemFile(settings.CaCertificates);
                if (_roots.Count == 0)
                {
                    throw new MeshConfigException($"DestinationRule tls.caCertificates '{settings.CaCertificates}' holds no certificate");
                }
            }

            if (settings.Mode == "MUTUAL")
            {
                _client = X509Certificate2.CreateFromPemFile(settings.ClientCertificate, settings.PrivateKey);
            }
        }
        catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
        {
            throw new MeshConfigException($"DestinationRule tls ({settings.Mode}): cannot read the certificate files: {ex.Message}");
        }
    }

    public async ValueTask<Stream> ConnectAsync(Stream network, SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var request = context.InitialRequestMessage;
        var serverName = _settings.Sni.Length > 0 ? _settings.Sni : request.Headers.Host is { } host ? StripPort(host) : context.DnsEndPoint.Host;
        var ssl = new SslStream(network, leaveInnerStreamOpen: false);
        try
        {
            var options = new SslClientAuthenticationOptions
            {
                TargetHost = serverName,
                ApplicationProtocols = [ClusterTransports.Transport.AlpnFor(request)],
                RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Verify(certificate, chain, errors, serverName),
            };
            if (_client is not null)
            {
                options.ClientCertificates = [_client];
            }

            await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            return ssl;
        }
        catch (AuthenticationException ex)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw new HttpRequestException(HttpRequestError.SecureConnectionError, $"TLS to {serverName} ({context.DnsEndPoint.Host}:{context.DnsEndPoint.Port}) failed: {ex.Message}", ex);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private bool Verify(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, string serverName)
    {
        if (_settings.InsecureSkipVerify)
        {
            return true;
        }

        if (certificate is null)
        {
            return false;
        }

        var leaf = Security.CertificateProfile.AsCertificate2(certificate);
        if (_roots is not null)
        {
            using var custom = new X509Chain();
            custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            custom.ChainPolicy.CustomTrustStore.AddRange(_roots);
            custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            foreach (var extra in chain?.ChainPolicy.ExtraStore.Cast<X509Certificate2>() ?? [])
            {
                custom.ChainPolicy.ExtraStore.Add(extra);
            }

            if (!custom.Build(leaf) || (_crl is not null && _crl.Check(custom.ChainElements, _time.GetUtcNow()) is not null))
            {
                return false;
            }
        }
        else if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0 || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0
            || (_crl is not null && (chain is null || _crl.Check(chain.ChainElements, _time.GetUtcNow()) is not null)))
        {
            return false;
        }

        if (_settings.SubjectAltNames.Count > 0)
        {
            var names = Security.CertificateProfile.UriNames(leaf).Concat(DnsNames(leaf));
            return names.Any(n => _settings.SubjectAltNames.Contains(n, StringComparer.OrdinalIgnoreCase));
        }

        return leaf.MatchesHostname(serverName);
    }

    private static IEnumerable<string> DnsNames(X509Certificate2 certificate) =>
        certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>().SelectMany(e => e.EnumerateDnsNames());

    private static string StripPort(string host)
    {
        var colon = host.LastIndexOf(':');
        return colon > 0 && host[0] != '[' ? host[..colon] : host;
    }
}
