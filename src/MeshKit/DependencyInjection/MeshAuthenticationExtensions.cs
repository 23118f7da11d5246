using System.Text.Encodings.Web;
using MeshKit;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>The <c>Mesh</c> authentication scheme: the mesh's identities as the request's user.</summary>
public static class MeshAuthenticationExtensions
{
    /// <summary>The scheme name.</summary>
    public const string SchemeName = "Mesh";

    /// <summary>
    /// Adds the <c>Mesh</c> scheme: a request whose peer or JWT the mesh verified is authenticated as
    /// <see cref="MeshIdentity.ToClaimsPrincipal"/>, so <c>[Authorize]</c> and authorization policies work on it.
    /// Challenges answer 401, forbids 403.
    /// </summary>
    /// <param name="builder">The authentication builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static AuthenticationBuilder AddMesh(this AuthenticationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddScheme<AuthenticationSchemeOptions, MeshAuthenticationHandler>(SchemeName, displayName: "MeshKit", configureOptions: null);
    }
}

/// <summary>Authenticates a request from the <see cref="MeshIdentity"/> the mesh middleware set.</summary>
internal sealed class MeshAuthenticationHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override Task<AuthenticateResult> HandleAuthenticateAsync() =>
        Task.FromResult(MeshIdentity.Get(Context) is { } identity
            ? AuthenticateResult.Success(new AuthenticationTicket(identity.ToClaimsPrincipal(Scheme.Name), Scheme.Name))
            : AuthenticateResult.NoResult());
}
