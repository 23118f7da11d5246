using System.Text.Json;
using MeshKit.LoadBalancing;

namespace MeshKit.Snapshot;

/// <summary>
/// What this workload's data plane holds and sees right now, as JSON: the config version in force, its services and
/// routes, and each destination (an Envoy cluster: a service, subset or port with a policy of its own) with its
/// endpoints' health, ejections and requests in flight — the part of Envoy's admin <c>/config_dump</c> and
/// <c>/clusters</c> that only the workload knows (the control plane's view of the same config is <c>meshctl config</c>).
/// Read from the published snapshot and the live counters, without locks; the request path is not touched.
/// </summary>
internal static class MeshDebugDump
{
    public const string ContentType = "application/json; charset=utf-8";

    public static void Write(Utf8JsonWriter w, MeshOptions options, MeshSnapshot snapshot, Security.WorkloadIdentity? identity, Sync.MeshSyncStatus? status)
    {
        w.WriteStartObject();

        w.WriteStartObject("workload");
        w.WriteString("service", options.ServiceName);
        w.WriteString("namespace", options.Namespace);
        w.WriteString("serviceAccount", options.ServiceAccount);
        var certificate = identity?.Current;
        WriteOptional(w, "identity", certificate?.IdText);
        if (certificate is not null)
        {
            w.WriteString("certificateExpires", certificate.NotAfter);
        }
        else
        {
            w.WriteNull("certificateExpires");
        }

        w.WriteEndObject();

        w.WriteStartObject("config");
        w.WriteString("version", snapshot.Version);
        w.WriteBoolean("ready", snapshot.IsReady);
        w.WriteBoolean("registryOnly", snapshot.RegistryOnly);
        if (status is not null)
        {
            w.WriteBoolean("controlPlaneConnected", status.Connected);
            WriteOptional(w, "lastRejection", status.LastNack);
        }

        w.WriteEndObject();

        WriteInbound(w, snapshot);

        // One entry per destination, however many routes send to it.
        var destinations = new Dictionary<EndpointSet, string>(ReferenceEqualityComparer.Instance);
        void Add(RouteTargetInfo target)
        {
            if (target.Endpoints is not { } set)
            {
                return;
            }

            destinations.TryAdd(set, SnapshotBuilder.DestinationName(target.Subset, 0, target.Host));
            if (set.PortOverrides is { } overrides)
            {
                foreach (var (port, portSet) in overrides)
                {
                    destinations.TryAdd(portSet, SnapshotBuilder.DestinationName(target.Subset, port, target.Host));
                }
            }
        }

        w.WriteStartArray("services");
        foreach (var service in snapshot.Services.Values.OrderBy(s => s.Host, StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("host", service.Host);
            w.WriteStartArray("ports");
            foreach (var port in service.Ports)
            {
                w.WriteNumberValue(port);
            }

            w.WriteEndArray();
            w.WriteBoolean("external", service.External);
            w.WriteStartArray("routes");
            foreach (var route in service.Routes)
            {
                w.WriteStartObject();
                w.WriteString("name", route.Name);
                w.WriteNumber("matchBlocks", route.Matchers.Length);
                w.WriteStartArray("destinations");
                foreach (var target in route.Targets)
                {
                    var info = new RouteTargetInfo(target.Host, target.Subset, target.Endpoints);
                    Add(info);
                    w.WriteStartObject();
                    w.WriteString("name", SnapshotBuilder.DestinationName(target.Subset, 0, target.Host));
                    w.WriteNumber("weight", target.Weight);
                    w.WriteBoolean("known", target.Endpoints is not null);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteStartArray("mirrors");
                foreach (var (mirror, percentage) in route.Mirrors)
                {
                    Add(new RouteTargetInfo(mirror.Host, mirror.Subset, mirror.Endpoints));
                    w.WriteStartObject();
                    w.WriteString("name", SnapshotBuilder.DestinationName(mirror.Subset, 0, mirror.Host));
                    w.WriteNumber("percentage", percentage);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartArray("destinations");
        foreach (var (set, name) in destinations.OrderBy(d => d.Value, StringComparer.Ordinal))
        {
            WriteDestination(w, name, set);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>What guards the workload's own endpoints: mutual TLS modes, the AuthorizationPolicies in evaluation order, the JWT issuers.</summary>
    private static void WriteInbound(Utf8JsonWriter w, MeshSnapshot snapshot)
    {
        w.WriteStartObject("inbound");
        var peer = snapshot.PeerAuthentication;
        w.WriteStartObject("mtls");
        w.WriteString("mode", peer.Mode.ToString().ToUpperInvariant());
        w.WriteStartObject("ports");
        foreach (var (port, mode) in peer.PortModes.OrderBy(p => p.Key))
        {
            w.WriteString(port.ToString(System.Globalization.CultureInfo.InvariantCulture), mode.ToString().ToUpperInvariant());
        }

        w.WriteEndObject();
        w.WriteStartArray("sources");
        foreach (var source in peer.Sources)
        {
            w.WriteStringValue(source);
        }

        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteStartArray("authorizationPolicies");
        foreach (var policy in snapshot.Authorization.Policies)
        {
            w.WriteStartObject();
            w.WriteString("name", policy.Name);
            w.WriteString("action", policy.Action);
            w.WriteBoolean("dryRun", policy.DryRun);
            WriteOptional(w, "unenforceable", policy.Unenforceable);
            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartArray("jwtIssuers");
        foreach (var (issuer, keys) in snapshot.Jwt.Issuers)
        {
            w.WriteStartObject();
            w.WriteString("issuer", issuer);
            if (keys is { } count)
            {
                w.WriteNumber("keys", count);
            }
            else
            {
                w.WriteNull("keys"); // never fetched: its tokens are refused
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteDestination(Utf8JsonWriter w, string name, EndpointSet set)
    {
        var upstream = set.Upstream;
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("loadBalancer", set.Policy);
        w.WriteString("tlsMode", upstream.TlsMode.Length == 0 ? "AUTO" : upstream.TlsMode);
        w.WriteBoolean("ownConnectionPool", upstream.Transport is not null);
        w.WriteBoolean("outlierDetection", set.Outlier is not null);
        if (upstream.Counters is { } counters)
        {
            w.WriteNumber("requestsInFlight", counters.ActiveRequests);
        }

        if (upstream.Limits is { MaxRequests: > 0 } limits)
        {
            w.WriteNumber("maxRequests", limits.MaxRequests);
        }

        w.WriteStartArray("endpoints");
        foreach (var endpoint in set.Endpoints)
        {
            w.WriteStartObject();
            w.WriteString("address", endpoint.Key);
            WriteOptional(w, "identity", endpoint.Identity.Length == 0 ? null : endpoint.Identity);
            var locality = endpoint.Locality;
            WriteOptional(w, "locality", locality is null || locality.Region.Length == 0 ? null : string.Join('/', new[] { locality.Region, locality.Zone, locality.Subzone }.Where(p => p.Length > 0)));
            w.WriteNumber("weight", endpoint.Weight);
            w.WriteNumber("requestsInFlight", endpoint.ActiveRequests);
            var health = endpoint.Health;
            w.WriteString("health", health?.StateName ?? "healthy");
            if (health?.EjectedUntil is { } until)
            {
                w.WriteString("ejectedUntil", until);
            }

            if (health is { TimesEjected: > 0 })
            {
                w.WriteNumber("timesEjected", health.TimesEjected);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteOptional(Utf8JsonWriter w, string name, string? value)
    {
        if (value is null)
        {
            w.WriteNull(name);
        }
        else
        {
            w.WriteString(name, value);
        }
    }

    private readonly record struct RouteTargetInfo(string Host, string Subset, EndpointSet? Endpoints);
}
