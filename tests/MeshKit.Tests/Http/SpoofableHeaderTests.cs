using System.Reflection;
using MeshKit.Http;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Tests.Http;

/// <summary>What a caller could claim about itself in headers never reaches policy or the application.</summary>
public sealed class SpoofableHeaderTests
{
    [Fact]
    public void TheMeshsHeaders_AndTheForwardedClientCert_AreRemoved_InAnyCase_OthersStay()
    {
        var headers = new HeaderDictionary
        {
            ["X-Forwarded-Client-Cert"] = "By=spiffe://evil",
            ["x-meshkit-peer-metadata"] = "claims to be the payments service",
            ["X-MeshKit-Response-Flags"] = "UH",
            ["accept"] = "text/plain",
            ["x-meshkit"] = "not a mesh header",
        };

        MeshMiddleware.StripSpoofableHeaders(headers);

        Assert.Equal(["accept", "x-meshkit"], headers.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void EveryHeaderNameMeshKitDefines_IsStripped()
    {
        // The strip removes a fixed list (a lookup per name, not a scan of every header): a header MeshKit starts to
        // write must join the list, or a client could send it.
        var defined = typeof(MeshMiddleware).Assembly.GetTypes()
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Where(f => f.IsLiteral && f.FieldType == typeof(string))
            .Select(f => (string)f.GetRawConstantValue()!)
            .Where(v => v.StartsWith("x-meshkit-", StringComparison.OrdinalIgnoreCase))
            .Distinct()
            .ToList();

        Assert.NotEmpty(defined);
        Assert.All(defined, name => Assert.Contains(name, MeshMiddleware.SpoofableHeaders));
    }
}
