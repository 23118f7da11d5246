using System.Net;
using Grpc.Core;
using Greeter.Protos;
using MeshKit.ControlPlane;
using Microsoft.AspNetCore.Server.Kestrel.Core;

// One process for the demo: a control plane, greeter v1 and v2 (gRPC servers in the mesh), and a client that calls
// through the mesh. The VirtualService below sends SayGoodbye and callers with "x-canary: true" to v2. Everyone joins
// on the control plane's TLS port with a join token, and greeter accepts mutual TLS only (STRICT), from frontend only.
var configDir = Directory.CreateTempSubdirectory("greeter-mesh-config-").FullName;
File.WriteAllText(Path.Combine(configDir, "greeter.yaml"), """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: { name: greeter }
    spec:
      host: greeter
      subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: { name: greeter }
    spec:
      hosts: [greeter]
      http:
      - match:
        - uri: { exact: /greeter.Greeter/SayGoodbye }
        - headers: { x-canary: { exact: "true" } }
        route: [{ destination: { host: greeter, subset: v2 } }]
      - route: [{ destination: { host: greeter, subset: v1 } }]
    ---
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: { name: greeter, namespace: default }
    spec:
      selector: { matchLabels: { app: greeter } }
      mtls: { mode: STRICT }
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: { name: greeter-callers, namespace: default }
    spec:
      selector: { matchLabels: { app: greeter } }
      rules:
      - from: [{ source: { principals: ["cluster.local/ns/default/sa/frontend"] } }]
    """);

var controlPlane = ControlPlaneApp.Build([], o =>
{
    o.ConfigDirectory = configDir;
    o.Listen = string.Empty; // no plain-text discovery: every workload has an identity
    o.SecureListen = "https://127.0.0.1:0";
    o.AdminListen = "http://127.0.0.1:0";
    o.CaDirectory = Path.Combine(configDir, ".ca");
    o.StartupSyncDelay = TimeSpan.Zero;
});
controlPlane.Logger.LogInformation("starting");
await controlPlane.StartAsync();
var discovery = new Uri(controlPlane.Urls.First(u => u.StartsWith("https://", StringComparison.Ordinal)));
var admin = new Uri(controlPlane.Urls.Last(u => u.StartsWith("http://", StringComparison.Ordinal)));

// What `meshctl token create -n default -s <account>` does.
async Task<string> JoinToken(string serviceAccount)
{
    using var http = new HttpClient();
    using var response = await http.PostAsync(new Uri(admin, $"/tokens?namespace=default&serviceAccount={serviceAccount}"), null);
    response.EnsureSuccessStatusCode();
    using var json = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    return json.RootElement.GetProperty("token").GetString()!;
}

var greeterToken = await JoinToken("greeter");
var frontendToken = await JoinToken("frontend");

var servers = new List<WebApplication>();
foreach (var version in new[] { "v1", "v2" })
{
    var builder = WebApplication.CreateSlimBuilder();
    builder.Logging.SetMinimumLevel(LogLevel.Warning);
    builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
    builder.Services.AddGrpc();
    builder.Services.AddSingleton(new GreeterService(version));
    builder.Services.AddMesh(o =>
    {
        o.ServiceName = "greeter";
        o.ServiceAccount = "greeter";
        o.Labels["version"] = version;
        o.ServicePort = 9090;
        o.ControlPlaneAddress = discovery;
        o.JoinToken = greeterToken;
        o.DrainDuration = TimeSpan.Zero;
    });
    var server = builder.Build();
    server.MapGrpcService<GreeterService>();
    await server.StartAsync();
    servers.Add(server);
}

var clientBuilder = Host.CreateApplicationBuilder();
clientBuilder.Logging.SetMinimumLevel(LogLevel.Warning);
clientBuilder.Services.AddMesh(o =>
{
    o.ServiceName = "frontend";
    o.ServiceAccount = "frontend";
    o.ControlPlaneAddress = discovery;
    o.JoinToken = frontendToken;
});

// A grpc-dotnet client from IHttpClientFactory: the mesh picks the endpoint, grpc-dotnet's own balancing stays off.
clientBuilder.Services.AddGrpcClient<Greeter.Protos.Greeter.GreeterClient>(o => o.Address = new Uri("http://greeter:9090"));
using var client = clientBuilder.Build();
await client.StartAsync();
var greeter = client.Services.GetRequiredService<Greeter.Protos.Greeter.GreeterClient>();

// Wait until both versions are in the mesh.
for (var i = 0; i < 100; i++)
{
    try
    {
        if ((await greeter.SayGoodbyeAsync(new HelloRequest { Name = "probe" })).Message.EndsWith("v2", StringComparison.Ordinal)
            && (await greeter.SayHelloAsync(new HelloRequest { Name = "probe" })).Message.EndsWith("v1", StringComparison.Ordinal))
        {
            break;
        }
    }
    catch (RpcException)
    {
    }

    await Task.Delay(100);
}

Console.WriteLine((await greeter.SayHelloAsync(new HelloRequest { Name = "Ada" })).Message);
Console.WriteLine((await greeter.SayGoodbyeAsync(new HelloRequest { Name = "Ada" })).Message);
Console.WriteLine((await greeter.SayHelloAsync(new HelloRequest { Name = "Ada" }, new Metadata { { "x-canary", "true" } })).Message);

await client.StopAsync();
foreach (var server in servers)
{
    await server.StopAsync();
}

await controlPlane.StopAsync();
Directory.Delete(configDir, recursive: true);
return 0;

internal sealed class GreeterService(string version) : Greeter.Protos.Greeter.GreeterBase
{
    public override Task<HelloReply> SayHello(HelloRequest request, ServerCallContext context) =>
        Task.FromResult(new HelloReply { Message = $"Hello {request.Name} from greeter {version}" });

    public override Task<HelloReply> SayGoodbye(HelloRequest request, ServerCallContext context) =>
        Task.FromResult(new HelloReply { Message = $"Goodbye {request.Name} from greeter {version}" });
}
