using System.Security.Claims;
using System.Text.Json;
using MeshKit.Security;
using Microsoft.AspNetCore.Http;

namespace MeshKit;

/// <summary>
/// The identities the mesh established for an inbound request: the peer workload's (from its verified mesh
/// certificate) and the request principal's (from a JWT a RequestAuthentication validated). Read it with
/// <see cref="Get(HttpContext)"/>, or through the <c>Mesh</c> authentication scheme as a <see cref="ClaimsPrincipal"/>
/// (<see cref="Microsoft.Extensions.DependencyInjection.MeshAuthenticationExtensions.AddMesh(Microsoft.AspNetCore.Authentication.AuthenticationBuilder)"/>).
/// The mesh removes any header a client could use to pretend to be either.
/// </summary>
public sealed class MeshIdentity
{
    /// <summary>The claim type of the peer's principal (<c>trust-domain/ns/namespace/sa/account</c>).</summary>
    public const string PeerPrincipalClaim = "meshkit/source.principal";

    /// <summary>The claim type of the peer's namespace.</summary>
    public const string PeerNamespaceClaim = "meshkit/source.namespace";

    /// <summary>The claim type of the request principal (<c>issuer/subject</c>).</summary>
    public const string RequestPrincipalClaim = "meshkit/request.principal";

    private readonly RequestPrincipal? _jwt;

    internal MeshIdentity(VerifiedPeer? peer, RequestPrincipal? jwt)
    {
        _jwt = jwt;
        PeerSpiffeId = peer?.SpiffeUri;
        PeerPrincipal = peer?.Principal;
        PeerNamespace = peer?.Id.Namespace;
        PeerServiceAccount = peer?.Id.ServiceAccount;
        RequestPrincipal = jwt?.Principal;
    }

    /// <summary>Gets the peer's SPIFFE ID, e.g. <c>spiffe://cluster.local/ns/default/sa/productpage</c>; null without mutual TLS.</summary>
    public string? PeerSpiffeId { get; }

    /// <summary>Gets the peer's principal as AuthorizationPolicy names it, e.g. <c>cluster.local/ns/default/sa/productpage</c>.</summary>
    public string? PeerPrincipal { get; }

    /// <summary>Gets the peer's namespace.</summary>
    public string? PeerNamespace { get; }

    /// <summary>Gets the peer's service account.</summary>
    public string? PeerServiceAccount { get; }

    /// <summary>Gets the request principal, <c>issuer/subject</c> of the validated JWT; null without one.</summary>
    public string? RequestPrincipal { get; }

    /// <summary>Gets the identity the mesh established for <paramref name="context"/>, if any.</summary>
    /// <param name="context">The request.</param>
    /// <returns>The identity, or null when the request has neither a verified peer nor a validated JWT.</returns>
    public static MeshIdentity? Get(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Features.Get<MeshIdentity>();
    }

    /// <summary>Builds a claims principal: the peer's identity, the request principal, and the JWT's claims.</summary>
    /// <param name="authenticationType">The authentication type of the identity.</param>
    /// <returns>The principal.</returns>
    public ClaimsPrincipal ToClaimsPrincipal(string authenticationType = "Mesh")
    {
        var claims = new List<Claim>();
        if (PeerPrincipal is not null)
        {
            claims.Add(new Claim(PeerPrincipalClaim, PeerPrincipal));
            claims.Add(new Claim(PeerNamespaceClaim, PeerNamespace!));
        }

        if (_jwt is not null)
        {
            claims.Add(new Claim(RequestPrincipalClaim, _jwt.Principal));
            foreach (var property in _jwt.Payload.EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Array)
                {
                    foreach (var item in property.Value.EnumerateArray())
                    {
                        claims.Add(new Claim(property.Name, item.ValueKind == JsonValueKind.String ? item.GetString()! : item.GetRawText(), null, _jwt.Issuer));
                    }
                }
                else
                {
                    claims.Add(new Claim(property.Name, property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText(), null, _jwt.Issuer));
                }
            }
        }

        var name = _jwt is not null ? "sub" : PeerPrincipalClaim;
        return new ClaimsPrincipal(new ClaimsIdentity(claims, authenticationType, name, ClaimTypes.Role));
    }
}
