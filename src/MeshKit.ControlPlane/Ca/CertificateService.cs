using Google.Protobuf;
using Grpc.Core;
using MeshKit.Protocol.V1;
using MeshKit.Security;

namespace MeshKit.ControlPlane.Ca;

/// <summary>
/// Signs workload certificates. The identity comes from the authenticated caller: its current certificate (a renewal)
/// or, for a first certificate, a join token or a Kubernetes service-account token. Served on the TLS port only, so a
/// token never crosses the wire in clear.
/// </summary>
internal sealed partial class CertificateService(CertificateAuthority ca, ILogger<CertificateService> logger) : MeshCertificates.MeshCertificatesBase
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
            var (fromToken, error) = await ca.ValidateBearerAsync(authorization["Bearer ".Length..].Trim()).ConfigureAwait(false);
            if (fromToken is { } id)
            {
                return id;
            }

            Log.Refused(logger, context.Peer, error!);
            throw new RpcException(new Status(StatusCode.Unauthenticated, error!));
        }

        throw new RpcException(new Status(StatusCode.Unauthenticated, "a join token or a Kubernetes service-account token (authorization: Bearer), or a current workload certificate, is required"));
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Refused a certificate request from {Peer}: {Error}", EventName = "SignRefused")]
        public static partial void Refused(ILogger logger, string peer, string error);
    }
}
