using Google.Protobuf;
using Grpc.Core;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Ca;

/// <summary>
/// Signs workload certificates. The identity comes from the authenticated caller: its current certificate (a renewal)
/// or, for a first certificate, a join token or a Kubernetes service-account token. Served on the TLS port only, so a
/// token never crosses the wire in clear.
/// </summary>
internal sealed partial class CertificateService(CertificateAuthority ca, ClusterKeys clusterKeys, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<CertificateService> logger)
    : MeshCertificates.MeshCertificatesBase
{
    public override async Task<SignResponse> Sign(SignRequest request, ServerCallContext context)
    {
        var http = context.GetHttpContext();
        if (!http.Request.IsHttps)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, "certificates are issued on the control plane's TLS port only"));
        }

        var id = await AuthenticateAsync(http, context).ConfigureAwait(false);
        System.Security.Cryptography.X509Certificates.PublicKey key;
        try
        {
            key = CertificateProfile.ReadSigningRequest(request.Csr.ToByteArray());
        }
        catch (ArgumentException ex)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
        }

        var ttl = request.TtlSeconds > 0 ? TimeSpan.FromSeconds(Math.Min(request.TtlSeconds, (ulong)TimeSpan.MaxValue.TotalSeconds / 2)) : (TimeSpan?)null;
        var response = new SignResponse { SpiffeId = id.ToString() };
        response.CertificateChain.AddRange(ca.Issue(key, id, ttl).Select(ByteString.CopyFrom));
        response.TrustRoots.AddRange(ca.Bundle.Roots.Select(r => ByteString.CopyFrom(r.RawData)));
        return response;
    }

    public override Task<TrustBundleResponse> GetTrustBundle(TrustBundleRequest request, ServerCallContext context)
    {
        var response = new TrustBundleResponse { TrustDomain = ca.TrustDomain, ControlPlaneIdentity = ca.Identity.ToString() };
        response.TrustRoots.AddRange(ca.Bundle.Roots.Select(r => ByteString.CopyFrom(r.RawData)));
        return Task.FromResult(response);
    }

    private async Task<SpiffeId> AuthenticateAsync(HttpContext http, ServerCallContext context)
    {
        if (http.Connection.ClientCertificate is { } certificate)
        {
            if (ca.TryVerifyWorkload(certificate, [], out var fromCertificate, out var error))
            {
                return fromCertificate!.Value;
            }

            Log.Refused(logger, context.Peer, error!);
            throw new RpcException(new Status(StatusCode.Unauthenticated, error!));
        }

        var authorization = http.Request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.Ordinal))
        {
            var (fromToken, error) = await ValidateBearerAsync(authorization["Bearer ".Length..].Trim(), context.CancellationToken).ConfigureAwait(false);
            if (fromToken is { } id)
            {
                return id;
            }

            Log.Refused(logger, context.Peer, error!);
            throw new RpcException(new Status(StatusCode.Unauthenticated, error!));
        }

        throw new RpcException(new Status(StatusCode.Unauthenticated, "a join token or a Kubernetes service-account token (authorization: Bearer), or a current workload certificate, is required"));
    }

    /// <summary>
    /// Validates a first certificate's bearer credential: a Kubernetes service-account token when it names the
    /// cluster issuer the control plane trusts (<see cref="ControlPlaneOptions.KubernetesTokenIssuer"/>), else a join
    /// token. Returns the identity it grants.
    /// </summary>
    private async Task<(SpiffeId? Id, string? Error)> ValidateBearerAsync(string token, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (settings.KubernetesTokenIssuer is not { Length: > 0 } issuer || ServiceAccountTokens.ReadIssuer(token) != issuer)
        {
            return await ca.ValidateJoinTokenAsync(token).ConfigureAwait(false);
        }

        var (jwks, error) = await clusterKeys.GetAsync(ServiceAccountTokens.ReadKeyId(token), cancellationToken).ConfigureAwait(false);
        return jwks is null
            ? (null, error)
            : await ServiceAccountTokens.ValidateAsync(token, jwks, issuer, [.. settings.KubernetesTokenAudiences], ca.TrustDomain, time.GetUtcNow()).ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Refused a certificate request from {Peer}: {Error}", EventName = "SignRefused")]
        public static partial void Refused(ILogger logger, string peer, string error);
    }
}
