using MeshKit.Security;

namespace MeshKit.Tests.Security;

public sealed class PathNormalizerTests
{
    [Theory]
    [InlineData("/a/../b", "Base", "/b")]
    [InlineData("/a/./b/.", "Base", "/a/b/")]
    [InlineData("/..", "Base", "/")]
    [InlineData("\\admin", "Base", "/admin")]
    [InlineData("/x\\..\\admin", "Base", "/admin")]
    [InlineData("//admin", "Base", "//admin")]
    [InlineData("//admin//x", "MergeSlashes", "/admin/x")]
    [InlineData("/a%2F..%2Fadmin", "DecodeAndMergeSlashes", "/admin")]
    [InlineData("/a%2fb", "MergeSlashes", "/a%2fb")]
    [InlineData("/a/../b", "None", "/a/../b")]
    [InlineData("/static/app.js", "Base", "/static/app.js")]
    [InlineData("/v1.2/items/..", "MergeSlashes", "/v1.2/")]
    [InlineData("/.well-known/x", "Base", "/.well-known/x")]
    [InlineData("/a/..b/c", "Base", "/a/..b/c")]
    [InlineData("/a//./b", "MergeSlashes", "/a/b")]
    public void Normalize(string path, string mode, string expected)
    {
        Assert.Equal(expected, PathNormalizer.Normalize(path, Enum.Parse<PathNormalization>(mode)));
    }

    [Theory]
    [InlineData("/reviews/1", "Base")]
    [InlineData("/static/app.v2.js", "Base")]
    [InlineData("/api/items", "MergeSlashes")]
    [InlineData("/api/items", "DecodeAndMergeSlashes")]
    public void AnAlreadyNormalPath_IsReturnedAsItIs(string path, string mode)
    {
        Assert.Same(path, PathNormalizer.Normalize(path, Enum.Parse<PathNormalization>(mode)));
    }

    [Theory]
    [InlineData("/admin", true)]
    [InlineData("/a%20b?x=%zz", true)]
    [InlineData("/admin%00", false)]
    [InlineData("/admin%0a", false)]
    [InlineData("/admin%", false)]
    [InlineData("/admin%4", false)]
    [InlineData("/admin%zz", false)]
    public void RawTargets_WithNulControlOrMalformedEncoding_AreRefused(string raw, bool acceptable)
    {
        Assert.Equal(acceptable, PathNormalizer.IsAcceptable(raw));
    }

    [Fact]
    public void RawTargetCheck_AllocatesNothing()
    {
        const string raw = "/reviews/%41b?user=1#top";
        Assert.True(PathNormalizer.IsAcceptable(raw));

        var before = GC.GetAllocatedBytesForCurrentThread();
        var acceptable = PathNormalizer.IsAcceptable(raw);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(acceptable);
        Assert.Equal(0, allocated);
    }
}

