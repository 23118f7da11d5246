using MeshKit.Telemetry;

namespace MeshKit.Tests.Telemetry;

public sealed class PeerMetadataTests
{
    [Fact]
    public void Encoded_ParsesBackToTheSameMetadata_EscapedCharactersIncluded()
    {
        var told = new PeerMetadata("reviews-v2", "team a;b", "reviews=app", "v2", "reviews");

        Assert.Equal(told, PeerMetadata.Parse(told.Encoded));
        Assert.Equal(told, PeerMetadata.Parse(told.EncodedWithoutReply));
    }

    [Theory]
    [InlineData("")]
    [InlineData("n=default")]
    [InlineData("w=a;n")]
    [InlineData("w=a;=x;n=b")]
    public void Incomplete_OrMalformed_IsNotBelieved(string value) => Assert.Null(PeerMetadata.Parse(value));

    [Fact]
    public void UnknownFields_AreSkipped_MissingOptionalOnesAreUnknown()
    {
        var parsed = PeerMetadata.Parse("w=ratings-v1;future=1;n=default;r=0");

        Assert.Equal(new PeerMetadata("ratings-v1", "default", "unknown", "unknown", "unknown"), parsed);
    }

    [Fact]
    public void Memo_ReturnsTheSameParse_ForTheSameText_AndParsesANewText()
    {
        PeerMetadata.Memo? memo = null;
        var first = new PeerMetadata("reviews-v1", "default", "reviews", "v1", "reviews").Encoded;
        var second = new PeerMetadata("reviews-v2", "default", "reviews", "v2", "reviews").Encoded;

        var parsed = PeerMetadata.Parse(first, ref memo);
        Assert.Same(parsed, PeerMetadata.Parse(new string(first.AsSpan()), ref memo));
        Assert.Equal("reviews-v2", PeerMetadata.Parse(second, ref memo)?.Workload);
        Assert.Null(PeerMetadata.Parse("garbage", ref memo));
        Assert.Null(PeerMetadata.Parse(null, ref memo));
    }

    [Fact]
    public void ACopy_EncodesItsOwnValues()
    {
        var original = new PeerMetadata("reviews-v1", "default", "reviews", "v1", "reviews");
        _ = original.Encoded;

        var copy = original with { Service = "ratings" };

        Assert.EndsWith("s=ratings", copy.Encoded, StringComparison.Ordinal);
        Assert.NotEqual(original, copy);
    }
}
