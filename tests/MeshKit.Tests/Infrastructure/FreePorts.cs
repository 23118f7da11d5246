using System.Net;
using System.Net.Sockets;

namespace MeshKit.Tests.Infrastructure;

/// <summary>Ports for a test that must name one before something listens on it (a config, a URL to map).</summary>
internal static class FreePorts
{
    /// <summary>A loopback port free at the time of asking (the system's next ephemeral one).</summary>
    public static int Next()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
