using Microsoft.AspNetCore.Http;

namespace MeshKit.Security;

/// <summary>Sets the <see cref="MeshIdentity"/> feature of a request.</summary>
internal static class MeshIdentityFeature
{
    public static void Set(HttpContext context, VerifiedPeer? peer, RequestPrincipal? principal)
    {
        if (peer is null && principal is null)
        {
            return;
        }

        context.Features.Set(principal is null ? peer!.Identity : new MeshIdentity(peer, principal));
    }
}
