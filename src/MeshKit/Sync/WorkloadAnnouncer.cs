using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Reflection;
using MeshKit.Config.Compilation;
using MeshKit.Protocol.V1;
using MeshKit.Snapshot;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace MeshKit.Sync;

/// <summary>Builds this workload's announcement: identity from options, address and ports from what Kestrel listens on.</summary>
internal sealed class WorkloadAnnouncer(IOptions<MeshOptions> options, IServiceProvider services)
{
    /// <summary>Gets the id of this process in the registry.</summary>
    public string InstanceId { get; } = $"{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}-{Guid.NewGuid():N}";

    /// <summary>Gets the workload as route matching sees it (sourceLabels, sourceNamespace).</summary>
    public SourceWorkload Source => _source ??= new SourceWorkload(options.Value.Namespace, EffectiveLabels(options.Value), Localities.Parse(options.Value.Locality), InstanceId, options.Value.ServiceName);

    private SourceWorkload? _source;

    public static string Version { get; } =
        typeof(WorkloadAnnouncer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    public WorkloadAnnouncement Build()
    {
        var o = options.Value;
        var announcement = new WorkloadAnnouncement
        {
            Service = o.ServiceName,
            Namespace = o.Namespace,
            ServiceAccount = o.ServiceAccount,
            MeshkitVersion = Version,
            InstanceId = InstanceId,
            Locality = Localities.Parse(o.Locality),
        };
        foreach (var (key, value) in EffectiveLabels(o))
        {
            announcement.Labels[key] = value;
        }

        var listening = ListeningUris();
        var first = listening.FirstOrDefault();
        if (first is null)
        {
            return announcement;
        }

        announcement.Address = o.Address ?? HostToAnnounce(first.Host);
        var ports = listening.Where(u => u.Scheme == Uri.UriSchemeHttp || u.Scheme == Uri.UriSchemeHttps).Select(u => (uint)u.Port).Distinct().ToArray();
        for (var i = 0; i < ports.Length; i++)
        {
            // A configured service port maps onto the first listening port only; the others keep their own number.
            var servicePort = i == 0 && o.ServicePort is { } sp ? (uint)sp : ports[i];
            announcement.Ports.Add(new WorkloadPort { Name = i == 0 ? "http" : $"http-{ports[i]}", TargetPort = ports[i], ServicePort = servicePort, Protocol = "http" });
        }

        return announcement;
    }

    public static IReadOnlyDictionary<string, string> EffectiveLabels(MeshOptions options)
    {
        var labels = new Dictionary<string, string>(options.Labels, StringComparer.Ordinal);
        labels.TryAdd("app", options.ServiceName);
        return labels;
    }

    private List<Uri> ListeningUris()
    {
        var server = services.GetService<IServer>();
        var addresses = server?.Features.Get<IServerAddressesFeature>()?.Addresses;
        var result = new List<Uri>();
        foreach (var address in addresses ?? [])
        {
            // Kestrel reports wildcards as http://[::]:80 or http://+:80; normalise to something Uri parses.
            var normalized = address.Replace("://+:", "://0.0.0.0:", StringComparison.Ordinal).Replace("://*:", "://0.0.0.0:", StringComparison.Ordinal);
            if (Uri.TryCreate(normalized, UriKind.Absolute, out var uri))
            {
                result.Add(uri);
            }
        }

        return result;
    }

    private static string HostToAnnounce(string host)
    {
        if (host is "localhost")
        {
            return "127.0.0.1";
        }

        var trimmed = host.Trim('[', ']');
        if (IPAddress.TryParse(trimmed, out var ip) && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)))
        {
            return MachineAddress();
        }

        return trimmed;
    }

    private static string MachineAddress()
    {
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus != OperationalStatus.Up || nic.NetworkInterfaceType == NetworkInterfaceType.Loopback)
            {
                continue;
            }

            foreach (var unicast in nic.GetIPProperties().UnicastAddresses)
            {
                if (unicast.Address.AddressFamily == AddressFamily.InterNetwork)
                {
                    return unicast.Address.ToString();
                }
            }
        }

        return IPAddress.Loopback.ToString();
    }
}
