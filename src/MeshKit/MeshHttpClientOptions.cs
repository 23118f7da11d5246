namespace MeshKit;

/// <summary>Per-client mesh settings, named after the <c>IHttpClientFactory</c> client.</summary>
public sealed class MeshHttpClientOptions
{
    /// <summary>Gets or sets whether the client's requests go through the mesh. Default: <see langword="true"/>.</summary>
    public bool Enabled { get; set; } = true;
}
