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

    [Fact]
    public void CanonicalNames_FollowIstiosLabels_TravelWhenSet_AndDefaultToAppAndVersion()
    {
        var labelled = PeerMetadata.ForWorkload("reviews", "default", new Dictionary<string, string>
        {
            ["version"] = "v2",
            ["app.kubernetes.io/name"] = "reviews-k8s",
            ["service.istio.io/canonical-name"] = "reviews-canonical", // Istio's label wins over Kubernetes'
            ["app.kubernetes.io/version"] = "2.0.1",
        });
        Assert.Equal(("reviews-canonical", "2.0.1"), (labelled.CanonicalService, labelled.CanonicalRevision));
        Assert.Equal(labelled, PeerMetadata.Parse(labelled.Encoded));
        Assert.Equal("reviews-canonical", PeerMetadata.Parse(labelled.Encoded)!.CanonicalService);

        var plain = PeerMetadata.ForWorkload("ratings", "default", new Dictionary<string, string>());
        Assert.Equal(("ratings", "latest", "Kubernetes"), (plain.CanonicalService, plain.CanonicalRevision, plain.Cluster));
        Assert.DoesNotContain("cs=", plain.Encoded, StringComparison.Ordinal); // nothing to tell beyond app and version
        Assert.Equal(("unknown", "unknown", "unknown"), (PeerMetadata.Unknown.CanonicalService, PeerMetadata.Unknown.CanonicalRevision, PeerMetadata.Unknown.Cluster));
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
    public void EqualTexts_ParsedByDifferentHolders_GiveTheSameObject()
    {
        // Two connections from one caller: each memo parses its own copy of the text, both get one object (metric
        // labels then compare by reference, and reports batch).
        PeerMetadata.Memo? connectionA = null, connectionB = null;
        var text = new PeerMetadata("details-v1", "shared-ns", "details", "v1", "details").Encoded;

        var a = PeerMetadata.Parse(new string(text.AsSpan()), ref connectionA);
        var b = PeerMetadata.Parse(new string(text.AsSpan()), ref connectionB);

        Assert.NotNull(a);
        Assert.Same(a, b);
    }

    [Fact]
    public void APeersPrincipalTexts_AreOneStringPerIdentity_WhateverTheConnection()
    {
        var first = new MeshKit.Security.VerifiedPeer(new MeshKit.Security.SpiffeId("cluster.local", "shared-ns", "details"));
        var second = new MeshKit.Security.VerifiedPeer(new MeshKit.Security.SpiffeId("cluster.local", "shared-ns", "details"));

        Assert.Same(first.Principal, second.Principal);
        Assert.Same(first.SpiffeUri, second.SpiffeUri);
        Assert.Equal("spiffe://cluster.local/ns/shared-ns/sa/details", first.SpiffeUri);
    }

    [Fact]
    public void SharedLabels_AreBounded_PastTheBound_AValueIsUsedAsItIs()
    {
        // Texts come from peers: a peer sending a new text per request must not grow the process without end.
        for (var i = 0; SharedLabels<Probe>.Count < SharedLabels<Probe>.Capacity; i++)
        {
            SharedLabels<Probe>.Share($"text-{i}", new Probe());
        }

        var late = new Probe();
        Assert.Same(late, SharedLabels<Probe>.Share("one more", late));
        Assert.False(SharedLabels<Probe>.TryGet("one more", out _));
        Assert.Equal(SharedLabels<Probe>.Capacity, SharedLabels<Probe>.Count);

        // Below the bound, the first value shared for a text is the one every later caller gets.
        Assert.True(SharedLabels<Probe>.TryGet("text-0", out var first));
        Assert.Same(first, SharedLabels<Probe>.Share("text-0", new Probe()));
    }

    private sealed class Probe;

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
