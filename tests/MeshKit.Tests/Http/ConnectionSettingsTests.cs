using MeshKit.Http;
using MeshKit.Protocol.V1;

namespace MeshKit.Tests.Http;

public sealed class ConnectionSettingsTests
{
    [Theory]
    [InlineData(0ul, 60_000.0)] // the default: SocketsHttpHandler's own (1 min)
    [InlineData(90_000ul, 90_000.0)]
    [InlineData(ulong.MaxValue, -1.0)] // tcp.idleTimeout: 0s, never closed
    public void IdleTimeout_SetsThePoolsIdleTimeout(ulong idleTimeoutMs, double expectedMs)
    {
        using var handler = ClusterTransports.Transport.CreateHandler(new ConnectionSettings { IdleTimeoutMs = idleTimeoutMs }, null, null);

        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), handler.PooledConnectionIdleTimeout);
    }
}
