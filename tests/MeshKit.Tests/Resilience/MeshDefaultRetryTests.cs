using System.Net;
using System.Net.Sockets;
using MeshKit.Tests.Infrastructure;

namespace MeshKit.Tests.Resilience;

/// <summary>MeshConfig's defaultHttpRetryPolicy: the retries of every route that sets none, instead of Istio's default.</summary>
public class MeshDefaultRetryTests
{
    private const string Mesh = """
        apiVersion: meshkit.dev/v1alpha1
        kind: MeshConfig
        metadata: { name: mesh, namespace: istio-system }
        spec:
          defaultHttpRetryPolicy: { attempts: 3, retryOn: "5xx" }
        ---

        """;

    // Answers every attempt with 503, or fails to connect, and counts the attempts.
    private sealed class Failing(bool refuse) : HttpMessageHandler
    {
        public int Attempts;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Attempts);
            return refuse
                ? Task.FromException<HttpResponseMessage>(new HttpRequestException(HttpRequestError.ConnectionError, "refused", new SocketException((int)SocketError.ConnectionRefused)))
                : Task.FromResult(new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { RequestMessage = request });
        }
    }

    private static async Task<int> AttemptsAsync(string yaml, bool refuse = false)
    {
        var upstream = new Failing(refuse);
        using var mesh = InMemoryMesh.Create(yaml, upstream: upstream);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://reviews:9080/");
        try
        {
            using var response = await mesh.SendAsync(request, CancellationToken.None);
        }
        catch (HttpRequestException)
        {
            // A connect failure that outlasts the retries comes back as the mesh's 503 or as the failure itself.
        }

        return upstream.Attempts;
    }

    [Fact]
    public async Task ARouteWithoutRetries_TakesTheMeshDefault_TheServicesDefaultRouteIncluded()
    {
        // Istio's default retries connect failures, not a 503 answer; the mesh's default here retries 5xx thrice.
        Assert.Equal(1, await AttemptsAsync(string.Empty));
        Assert.Equal(4, await AttemptsAsync(Mesh));
        Assert.Equal(4, await AttemptsAsync(Mesh + InMemoryMesh.VirtualService("  - route: [{ destination: { host: reviews } }]")));
    }

    [Fact]
    public async Task ARoutesOwnRetries_WinOverTheMeshDefault()
    {
        Assert.Equal(2, await AttemptsAsync(Mesh + InMemoryMesh.VirtualService("  - route: [{ destination: { host: reviews } }]\n    retries: { attempts: 1, retryOn: 5xx }")));
    }

    [Fact]
    public async Task AMeshDefaultOfNoAttempts_TurnsIstiosDefaultRetriesOff()
    {
        Assert.Equal(3, await AttemptsAsync(string.Empty, refuse: true));
        Assert.Equal(1, await AttemptsAsync(Mesh.Replace("{ attempts: 3, retryOn: \"5xx\" }", "{ attempts: 0 }", StringComparison.Ordinal), refuse: true));
    }
}
