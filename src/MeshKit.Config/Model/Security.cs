namespace MeshKit.Config.Model;

/// <summary><c>security.istio.io</c> PeerAuthentication.</summary>
public sealed record PeerAuthentication : ConfigResource
{
    /// <summary>Gets <c>spec.selector</c>; <see langword="null"/> applies to the whole namespace.</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets <c>spec.mtls.mode</c>: UNSET, DISABLE, PERMISSIVE or STRICT.</summary>
    public string? MtlsMode { get; init; }

    /// <summary>Gets <c>spec.portLevelMtls</c>: port → mode.</summary>
    public IReadOnlyDictionary<uint, string> PortLevelMtls { get; init; } = new Dictionary<uint, string>();
}

/// <summary><c>security.istio.io</c> RequestAuthentication.</summary>
public sealed record RequestAuthentication : ConfigResource
{
    /// <summary>Gets <c>spec.selector</c>.</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets <c>spec.jwtRules</c>.</summary>
    public IReadOnlyList<JwtRule> JwtRules { get; init; } = [];
}

/// <summary>One entry of <c>jwtRules</c>.</summary>
public sealed record JwtRule
{
    /// <summary>Gets <c>issuer</c>.</summary>
    public string Issuer { get; init; } = string.Empty;

    /// <summary>Gets <c>audiences</c>.</summary>
    public IReadOnlyList<string> Audiences { get; init; } = [];

    /// <summary>Gets <c>jwksUri</c>.</summary>
    public string? JwksUri { get; init; }

    /// <summary>Gets <c>jwks</c> (inline JSON Web Key Set).</summary>
    public string? Jwks { get; init; }

    /// <summary>Gets <c>fromHeaders</c>.</summary>
    public IReadOnlyList<JwtHeader> FromHeaders { get; init; } = [];

    /// <summary>Gets <c>fromParams</c>.</summary>
    public IReadOnlyList<string> FromParams { get; init; } = [];

    /// <summary>Gets <c>fromCookies</c>: cookies the token may be in.</summary>
    public IReadOnlyList<string> FromCookies { get; init; } = [];

    /// <summary>Gets <c>timeout</c>: how long the control plane waits for the <c>jwksUri</c>'s keys.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Gets <c>outputPayloadToHeader</c>.</summary>
    public string? OutputPayloadToHeader { get; init; }

    /// <summary>Gets <c>forwardOriginalToken</c>.</summary>
    public bool ForwardOriginalToken { get; init; }

    /// <summary>Gets <c>outputClaimToHeaders</c>.</summary>
    public IReadOnlyList<ClaimToHeader> OutputClaimToHeaders { get; init; } = [];
}

/// <summary>An entry of <c>fromHeaders</c>.</summary>
/// <param name="Name">Gets <c>name</c>.</param>
/// <param name="Prefix">Gets <c>prefix</c>.</param>
public sealed record JwtHeader(string Name, string? Prefix);

/// <summary>An entry of <c>outputClaimToHeaders</c>.</summary>
/// <param name="Header">Gets <c>header</c>.</param>
/// <param name="Claim">Gets <c>claim</c>.</param>
public sealed record ClaimToHeader(string Header, string Claim);

/// <summary><c>security.istio.io</c> AuthorizationPolicy.</summary>
public sealed record AuthorizationPolicy : ConfigResource
{
    /// <summary>Gets <c>spec.selector</c>.</summary>
    public WorkloadSelector? Selector { get; init; }

    /// <summary>Gets <c>spec.action</c>: ALLOW (default), DENY, AUDIT or CUSTOM.</summary>
    public string Action { get; init; } = "ALLOW";

    /// <summary>Gets <c>spec.provider.name</c>: the extension provider a CUSTOM policy asks.</summary>
    public string? Provider { get; init; }

    /// <summary>Gets <c>spec.rules</c>. <see langword="null"/> when absent (which, for ALLOW, matches nothing).</summary>
    public IReadOnlyList<AuthorizationRule>? Rules { get; init; }
}

/// <summary>One entry of <c>rules</c>: all of from, to and when must match.</summary>
/// <param name="From">Gets <c>from[].source</c>.</param>
/// <param name="To">Gets <c>to[].operation</c>.</param>
/// <param name="When">Gets <c>when</c>.</param>
public sealed record AuthorizationRule(
    IReadOnlyList<AuthorizationSource> From,
    IReadOnlyList<AuthorizationOperation> To,
    IReadOnlyList<AuthorizationCondition> When);

/// <summary>A <c>source</c> block.</summary>
public sealed record AuthorizationSource
{
    /// <summary>Gets <c>principals</c>.</summary>
    public IReadOnlyList<string> Principals { get; init; } = [];

    /// <summary>Gets <c>notPrincipals</c>.</summary>
    public IReadOnlyList<string> NotPrincipals { get; init; } = [];

    /// <summary>Gets <c>serviceAccounts</c>: <c>namespace/name</c> of the peer's service account, whatever its trust domain.</summary>
    public IReadOnlyList<string> ServiceAccounts { get; init; } = [];

    /// <summary>Gets <c>notServiceAccounts</c>.</summary>
    public IReadOnlyList<string> NotServiceAccounts { get; init; } = [];

    /// <summary>Gets <c>requestPrincipals</c>.</summary>
    public IReadOnlyList<string> RequestPrincipals { get; init; } = [];

    /// <summary>Gets <c>notRequestPrincipals</c>.</summary>
    public IReadOnlyList<string> NotRequestPrincipals { get; init; } = [];

    /// <summary>Gets <c>namespaces</c>.</summary>
    public IReadOnlyList<string> Namespaces { get; init; } = [];

    /// <summary>Gets <c>notNamespaces</c>.</summary>
    public IReadOnlyList<string> NotNamespaces { get; init; } = [];

    /// <summary>Gets <c>ipBlocks</c>.</summary>
    public IReadOnlyList<string> IpBlocks { get; init; } = [];

    /// <summary>Gets <c>notIpBlocks</c>.</summary>
    public IReadOnlyList<string> NotIpBlocks { get; init; } = [];

    /// <summary>Gets <c>remoteIpBlocks</c>.</summary>
    public IReadOnlyList<string> RemoteIpBlocks { get; init; } = [];

    /// <summary>Gets <c>notRemoteIpBlocks</c>.</summary>
    public IReadOnlyList<string> NotRemoteIpBlocks { get; init; } = [];
}

/// <summary>An <c>operation</c> block.</summary>
public sealed record AuthorizationOperation
{
    /// <summary>Gets <c>hosts</c>.</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>Gets <c>notHosts</c>.</summary>
    public IReadOnlyList<string> NotHosts { get; init; } = [];

    /// <summary>Gets <c>ports</c>.</summary>
    public IReadOnlyList<string> Ports { get; init; } = [];

    /// <summary>Gets <c>notPorts</c>.</summary>
    public IReadOnlyList<string> NotPorts { get; init; } = [];

    /// <summary>Gets <c>methods</c>.</summary>
    public IReadOnlyList<string> Methods { get; init; } = [];

    /// <summary>Gets <c>notMethods</c>.</summary>
    public IReadOnlyList<string> NotMethods { get; init; } = [];

    /// <summary>Gets <c>paths</c>.</summary>
    public IReadOnlyList<string> Paths { get; init; } = [];

    /// <summary>Gets <c>notPaths</c>.</summary>
    public IReadOnlyList<string> NotPaths { get; init; } = [];
}

/// <summary>A <c>when</c> condition.</summary>
/// <param name="Key">Gets <c>key</c>, e.g. <c>request.headers[version]</c>.</param>
/// <param name="Values">Gets <c>values</c>.</param>
/// <param name="NotValues">Gets <c>notValues</c>.</param>
public sealed record AuthorizationCondition(string Key, IReadOnlyList<string> Values, IReadOnlyList<string> NotValues);
