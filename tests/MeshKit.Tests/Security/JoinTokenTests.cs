using System.Security.Cryptography;
using System.Text;
using MeshKit.Security;

namespace MeshKit.Tests.Security;

/// <summary>Join tokens: what the control plane accepts as a bootstrap credential.</summary>
public sealed class JoinTokenTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private static readonly SpiffeId Reviews = new("cluster.local", "default", "reviews");
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public void Dispose() => _key.Dispose();

    [Fact]
    public async Task AValidToken_GrantsItsIdentity_AndCarriesThePin()
    {
        var token = JoinTokens.Create(_key, "k", Reviews, "pin", Now, TimeSpan.FromHours(1));

        var (id, error) = await JoinTokens.ValidateAsync(token, [_key], "cluster.local", Now.AddMinutes(30));

        Assert.Null(error);
        Assert.Equal(Reviews, id);
        Assert.Equal("pin", JoinTokens.ReadRootPin(token));
    }

    [Fact]
    public async Task TheSameKeyLoadedAgain_AfterTheFirstCopyWasDisposed_StillSignsAndVerifies()
    {
        // A control plane restarted in the same process loads its token key from the same file into a new object and
        // disposes the old one. The token library caches signature providers process-wide by the key's thumbprint:
        // the new key found the old, disposed one (ObjectDisposedException on every join token, made or checked).
        var material = _key.ExportParameters(includePrivateParameters: true);
        using (var first = ECDsa.Create(material))
        {
            var made = JoinTokens.Create(first, "k", Reviews, "pin", Now, TimeSpan.FromHours(1));
            Assert.Equal(Reviews, (await JoinTokens.ValidateAsync(made, [first], "cluster.local", Now)).Id);
        }

        using var second = ECDsa.Create(material);
        var token = JoinTokens.Create(second, "k", Reviews, "pin", Now, TimeSpan.FromHours(1));
        var (id, error) = await JoinTokens.ValidateAsync(token, [second], "cluster.local", Now);

        Assert.Null(error);
        Assert.Equal(Reviews, id);
    }

    [Fact]
    public async Task AnExpiredToken_IsRefused_AfterTheSkew()
    {
        var token = JoinTokens.Create(_key, "k", Reviews, "pin", Now, TimeSpan.FromHours(1));

        Assert.NotNull((await JoinTokens.ValidateAsync(token, [_key], "cluster.local", Now.AddHours(1).AddSeconds(30))).Id);
        Assert.Null((await JoinTokens.ValidateAsync(token, [_key], "cluster.local", Now.AddHours(1).AddMinutes(2))).Id);
    }

    [Fact]
    public async Task ATokenOfAnotherKey_OrAnotherTrustDomain_IsRefused()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var foreign = JoinTokens.Create(other, "k", Reviews, "pin", Now, TimeSpan.FromHours(1));
        var elsewhere = JoinTokens.Create(_key, "k", new SpiffeId("other.example", "default", "reviews"), "pin", Now, TimeSpan.FromHours(1));

        Assert.Null((await JoinTokens.ValidateAsync(foreign, [_key], "cluster.local", Now)).Id);
        Assert.Null((await JoinTokens.ValidateAsync(elsewhere, [_key], "cluster.local", Now)).Id);
    }

    [Fact]
    public async Task AnUnsignedToken_IsRefused()
    {
        static string B64(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var exp = Now.AddHours(1).ToUnixTimeSeconds();
        var none = $"{B64("{\"alg\":\"none\",\"typ\":\"JWT\"}")}.{B64($"{{\"iss\":\"{JoinTokens.Issuer}\",\"aud\":\"{JoinTokens.Audience}\",\"sub\":\"{Reviews}\",\"exp\":{exp}}}")}.";

        Assert.Null((await JoinTokens.ValidateAsync(none, [_key], "cluster.local", Now)).Id);
    }

    [Fact]
    public async Task AnOversizedToken_IsRefused()
    {
        var (id, error) = await JoinTokens.ValidateAsync(new string('a', 20_000), [_key], "cluster.local", Now);

        Assert.Null(id);
        Assert.Contains("too large", error, StringComparison.Ordinal);
    }
}
