using System.Net;
using System.Net.Sockets;
using MeshKit.Protocol.V1;

namespace MeshKit.LoadBalancing;

/// <summary>One endpoint of a cluster, with its ports resolved and its authority strings built once.</summary>
internal sealed class EndpointView
{
    private readonly uint[] _servicePorts;
    private readonly string[] _authorities;

    public EndpointView(Endpoint endpoint)
    {
        Address = endpoint.Address;
        var host = IPAddress.TryParse(endpoint.Address, out var ip) && ip.AddressFamily == AddressFamily.InterNetworkV6
            ? $"[{endpoint.Address}]" : endpoint.Address;
        _servicePorts = new uint[endpoint.Ports.Count];
        _authorities = new string[endpoint.Ports.Count];
        for (var i = 0; i < endpoint.Ports.Count; i++)
        {
            _servicePorts[i] = endpoint.Ports[i].ServicePort;
            _authorities[i] = $"{host}:{endpoint.Ports[i].TargetPort}";
        }

        Labels = endpoint.Labels;
    }

    public string Address { get; }

    public IReadOnlyDictionary<string, string> Labels { get; }

    /// <summary>Gets the number of requests in flight to this endpoint (for LEAST_REQUEST).</summary>
    public int ActiveRequests => Volatile.Read(ref _active);

    internal int _active;

    /// <summary>Returns <c>host:targetPort</c> for a service port, or null when the endpoint does not serve it.</summary>
    public string? AuthorityFor(uint servicePort)
    {
        for (var i = 0; i < _servicePorts.Length; i++)
        {
            if (_servicePorts[i] == servicePort)
            {
                return _authorities[i];
            }
        }

        return null;
    }
}

/// <summary>The endpoints a destination (service or subset) spreads over, with the load balancer that picks among them.</summary>
internal sealed class EndpointSet(EndpointView[] endpoints, LoadBalancer balancer)
{
    public EndpointView[] Endpoints { get; } = endpoints;

    public LoadBalancer Balancer { get; } = balancer;

    /// <summary>Picks an endpoint, or returns null when there is none (or the policy is pass-through).</summary>
    public EndpointView? Pick() => Endpoints.Length == 0 ? null : Balancer.Pick(Endpoints);
}
