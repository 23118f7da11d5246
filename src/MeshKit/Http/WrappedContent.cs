namespace MeshKit.Http;

/// <summary>
/// A body that stands in for another: the other's headers copied (a declared length with them), no length of its own
/// to compute, and the other disposed with it.
/// </summary>
internal abstract class WrappedContent : HttpContent
{
    /// <summary>Initializes a new instance of the <see cref="WrappedContent"/> class over <paramref name="inner"/>, with its headers.</summary>
    protected WrappedContent(HttpContent inner)
    {
        Inner = inner;
        foreach (var header in inner.Headers.NonValidated)
        {
            // Values as they were set: a single one without the array a list would take.
            if (header.Value.Count == 1)
            {
                Headers.TryAddWithoutValidation(header.Key, header.Value.ToString());
            }
            else
            {
                Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
        }
    }

    /// <summary>Gets the body this one stands in for.</summary>
    protected HttpContent Inner { get; }

    // A length the inner body declared was copied with its headers; otherwise it is not known before the body is read.
    protected override bool TryComputeLength(out long length)
    {
        length = 0;
        return false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
