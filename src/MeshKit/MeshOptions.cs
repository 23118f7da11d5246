using System.ComponentModel.DataAnnotations;

namespace MeshKit;

/// <summary>
/// Settings of a workload in the mesh, bound from the <c>Mesh</c> configuration section and/or set by the delegate
/// passed to <c>AddMesh</c>. Validated when the host starts.
/// </summary>
public sealed class MeshOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "Mesh";

    /// <summary>Gets or sets the service this workload is an instance of, e.g. <c>reviews</c>. Required.</summary>
    [Required]
    public string ServiceName { get; set; } = string.Empty;

    /// <summary>Gets or sets the namespace. Default: <c>default</c>.</summary>
    public string Namespace { get; set; } = "default";

    /// <summary>Gets or sets the service account (the identity the workload runs as). Default: <c>default</c>.</summary>
    public string ServiceAccount { get; set; } = "default";

    /// <summary>Gets the workload's labels (subsets and policies select on them). <c>app</c> defaults to <see cref="ServiceName"/>.</summary>
    public IDictionary<string, string> Labels { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Gets or sets the control plane's discovery URL, e.g. <c>http://127.0.0.1:15010</c>. Null for static mode only.</summary>
    public Uri? ControlPlaneAddress { get; set; }

    /// <summary>
    /// Gets the URLs of further control-plane replicas (same scheme as <see cref="ControlPlaneAddress"/>). The workload
    /// starts on a random one of all of them, so workloads spread over the replicas, and moves to the next when its
    /// stream or a certificate request fails, resuming from the config it holds. One DNS name with several addresses
    /// works too: the connection tries them in turn.
    /// </summary>
    public IList<Uri> ControlPlaneAddresses { get; } = [];

    /// <summary>
    /// Gets or sets a YAML file (ServiceEntry, VirtualService, DestinationRule, MeshConfig) to run from without a control
    /// plane ("static mode"), or to serve from until the control plane has answered. Watched for changes. Default: none.
    /// </summary>
    public string? ConfigFile { get; set; }

    /// <summary>Gets or sets the locality as <c>region/zone/subzone</c>. Default: none (or the pod's, <see cref="PodInfoDirectory"/>).</summary>
    public string? Locality { get; set; }

    /// <summary>
    /// Gets or sets the folder of a Kubernetes downward API volume holding the pod's <c>labels</c> (required there) and,
    /// when the volume maps it, its <c>namespace</c>: read at start, they give the workload what a sidecar learns from
    /// its pod. The pod's labels join <see cref="Labels"/> (a label set there wins); without <see cref="ServiceName"/>,
    /// the service is Istio's canonical name of the pod (label <c>service.istio.io/canonical-name</c>, else
    /// <c>app.kubernetes.io/name</c>, else <c>app</c>); without <see cref="Locality"/>, the locality is Istio's label
    /// <c>topology.istio.io/locality</c> or <c>istio-locality</c> (<c>region.zone.subzone</c>), else the pod's <c>topology.kubernetes.io/region</c>,
    /// <c>topology.kubernetes.io/zone</c> and <c>topology.istio.io/subzone</c> labels; with <see cref="Namespace"/> left
    /// at <c>default</c>, the namespace is the pod's. Default: none.
    /// </summary>
    public string? PodInfoDirectory { get; set; }

    /// <summary>What reading <see cref="PodInfoDirectory"/> found wrong, reported when the options are validated.</summary>
    internal List<string> PodInfoErrors { get; } = [];

    /// <summary>
    /// Gets or sets the address other workloads reach this one on. Default: the host of the first address Kestrel
    /// listens on (a wildcard becomes the machine's first non-loopback IPv4 address).
    /// </summary>
    public string? Address { get; set; }

    /// <summary>
    /// Gets or sets the port callers use for this service (like a Kubernetes Service port), mapped to the port Kestrel
    /// listens on. Default: the listening port itself.
    /// </summary>
    [Range(1, 65535)]
    public int? ServicePort { get; set; }

    /// <summary>
    /// Gets or sets how long outbound calls wait for the first configuration before failing fast with 503.
    /// Default: 10 s.
    /// </summary>
    public TimeSpan InitialFetchTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the first reconnect delay to the control plane (exponential, full jitter). Default: 200 ms.</summary>
    public TimeSpan ReconnectBaseDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Gets or sets the longest reconnect delay. Default: 5 s.</summary>
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Gets or sets the largest request body (by its Content-Length) buffered so that a retry or a mirror can send it
    /// again; a larger or unsized body is sent once and not mirrored. Default: 1 MiB.
    /// </summary>
    public long MaxRetryBufferBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets how long a stopping workload keeps serving after it left the registry, so that callers converge
    /// before it stops listening (as Istio's <c>terminationDrainDuration</c>). Default: 3 s.
    /// </summary>
    public TimeSpan DrainDuration { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Gets or sets the join token that gets this workload its first certificate (<c>meshctl token create</c>).
    /// Needed when <see cref="ControlPlaneAddress"/> is an <c>https://</c> URL, unless <see cref="JoinTokenFile"/> is set.
    /// Renewals never use it.
    /// </summary>
    public string? JoinToken { get; set; }

    /// <summary>Gets or sets a file holding the join token (a mounted secret, for instance); read at start.</summary>
    public string? JoinTokenFile { get; set; }

    /// <summary>
    /// Gets or sets a file holding the pod's Kubernetes service-account token (a projected token of audience
    /// <c>istio-ca</c>, which the kubelet rotates), presented for the first certificate instead of a join token when
    /// the control plane trusts the cluster's tokens (<c>ControlPlane:KubernetesTokenIssuer</c>); the token names
    /// <see cref="Namespace"/> and <see cref="ServiceAccount"/>. Needs <see cref="RootCertificateFile"/>. Read at each
    /// first-certificate attempt. Default: none.
    /// </summary>
    public string? ServiceAccountTokenFile { get; set; }

    /// <summary>
    /// Gets or sets a PEM file of the mesh's root certificate (or roots): the control plane must show one of them
    /// before a service-account token is sent to it (a join token carries that pin itself). On Kubernetes, a ConfigMap
    /// of the CA's <c>root-cert.pem</c>, as Istio's <c>istio-ca-root-cert</c>. Default: none.
    /// </summary>
    public string? RootCertificateFile { get; set; }

    /// <summary>
    /// Gets or sets the certificate lifetime to ask for; null takes the control plane's default (24 h). The certificate
    /// is renewed at half its lifetime.
    /// </summary>
    public TimeSpan? CertificateLifetime { get; set; }

    /// <summary>Gets whether the workload gets a mesh certificate: its control plane address is <c>https://</c>.</summary>
    public bool IsSecure => ControlPlaneAddress is { Scheme: "https" };

    /// <summary>
    /// Gets or sets the share of outbound requests that get an access-log entry (category <c>MeshKit.AccessLog</c>, at
    /// Information), between 0 and 1. Default: 1 (every request, when the category is enabled).
    /// </summary>
    public double AccessLogSampling { get; set; } = 1.0;

    /// <summary>
    /// Gets or sets whether a request without an <c>x-request-id</c> header gets one (a random UUID) as it leaves through
    /// the mesh handler or enters through the mesh middleware, as Envoy's sidecars do (<c>generate_request_id</c>): the
    /// application, the access log and the CEL attribute <c>request.id</c> see it, and a service that forwards it ties a
    /// request's calls together. A request that has one keeps it. Default: true.
    /// </summary>
    public bool GenerateRequestId { get; set; } = true;

    /// <summary>
    /// Gets or sets how many proxies in front of this workload append to <c>X-Forwarded-For</c> and are trusted to
    /// (Istio's <c>gatewayTopology.numTrustedProxies</c>, Envoy's <c>xff_num_trusted_hops</c>): with N above 0, the
    /// client's address is the Nth address from the right of <c>X-Forwarded-For</c> (the peer's own when the header
    /// has fewer, or that entry is not an IP address), and an AuthorizationPolicy's <c>remoteIpBlocks</c> and
    /// <c>remote.ip</c> are matched against it; <c>ipBlocks</c> and <c>source.ip</c> stay the peer's. Set it on a
    /// workload behind load balancers or ingress proxies that append the client's address. Default: 0 (the header is
    /// not trusted: anyone can write it).
    /// </summary>
    public int NumTrustedProxies { get; set; }

    /// <summary>
    /// Gets the addresses and CIDR ranges (<c>10.0.0.0/8</c>) of load balancers that start each connection to this
    /// workload with a PROXY protocol header (versions 1 and 2; AWS NLB, HAProxy's <c>send-proxy</c>, nginx's
    /// <c>proxy_protocol</c>), as Istio's <c>gatewayTopology.proxyProtocol</c> has a gateway read it. A connection from
    /// one of them must start with a valid header, read before TLS and HTTP, or it is closed; the client it names becomes
    /// the connection's remote address (what the application sees, and <c>remoteIpBlocks</c> and <c>remote.ip</c>), while
    /// <c>ipBlocks</c> and <c>source.ip</c> keep the load balancer's. Connections from anyone else are not read for a
    /// header. Default: empty (no header is read).
    /// </summary>
    public IList<string> ProxyProtocolFrom { get; } = new List<string>();
}
