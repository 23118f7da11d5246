using MeshKit.Http;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Adds the mesh's inbound middleware.</summary>
public static class MeshApplicationBuilderExtensions
{
    /// <summary>
    /// Adds the inbound mesh middleware (identity headers a client could spoof stripped, STRICT mutual TLS per request,
    /// path normalization, RequestAuthentication, AuthorizationPolicy, CORS). <c>AddMesh()</c> already puts it first in
    /// every pipeline, so that a forgotten call cannot leave policy unenforced; calling this is harmless and does not
    /// add it twice. Requires <c>services.AddMesh()</c>.
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

        if (app.Properties.ContainsKey(MeshStartupFilter.AddedKey))
        {
            return app;
        }

        app.Properties[MeshStartupFilter.AddedKey] = true;
        return app.UseMiddleware<MeshMiddleware>();
    }
}

/// <summary>Puts the mesh middleware first in the application's pipeline, whether or not the app calls <c>UseMesh()</c>.</summary>
internal sealed class MeshStartupFilter : IStartupFilter
{
    public const string AddedKey = "meshkit.middleware";

    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.UseMesh();
        next(app);
    };
}
