using System.Text.Json;
using MeshKit.ControlPlane;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace MeshKit.Cli.Tests;

/// <summary><c>meshctl token create</c> against a real control plane.</summary>
public sealed class TokenCommandTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("meshctl-token-").FullName;
    private WebApplication _controlPlane = null!;
    private Uri _admin = null!;

    public async Task InitializeAsync()
    {
        _controlPlane = ControlPlaneApp.Build([], o =>
        {
            o.ConfigDirectory = _dir;
            o.CaDirectory = Path.Combine(_dir, ".ca");
            o.Listen = "http://127.0.0.1:0";
            o.SecureListen = "https://127.0.0.1:0";
            o.AdminListen = "http://127.0.0.1:0";
        });
        await _controlPlane.StartAsync();
        _admin = new Uri(_controlPlane.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Last());
    }

    public async Task DisposeAsync()
    {
        await _controlPlane.StopAsync();
        await _controlPlane.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void Create_PrintsATokenForTheIdentity()
    {
        var (code, output, error) = Run("token", "create", "--admin-address", _admin.ToString(), "-n", "default", "-s", "reviews", "--ttl", "48h", "-o", "json");

        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("spiffe://cluster.local/ns/default/sa/reviews", json.RootElement.GetProperty("identity").GetString());
        Assert.Equal(3, json.RootElement.GetProperty("token").GetString()!.Split('.').Length);
        Assert.Empty(error);
    }

    [Fact]
    public void Create_Text_PrintsTheTokenAlone()
    {
        var (code, output, error) = Run("token", "create", "--admin-address", _admin.ToString(), "-n", "default");

        Assert.Equal(0, code);
        Assert.Equal(3, output.Trim().Split('.').Length);
        Assert.Contains("spiffe://cluster.local/ns/default/sa/default", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_WithABadNamespaceOrTtl_Fails_WithTheReason()
    {
        var (code, _, error) = Run("token", "create", "--admin-address", _admin.ToString(), "-n", "Not_A_Label");
        Assert.Equal(2, code);
        Assert.Contains("namespace", error, StringComparison.Ordinal);

        (code, _, error) = Run("token", "create", "--admin-address", _admin.ToString(), "-n", "default", "--ttl", "4000d");
        Assert.Equal(2, code);
        Assert.Contains("ttl", error, StringComparison.Ordinal);
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = MeshCtl.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
