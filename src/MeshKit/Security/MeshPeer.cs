using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Security;

/// <summary>Where the verified identity of the peer of a connection is kept.</summary>
internal static class MeshPeer
{
    /// <summary>The connection item holding the peer's <see cref="SpiffeId"/>.</summary>
    public const string ItemKey = "meshkit.peer";

    /// <summary>
    /// What MeshKit's connection middleware leaves on a connection it saw whose peer proved no identity (plain text, or
    /// TLS without a certificate): a connection without any item did not go through it.
    /// </summary>
    public static readonly object Unverified = new();

    /// <summary>The verified identity of the request's peer, or null (plain text, or TLS without a certificate).</summary>
    public static VerifiedPeer? Of(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(ItemKey, out var value) == true ? value as VerifiedPeer : null;

    /// <summary>
    /// Returns the request's verified peer (null when none) as <see cref="Of"/> does; false when the connection did not
    /// go through MeshKit's connection middleware at all (its Kestrel endpoint defaults were replaced).
    /// </summary>
    public static bool TryOf(HttpContext context, out VerifiedPeer? peer)
    {
        if (context.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(ItemKey, out var value) == true)
        {
            peer = value as VerifiedPeer;
            return true;
        }

        peer = null;
        return false;
    }
}

/// <summary>
/// A connection's verified peer, with the texts requests need computed once per connection rather than per request:
/// its principal, its SPIFFE ID, and the <see cref="MeshIdentity"/> of requests that carry no JWT.
/// </summary>
/// <param name="id">The identity its certificate proves.</param>
/// <param name="forwardedClientCert">The <c>x-forwarded-client-cert</c> element the application is told (<see cref="ForwardedClientCert"/>).</param>
internal sealed class VerifiedPeer(SpiffeId id, string? forwardedClientCert = null)
{
    private MeshIdentity? _identity;

    /// <summary>
    /// Gets the connection's <c>x-forwarded-client-cert</c> value, as an Istio sidecar sets it for the application it
    /// fronts (Envoy's <c>SetCurrentClientCertDetails</c> with Subject, URI and DNS): <c>By=</c> this workload's SPIFFE
    /// ID, <c>Hash=</c> the SHA-256 of the caller's certificate, <c>Subject=</c>, <c>URI=</c> the caller's SPIFFE ID, and a
    /// <c>DNS=</c> per DNS name it holds. Made once per connection.
    /// </summary>
    public string? ForwardedClientCert { get; } = forwardedClientCert;

    /// <summary>Builds the <c>x-forwarded-client-cert</c> element of a caller's certificate, Envoy's format.</summary>
    public static string ForwardedClientCertOf(string by, System.Security.Cryptography.X509Certificates.X509Certificate2 client, string uri)
    {
        var text = new System.Text.StringBuilder(256)
            .Append("By=").Append(by)
            .Append(";Hash=").Append(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(client.RawData)))
            .Append(";Subject=\"").Append(client.Subject.Replace("\"", "\\\"", StringComparison.Ordinal)).Append('"')
            .Append(";URI=").Append(uri);
        foreach (var extension in client.Extensions)
        {
            if (extension is System.Security.Cryptography.X509Certificates.X509SubjectAlternativeNameExtension names)
            {
                foreach (var dns in names.EnumerateDnsNames())
                {
                    text.Append(";DNS=").Append(dns);
                }
            }
        }

        return text.ToString();
    }

    public SpiffeId Id { get; } = id;

    /// <summary>Gets the principal, <c>cluster.local/ns/default/sa/productpage</c> (one string per identity, shared by its connections: a metric label).</summary>
    public string Principal { get; } = Shared(id.Principal);

    public string Namespace => Id.Namespace;

    /// <summary>Gets <c>namespace/name</c> of the peer's service account (Istio's <c>serviceAccounts</c>), made once per connection.</summary>
    public string ServiceAccount { get; } = $"{id.Namespace}/{id.ServiceAccount}";

    /// <summary>Gets the SPIFFE ID as text (shared like <see cref="Principal"/>: Istio's <c>source_principal</c> label).</summary>
    public string SpiffeUri { get; } = Shared(id.ToString());

    private static string Shared(string text) => Telemetry.SharedLabels<string>.TryGet(text, out var shared) ? shared : Telemetry.SharedLabels<string>.Share(text, text);

    /// <summary>Gets the identity of a request from this peer without a JWT (immutable, so shared by its requests).</summary>
    public MeshIdentity Identity => _identity ??= new MeshIdentity(this, null);

    /// <summary>The peer metadata this connection's caller sent last, parsed (the same text on each of its requests).</summary>
    internal Telemetry.PeerMetadata.Memo? ToldMetadata;

    public override string ToString() => SpiffeUri;
}
