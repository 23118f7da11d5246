using MeshKit.Http;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Http;

/// <summary>What a caller could claim about itself in headers never reaches policy or the application.</summary>
public sealed class SpoofableHeaderTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    public void EveryMeshHeader_AndTheForwardedClientCert_AreRemoved_OthersStay(int meshHeaders)
    {
        var headers = new HeaderDictionary
        {
            ["x-forwarded-client-cert"] = "By=spiffe://evil",
            ["accept"] = "text/plain",
            ["x-meshkit"] = "not the prefix",
        };
        for (var i = 0; i < meshHeaders; i++)
        {
            headers[i % 2 == 0 ? $"x-meshkit-claim-{i}" : $"X-MeshKit-Claim-{i}"] = "admin";
        }

        MeshMiddleware.StripSpoofableHeaders(headers);

        Assert.Equal(["accept", "x-meshkit"], headers.Keys.Order(StringComparer.Ordinal));
    }
}
