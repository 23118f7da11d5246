using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Security;

/// <summary>Where the verified identity of the peer of a connection is kept.</summary>
internal static class MeshPeer
{
    /// <summary>The connection item holding the peer's <see cref="SpiffeId"/>.</summary>
    public const string ItemKey = "meshkit.peer";

    /// <summary>The verified identity of the request's peer, or null (plain text, or TLS without a certificate).</summary>
    public static SpiffeId? Of(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(ItemKey, out var value) == true && value is SpiffeId id ? id : null;
}
