namespace MeshKit.LoadBalancing;

/// <summary>Picks one endpoint of a set; an instance holds the state of one endpoint set and is thread-safe without locks.</summary>
internal abstract class LoadBalancer
{
    /// <summary>Gets whether requests go to the host the caller named instead of a picked endpoint.</summary>
    public virtual bool IsPassthrough => false;

    public abstract EndpointView? Pick(EndpointView[] endpoints);

    /// <summary>Creates the balancer named by a DestinationRule's <c>loadBalancer.simple</c>.</summary>
    public static LoadBalancer Create(string? policy) => policy switch
    {
        null or "" or "ROUND_ROBIN" => new RoundRobinBalancer(),
        "RANDOM" => new RandomBalancer(),
        "LEAST_REQUEST" or "LEAST_CONN" => new LeastRequestBalancer(),
        "PASSTHROUGH" => new PassthroughBalancer(),
        "CONSISTENT_HASH" => new RandomBalancer(),
        _ => throw new MeshConfigException($"unknown load balancer '{policy}'"),
    };
}

internal sealed class RoundRobinBalancer : LoadBalancer
{
    // A random start, as Envoy seeds its round robin: every config push builds the balancer anew, and starting at the
    // first endpoint each time would send a low-rate caller's requests (and a fleet's first requests after a push)
    // to that one endpoint.
    private int _next = Random.Shared.Next();

    public override EndpointView? Pick(EndpointView[] endpoints) =>
        endpoints[(int)((uint)Interlocked.Increment(ref _next) % (uint)endpoints.Length)];
}

internal sealed class RandomBalancer : LoadBalancer
{
    public override EndpointView? Pick(EndpointView[] endpoints) => endpoints[Random.Shared.Next(endpoints.Length)];
}

/// <summary>Power of two choices: of two random endpoints, the one with fewer requests in flight.</summary>
internal sealed class LeastRequestBalancer : LoadBalancer
{
    public override EndpointView? Pick(EndpointView[] endpoints)
    {
        if (endpoints.Length == 1)
        {
            return endpoints[0];
        }

        var a = endpoints[Random.Shared.Next(endpoints.Length)];
        var b = endpoints[Random.Shared.Next(endpoints.Length)];
        return b.ActiveRequests < a.ActiveRequests ? b : a;
    }
}

internal sealed class PassthroughBalancer : LoadBalancer
{
    public override bool IsPassthrough => true;

    public override EndpointView? Pick(EndpointView[] endpoints) => null;
}
