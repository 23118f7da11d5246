using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf;
using Grpc.Core;
using MeshKit.Protocol.V1;
using MeshKit.Security;
using MeshKit.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Security;

/// <summary>
/// A workload's first-certificate credential goes only to a server that proves itself under the root the workload
/// trusts: an impostor that lists the mesh's root (public) beside its own, and presents a control-plane certificate of
/// its own root, gets nothing.
/// </summary>
public sealed class ImpostorControlPlaneTests : MeshTestBase, IDisposable
{
    private readonly string _files = Directory.CreateTempSubdirectory("meshkit-impostor-").FullName;

    public void Dispose() => Directory.Delete(_files, recursive: true);

    [Theory]
    [InlineData("join token")]
    [InlineData("service-account token")]
    public async Task AnImpostorListingTheMeshsRoot_GetsNoToken(string credential)
    {
        var meshRoot = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(ControlPlane.CaDirectory, "root-cert.pem"));
        await using var impostor = await Impostor.StartAsync(meshRoot);

        await StartAsync("reviews", "v1", o =>
        {
            o.ControlPlaneAddress = impostor.Address;
            o.ServiceAccount = "reviews";
            o.InitialFetchTimeout = TimeSpan.FromMilliseconds(500);
            if (credential == "join token")
            {
                o.JoinToken = ControlPlane.CreateJoinToken("default", "reviews");
            }
            else
            {
                using var clusterKey = RSA.Create(2048);
                o.ServiceAccountTokenFile = Path.Combine(_files, "token");
                File.WriteAllText(o.ServiceAccountTokenFile, KubernetesTokens.Token(clusterKey, "k", "default", "reviews"));
                o.RootCertificateFile = Path.Combine(ControlPlane.CaDirectory, "root-cert.pem");
            }
        });

        // The workload asks for the roots (public), retries, and never sends its credential.
        await Eventually.TrueAsync(() => impostor.BundleRequests >= 2, "the workload tried the impostor more than once");
        Assert.Empty(impostor.Credentials);
    }

    /// <summary>A TLS server answering as MeshKit's certificate service, with a control-plane certificate of its own root.</summary>
    private sealed class Impostor(WebApplication app, Uri address, ImpostorService service) : IAsyncDisposable
    {
        public Uri Address { get; } = address;

        public int BundleRequests => service.BundleRequests;

        public IReadOnlyCollection<string> Credentials => service.Credentials;

        public static async Task<Impostor> StartAsync(X509Certificate2 meshRoot)
        {
            var now = DateTimeOffset.UtcNow;
            var ownRoot = CertificateProfile.CreateRoot("cluster.local", now.AddMinutes(-1), TimeSpan.FromDays(1));
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var issued = CertificateProfile.Issue(
                PublicKey.CreateFromSubjectPublicKeyInfo(key.ExportSubjectPublicKeyInfo(), out _), SpiffeId.ControlPlane("cluster.local"), ownRoot, now.AddMinutes(-1), TimeSpan.FromHours(1),
                ["localhost"], [IPAddress.Loopback]);
            var serving = CertificateProfile.WithKey(issued, key);

            var service = new ImpostorService([meshRoot, ownRoot]);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
            {
                l.Protocols = HttpProtocols.Http2;
                l.UseHttps(serving);
            }));
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(service);
            var app = builder.Build();
            app.MapGrpcService<ImpostorService>();
            await app.StartAsync();
            return new Impostor(app, new Uri($"https://127.0.0.1:{new Uri(app.Urls.First()).Port}"), service);
        }

        public async ValueTask DisposeAsync()
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    private sealed class ImpostorService(X509Certificate2[] roots) : MeshCertificates.MeshCertificatesBase
    {
        private int _bundleRequests;

        public int BundleRequests => Volatile.Read(ref _bundleRequests);

        public System.Collections.Concurrent.ConcurrentQueue<string> Credentials { get; } = new();

        public override Task<TrustBundleResponse> GetTrustBundle(TrustBundleRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref _bundleRequests);
            var response = new TrustBundleResponse { TrustDomain = "cluster.local" };
            response.TrustRoots.AddRange(roots.Select(r => ByteString.CopyFrom(r.RawData)));
            return Task.FromResult(response);
        }

        public override Task<SignResponse> Sign(SignRequest request, ServerCallContext context)
        {
            Credentials.Enqueue(context.RequestHeaders.GetValue("authorization") ?? "(none)");
            throw new RpcException(new Status(StatusCode.Unavailable, "impostor"));
        }
    }
}
