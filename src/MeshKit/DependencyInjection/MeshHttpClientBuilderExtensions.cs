using MeshKit;
using MeshKit.Http;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Controls the mesh handler of one <c>IHttpClientFactory</c> client.</summary>
public static class MeshHttpClientBuilderExtensions
{
    /// <summary>
    /// Adds the mesh handler to this client explicitly, at this point of its handler chain. Clients get it anyway
    /// (innermost) after <c>AddMesh()</c>; use this to place it elsewhere. Requires <c>AddMesh()</c>.
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static IHttpClientBuilder AddMeshHandler(this IHttpClientBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure<MeshHttpClientOptions>(builder.Name, o => o.Enabled = true);
        builder.AddHttpMessageHandler(sp => sp.GetService<MeshMarkerService>() is null
            ? throw new InvalidOperationException("AddMeshHandler() needs services.AddMesh() to be called first.")
            : ActivatorUtilities.CreateInstance<MeshHandler>(sp));
        return builder;
    }

    /// <summary>Keeps this client out of the mesh: its requests go where their URL says, untouched.</summary>
    /// <param name="builder">The client builder.</param>
    /// <returns>The builder, for chaining.</returns>
    public static IHttpClientBuilder WithoutMeshHandler(this IHttpClientBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Configure<MeshHttpClientOptions>(builder.Name, o => o.Enabled = false);
        return builder;
    }
}
