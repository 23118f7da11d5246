using Google.Protobuf.Reflection;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Compilation;

/// <summary>The type URLs of the resources the control plane serves, in the order a workload should apply them.</summary>
public static class ResourceTypes
{
    /// <summary>Gets the type URL of <see cref="MeshSettings"/>.</summary>
    public static string Mesh { get; } = UrlOf(MeshSettings.Descriptor);

    /// <summary>Gets the type URL of <see cref="ServiceCluster"/>.</summary>
    public static string Cluster { get; } = UrlOf(ServiceCluster.Descriptor);

    /// <summary>Gets the type URL of <see cref="ServiceRoutes"/>.</summary>
    public static string Routes { get; } = UrlOf(ServiceRoutes.Descriptor);

    /// <summary>Gets the type URL of <see cref="InboundPolicy"/>.</summary>
    public static string Inbound { get; } = UrlOf(InboundPolicy.Descriptor);

    /// <summary>Gets every type URL, mesh settings first, then clusters, then routes (routes refer to clusters).</summary>
    public static IReadOnlyList<string> All { get; } = [Mesh, Inbound, Cluster, Routes];

    /// <summary>Gets the name of the single <see cref="InboundPolicy"/> resource.</summary>
    public const string InboundResourceName = "inbound";

    /// <summary>Gets the name of the single <see cref="MeshSettings"/> resource.</summary>
    public const string MeshResourceName = "mesh";

    private static string UrlOf(MessageDescriptor descriptor) => "type.googleapis.com/" + descriptor.FullName;
}
