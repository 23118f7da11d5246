using MeshKit.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Http;

namespace MeshKit.Tests.DependencyInjection;

public class MeshExtensionsTests
{
    [Fact]
    public void AddMesh_NullServices_Throws() =>
        Assert.Throws<ArgumentNullException>(() => MeshServiceCollectionExtensions.AddMesh(null!));

    [Fact]
    public void AddMeshHandler_NullBuilder_Throws() =>
        Assert.Throws<ArgumentNullException>(() => MeshHttpClientBuilderExtensions.AddMeshHandler(null!));

    [Fact]
    public void WithoutMeshHandler_NullBuilder_Throws() =>
        Assert.Throws<ArgumentNullException>(() => MeshHttpClientBuilderExtensions.WithoutMeshHandler(null!));

    [Fact]
    public void UseMesh_NullApp_Throws() =>
        Assert.Throws<ArgumentNullException>(() => MeshApplicationBuilderExtensions.UseMesh(null!));

    [Theory]
    [InlineData(nameof(MeshApplicationBuilderExtensions.UseMesh))]
    [InlineData(nameof(MeshEndpointRouteBuilderExtensions.MapMeshMetrics))]
    public void WithoutAddMesh_UseMeshAndMapMeshMetrics_ThrowNamingAddMesh(string method)
    {
        var builder = WebApplication.CreateSlimBuilder();
        using var app = builder.Build();

        var ex = Assert.Throws<InvalidOperationException>(() => _ = method == nameof(MeshApplicationBuilderExtensions.UseMesh) ? (object)app.UseMesh() : app.MapMeshMetrics());
        Assert.Contains("AddMesh()", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MapMeshMetrics_NullEndpoints_Throws() =>
        Assert.Throws<ArgumentNullException>(() => MeshEndpointRouteBuilderExtensions.MapMeshMetrics(null!));

    [Fact]
    public void AddMesh_Twice_RegistersEverythingOnce()
    {
        var services = new ServiceCollection();
        services.AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build());
        services.AddMesh(o => o.ServiceName = "a").AddMesh(o =>
        {
            o.Namespace = "b";
            o.ControlPlaneAddress = new Uri("http://127.0.0.1:1");
        });

        Assert.Single(services, d => d.ServiceType == typeof(IHttpMessageHandlerBuilderFilter) && d.ImplementationType == typeof(MeshHandlerBuilderFilter));
        Assert.Equal(3, services.Count(d => d.ServiceType == typeof(IHostedService)));
        using var provider = services.BuildServiceProvider();
        var options = provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<MeshOptions>>().Value;
        Assert.Equal(("a", "b"), (options.ServiceName, options.Namespace));
    }

    [Fact]
    public void MeshHandler_IsInnermost_ExplicitPlacementIsKept_OptOutHasNone()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build());
        services.AddMesh(o =>
        {
            o.ServiceName = "a";
            o.ControlPlaneAddress = new Uri("http://127.0.0.1:1");
        });
        services.AddHttpClient("default").AddHttpMessageHandler(() => new Marker());
        services.AddHttpClient("explicit").AddMeshHandler().AddHttpMessageHandler(() => new Marker());
        services.AddHttpClient("out").WithoutMeshHandler();
        using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<IHttpMessageHandlerFactory>();

        Assert.Equal([typeof(Marker), typeof(MeshHandler)], Chain(factory.CreateHandler("default")));
        Assert.Equal([typeof(MeshHandler), typeof(Marker)], Chain(factory.CreateHandler("explicit")));
        Assert.Empty(Chain(factory.CreateHandler("out")));
    }

    private static List<Type> Chain(HttpMessageHandler handler)
    {
        var types = new List<Type>();
        while (handler is DelegatingHandler delegating)
        {
            if (delegating.GetType().Namespace!.StartsWith("Microsoft", StringComparison.Ordinal) is false)
            {
                types.Add(delegating.GetType());
            }

            handler = delegating.InnerHandler!;
        }

        return types;
    }

    private sealed class Marker : DelegatingHandler;
}
