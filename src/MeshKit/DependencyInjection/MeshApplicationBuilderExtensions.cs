using MeshKit.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Adds the mesh's inbound middleware.</summary>
public static class MeshApplicationBuilderExtensions
{
    /// <summary>
    /// Adds the inbound mesh middleware: identity headers a client could spoof are stripped before the application
    /// sees the request. Put it first in the pipeline. Requires <c>services.AddMesh()</c>.
    /// </summary>
    /// <param name="app">The application builder.</param>
    /// <returns>The application builder, for chaining.</returns>
    /// <exception cref="InvalidOperationException"><c>AddMesh()</c> was not called.</exception>
    public static IApplicationBuilder UseMesh(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        if (app.ApplicationServices.GetService<MeshMarkerService>() is null)
        {
            throw new InvalidOperationException(
                "UseMesh() needs the mesh services: call builder.Services.AddMesh() in startup before app.UseMesh().");
        }

        return app.UseMiddleware<MeshMiddleware>();
    }
}
