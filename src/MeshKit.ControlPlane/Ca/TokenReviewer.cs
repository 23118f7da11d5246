using System.Text.Json;
using System.Text.Json.Nodes;
using MeshKit.ControlPlane.Sources;
using MeshKit.Security;
using Microsoft.Extensions.Options;

namespace MeshKit.ControlPlane.Ca;

/// <summary>
/// Asks the Kubernetes API server whether a service-account token is good (a <c>TokenReview</c>), as istiod does for
/// each first certificate: the server checks what an offline check cannot, that the pod and service account the token
/// is bound to still exist. Used when the control plane reads the cluster (<see cref="ControlPlaneOptions.KubernetesApiServer"/>)
/// and <see cref="ControlPlaneOptions.KubernetesTokenReview"/> is on.
/// </summary>
internal sealed class TokenReviewer : IDisposable
{
    private const string ServiceAccountsGroup = "system:serviceaccounts";
    private const string ReviewsPath = "apis/authentication.k8s.io/v1/tokenreviews";

    private readonly ControlPlaneOptions _options;
    private readonly Lazy<HttpClient> _http;

    public TokenReviewer(IOptions<ControlPlaneOptions> options)
    {
        _options = options.Value;
        _http = new Lazy<HttpClient>(() => new HttpClient(KubernetesApi.CreateHandler(_options)) { Timeout = TimeSpan.FromSeconds(10), MaxResponseContentBufferSize = 1024 * 1024 });
    }

    /// <summary>Gets whether tokens are reviewed: the cluster is read and reviews are not turned off.</summary>
    public bool Enabled => _options.KubernetesTokenReview && !string.IsNullOrWhiteSpace(_options.KubernetesApiServer);

    /// <summary>
    /// Reviews <paramref name="token"/> for <paramref name="audiences"/>; returns the identity the server vouches for in
    /// <paramref name="trustDomain"/>, or why there is none. <c>Unavailable</c> is set when the server could
    /// not answer (the token may be good; another control plane may reach it), as opposed to a refusal.
    /// </summary>
    public async Task<(SpiffeId? Id, string? Error, bool Unavailable)> ReviewAsync(string token, IReadOnlyCollection<string> audiences, string trustDomain, CancellationToken cancellationToken)
    {
        var requested = audiences.Count > 0 ? audiences : [ServiceAccountTokens.DefaultAudience];
        var review = new JsonObject
        {
            ["apiVersion"] = "authentication.k8s.io/v1",
            ["kind"] = "TokenReview",
            ["spec"] = new JsonObject { ["token"] = token, ["audiences"] = new JsonArray([.. requested.Select(a => JsonValue.Create(a))]) },
        };

        JsonNode? status;
        try
        {
            var server = KubernetesApi.Server(_options)!;
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, ReviewsPath)) { Content = JsonContent.Create(review) };
            await KubernetesApi.AuthorizeAsync(request, _options, cancellationToken).ConfigureAwait(false);
            using var response = await _http.Value.SendAsync(request, cancellationToken).ConfigureAwait(false);
            await KubernetesApi.EnsureSuccessAsync(response, cancellationToken).ConfigureAwait(false);
            status = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false))?["status"];
        }
        catch (KubernetesApiException ex) when (ex.Status is 401 or 403)
        {
            // The control plane's own credentials or role: no retry elsewhere helps, and the message says what is missing.
            return (null, $"the API server refuses to review tokens ({ex.Status}): {ex.Message}", false);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or UnauthorizedAccessException or TaskCanceledException or KubernetesApiException or JsonException or InvalidOperationException)
        {
            return (null, $"the API server cannot review the token: {ex.Message}", true);
        }

        var (id, refused) = Read(status, requested, trustDomain);
        return (id, refused, false);
    }

    public void Dispose()
    {
        if (_http.IsValueCreated)
        {
            _http.Value.Dispose();
        }
    }

    // What the review says, as istiod reads it: authenticated, a service account (its group), named
    // system:serviceaccount:<ns>:<name>, and bound to one of the audiences asked for (a server that does not say which
    // is not audience-aware and may have taken a token meant for another party).
    private static (SpiffeId? Id, string? Error) Read(JsonNode? status, IReadOnlyCollection<string> requested, string trustDomain)
    {
        if (status is not JsonObject review)
        {
            return (null, "the API server's review has no status");
        }

        if (review["error"] is JsonValue error && error.TryGetValue<string>(out var message) && message.Length > 0)
        {
            return (null, $"the API server does not authenticate the token: {message}");
        }

        if (review["authenticated"] is not JsonValue authenticated || !authenticated.TryGetValue<bool>(out var yes) || !yes)
        {
            return (null, "the API server does not authenticate the token");
        }

        if (!Strings(review["audiences"]).Any(requested.Contains))
        {
            return (null, $"the API server's review names none of the audiences asked for ({string.Join(", ", requested)})");
        }

        var user = review["user"];
        if (!Strings(user?["groups"]).Contains(ServiceAccountsGroup))
        {
            return (null, "the token is not a service account's (the review's user is not in system:serviceaccounts)");
        }

        var name = user?["username"] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;
        return ServiceAccountTokens.ParseUserName(name) is { } account
            ? ServiceAccountTokens.Identity(account.Namespace, account.ServiceAccount, trustDomain)
            : (null, $"the review's user '{name}' names no service account (system:serviceaccount:<namespace>:<name>)");
    }

    private static IEnumerable<string> Strings(JsonNode? array) =>
        array is JsonArray items ? items.Select(i => i is JsonValue v && v.TryGetValue<string>(out var s) ? s : null).OfType<string>() : [];
}
