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
internal sealed partial class CertificateService(CertificateAuthority ca, ClusterKeys clusterKeys, TokenReviewer reviewer, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<CertificateService> logger)
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
            return await ValidateBearerAsync(authorization["Bearer ".Length..].Trim(), context).ConfigureAwait(false);
        }

        throw new RpcException(new Status(StatusCode.Unauthenticated, "a join token or a Kubernetes service-account token (authorization: Bearer), or a current workload certificate, is required"));
    }

    /// <summary>
    /// Validates a first certificate's bearer credential: a join token when the control plane issued it; else a
    /// Kubernetes service-account token, verified offline when it names the cluster issuer the control plane trusts
    /// (<see cref="ControlPlaneOptions.KubernetesTokenIssuer"/>) and reviewed by the API server when the cluster is read
    /// (<see cref="TokenReviewer"/>); else it is taken as a join token (and refused as one). Returns the identity it grants.
    /// </summary>
    private async Task<SpiffeId> ValidateBearerAsync(string token, ServerCallContext context)
    {
        var settings = options.Value;
        var issuer = ServiceAccountTokens.ReadIssuer(token);
        var offline = settings.KubernetesTokenIssuer is { Length: > 0 } trusted && issuer == trusted;
        if (issuer is null or JoinTokens.Issuer || !offline && !(reviewer.Enabled && settings.KubernetesTokenIssuer.Length == 0))
        {
            return Granted(await ca.ValidateJoinTokenAsync(token).ConfigureAwait(false), context);
        }

        SpiffeId? verified = null;
        if (offline)
        {
            var (jwks, error) = await clusterKeys.GetAsync(ServiceAccountTokens.ReadKeyId(token), context.CancellationToken).ConfigureAwait(false);
            verified = Granted(jwks is null
                ? (null, error)
                : await ServiceAccountTokens.ValidateAsync(token, jwks, settings.KubernetesTokenIssuer, [.. settings.KubernetesTokenAudiences], ca.TrustDomain, time.GetUtcNow()).ConfigureAwait(false), context);
        }
        else if (!ServiceAccountTokens.ReadHasExpiry(token))
        {
            // Legacy secret tokens never expire: only bound, expiring tokens are taken, whoever vouches for them.
            Granted((null, "the service-account token has no expiry (a legacy secret token); only projected, expiring tokens are taken"), context);
        }

        if (!reviewer.Enabled)
        {
            return verified!.Value;
        }

        var (reviewed, refused, unavailable) = await reviewer.ReviewAsync(token, [.. settings.KubernetesTokenAudiences], ca.TrustDomain, context.CancellationToken).ConfigureAwait(false);
        if (unavailable)
        {
            // Fail closed, but as a condition the workload retries (at another control plane first).
            Log.Refused(logger, context.Peer, refused!);
            throw new RpcException(new Status(StatusCode.Unavailable, refused!));
        }

        var id = Granted((reviewed, refused), context);
        return verified is { } offlineId && offlineId != id
            ? Granted((null, $"the API server vouches for {id}, the token's signature for {offlineId}"), context)
            : id;
    }

    private SpiffeId Granted((SpiffeId? Id, string? Error) result, ServerCallContext context)
    {
        if (result.Id is { } id)
        {
            return id;
        }

        Log.Refused(logger, context.Peer, result.Error!);
        throw new RpcException(new Status(StatusCode.Unauthenticated, result.Error!));
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Refused a certificate request from {Peer}: {Error}", EventName = "SignRefused")]
        public static partial void Refused(ILogger logger, string peer, string error);
    }
}
