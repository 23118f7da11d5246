namespace MeshKit.ControlPlane;

/// <summary>Settings of the control plane, bound from the <c>ControlPlane</c> configuration section.</summary>
public sealed class ControlPlaneOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "ControlPlane";

    /// <summary>
    /// Gets or sets where configuration and registrations live: <c>directory</c> (default: the config directory and an
    /// in-memory registry, one control plane) or <c>etcd</c> (shared by several replicas; see <see cref="EtcdEndpoints"/>).
    /// </summary>
    public string Store { get; set; } = "directory";

    /// <summary>Gets or sets the etcd client URLs, comma-separated (e.g. <c>http://10.0.0.1:2379,http://10.0.0.2:2379</c>).</summary>
    public string EtcdEndpoints { get; set; } = "http://127.0.0.1:2379";

    /// <summary>Gets or sets the key prefix of every MeshKit key in etcd, so several meshes can share one cluster. Default: <c>/meshkit</c>.</summary>
    public string EtcdPrefix { get; set; } = "/meshkit";

    /// <summary>
    /// Gets or sets the TTL of a replica's registry lease: how long the workloads of a replica that died stay
    /// registered while they reconnect to another one. Default: 10 s (etcd's minimum applies).
    /// </summary>
    public TimeSpan EtcdLeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Gets or sets whether, with the etcd store, the files of <see cref="ConfigDirectory"/> are imported into etcd (and
    /// removed from it with their files). Enable it on one replica, or on all if they mount the same directory.
    /// </summary>
    public bool EtcdImportDirectory { get; set; }

    /// <summary>
    /// Gets or sets the passphrase the CA's private keys are encrypted with in etcd (required with the etcd store; the
    /// same on every replica). Prefer the environment (<c>MESHKIT_ControlPlane__CaKeyPassphrase</c>) to the command line.
    /// </summary>
    public string CaKeyPassphrase { get; set; } = string.Empty;

    /// <summary>Gets whether the etcd store is selected.</summary>
    internal bool UsesEtcd => string.Equals(Store, "etcd", StringComparison.OrdinalIgnoreCase);

    /// <summary>Gets or sets the directory of YAML configuration files (watched and hot-reloaded). Default: <c>./mesh-config</c>.</summary>
    public string ConfigDirectory { get; set; } = "mesh-config";

    /// <summary>Gets or sets the discovery (gRPC, HTTP/2) listen URL. Default: <c>http://127.0.0.1:15010</c>.</summary>
    public string Listen { get; set; } = "http://127.0.0.1:15010";

    /// <summary>
    /// Gets or sets the TLS listen URL (gRPC, HTTP/2): certificate signing and discovery authenticated by workload
    /// certificates. Empty disables it. Default: <c>https://127.0.0.1:15012</c>.
    /// </summary>
    public string SecureListen { get; set; } = "https://127.0.0.1:15012";

    /// <summary>Gets or sets the trust domain of every identity the CA issues. Default: <c>cluster.local</c>.</summary>
    public string TrustDomain { get; set; } = "cluster.local";

    /// <summary>
    /// Gets or sets the directory of the CA files (generated root or plugged-in CA, token key). Empty: the user's local
    /// application data folder, <c>meshkit/ca</c>.
    /// </summary>
    public string CaDirectory { get; set; } = string.Empty;

    /// <summary>Gets or sets the lifetime of workload certificates when the workload asks for none. Default: 24 h.</summary>
    public TimeSpan WorkloadCertificateTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Gets or sets the longest lifetime a workload may ask for. Default: 90 days.</summary>
    public TimeSpan MaxWorkloadCertificateTtl { get; set; } = TimeSpan.FromDays(90);

    /// <summary>Gets the extra DNS names and IP addresses of the control plane's serving certificate (loopback is always in it).</summary>
    public IList<string> ServingNames { get; } = [];

    /// <summary>Gets or sets how often the JWKS of RequestAuthentication <c>jwksUri</c>s are fetched again. Default: 20 min.</summary>
    public TimeSpan JwksRefreshInterval { get; set; } = TimeSpan.FromMinutes(20);

    /// <summary>
    /// Gets or sets whether a <c>jwksUri</c> may resolve to a loopback or link-local address (the control plane's own
    /// host, cloud metadata). Default: false.
    /// </summary>
    public bool AllowLocalJwksUris { get; set; }

    /// <summary>
    /// Gets or sets a bearer token the admin port requires (except <c>/healthz</c>); empty: none, the admin port is
    /// protected by where it listens (loopback by default).
    /// </summary>
    public string AdminToken { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets the issuer (<c>iss</c>) of the Kubernetes service-account tokens the CA takes for a first
    /// certificate, as istiod takes them: a pod's projected token, bound to one of <see cref="KubernetesTokenAudiences"/>
    /// and verified with the keys of <see cref="KubernetesTokenJwksFile"/>, gets the identity of its namespace and
    /// service account, with no join token. The cluster's issuer is what
    /// <c>kubectl get --raw /.well-known/openid-configuration</c> names (often
    /// <c>https://kubernetes.default.svc.cluster.local</c>). Empty (the default): only join tokens.
    /// </summary>
    public string KubernetesTokenIssuer { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets a file holding the cluster's service-account signing keys as a JSON Web Key Set
    /// (<c>kubectl get --raw /openid/v1/jwks</c>, mounted from a ConfigMap); read at each first certificate, so an
    /// update applies at once. With <see cref="KubernetesTokenIssuer"/>, this or <see cref="KubernetesTokenJwksUri"/> is required.
    /// </summary>
    public string KubernetesTokenJwksFile { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets where to fetch the cluster's service-account signing keys instead of a file: the API server's
    /// <c>https://kubernetes.default.svc/openid/v1/jwks</c> in a cluster (fetched with the control plane's own token,
    /// <see cref="KubernetesApiTokenFile"/>, trusting <see cref="KubernetesApiCaFile"/>), or a cloud issuer's public
    /// JWKS URL. Kept for five minutes; a token signed by a key the set lacks fetches it again. Default: none.
    /// </summary>
    public string KubernetesTokenJwksUri { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets the Kubernetes API server whose resources the control plane reads, as istiod does: Services and
    /// EndpointSlices, and the Istio and Gateway API resources MeshKit reads from files (listed, then watched; in force
    /// beside the config folder's or etcd's). <c>in-cluster</c>: the cluster the control plane's pod runs in; a URL:
    /// that server (<c>http://127.0.0.1:8001</c> for <c>kubectl proxy</c>). Sent <see cref="KubernetesApiTokenFile"/>,
    /// trusting <see cref="KubernetesApiCaFile"/>. Default: none (the cluster is not read).
    /// </summary>
    public string KubernetesApiServer { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets whether, when the control plane reads the cluster (<see cref="KubernetesApiServer"/>), each
    /// service-account token presented for a first certificate is reviewed by the API server (a <c>TokenReview</c>, as
    /// istiod does), which refuses the token of a pod or service account that was deleted. Without
    /// <see cref="KubernetesTokenIssuer"/> the review alone decides (no keys to configure); with it, a token is checked
    /// offline first and reviewed only once it verifies. The control plane's role needs <c>create</c> on
    /// <c>tokenreviews</c> (<c>authentication.k8s.io</c>). Default: true.
    /// </summary>
    public bool KubernetesTokenReview { get; set; } = true;

    /// <summary>
    /// Gets the namespaces whose resources <see cref="KubernetesApiServer"/> is read for, each listed and watched on its
    /// own, so that a Role in each of them is all the control plane needs (a multi-tenant cluster, least privilege).
    /// Empty: every namespace (a ClusterRole).
    /// </summary>
    public IList<string> KubernetesNamespaces { get; } = [];

    /// <summary>
    /// Gets or sets the ConfigMap the control plane keeps the mesh's roots in (key <c>root-cert.pem</c>), in every
    /// namespace it reads from <see cref="KubernetesApiServer"/> but Kubernetes' own, as istiod keeps
    /// <c>istio-ca-root-cert</c>: what pods mount to trust the control plane (<c>Mesh:RootCertificateFile</c>). Empty:
    /// none is written. Default: <c>meshkit-root-cert</c>.
    /// </summary>
    public string KubernetesRootCertConfigMap { get; set; } = "meshkit-root-cert";

    /// <summary>
    /// Gets or sets whether the control plane writes the status of the cluster's HTTPRoutes and GRPCRoutes attached to
    /// Services (their <c>Accepted</c> and <c>ResolvedRefs</c> conditions for each such parent), as Gateway API requires
    /// and Istio does. Needs <c>patch</c> on <c>httproutes/status</c> and <c>grpcroutes/status</c>. Default: true.
    /// </summary>
    public bool KubernetesRouteStatus { get; set; } = true;

    /// <summary>
    /// Gets or sets how often the root ConfigMaps are checked and set right (a new namespace, a deleted or edited
    /// ConfigMap): two lists (the namespaces, and the ConfigMaps of that name), and a write only where one is missing or
    /// differs. Short, since a pod that mounts the ConfigMap in a new namespace waits for it. Default: 10 seconds.
    /// </summary>
    public TimeSpan KubernetesRootCertResync { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the control plane's own service-account token, sent to the API server (<see cref="KubernetesApiServer"/>, <see cref="KubernetesTokenJwksUri"/>) when the file exists. Default: the pod's mounted token.</summary>
    public string KubernetesApiTokenFile { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount/token";

    /// <summary>Gets or sets the CA that alone vouches for the API server (<see cref="KubernetesApiServer"/>, <see cref="KubernetesTokenJwksUri"/>'s server) when the file exists (else the machine's roots). Default: the pod's mounted cluster CA.</summary>
    public string KubernetesApiCaFile { get; set; } = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

    /// <summary>Gets the audiences a service-account token must be bound to (one of them). Empty: <c>istio-ca</c>, as Istio's sidecars ask for.</summary>
    public IList<string> KubernetesTokenAudiences { get; } = [];

    /// <summary>
    /// Gets or sets whether <c>/metrics</c> on the admin port is served without the <see cref="AdminToken"/>, as istiod
    /// serves its metrics on its monitoring port, for a scraper that sends no credentials (Prometheus' pod annotations,
    /// a ServiceMonitor without a secret). The metrics count pushes, workloads and versions; they name no workload and
    /// no configuration. Default: false (the token guards them as the rest of the admin port).
    /// </summary>
    public bool AnonymousMetrics { get; set; }

    /// <summary>Gets or sets the admin (HTTP/1.1 debug and health) listen URL; empty disables it. Default: <c>http://127.0.0.1:15014</c>.</summary>
    public string AdminListen { get; set; } = "http://127.0.0.1:15014";

    /// <summary>Gets or sets how long the control plane waits for quiet before pushing a change. Default: 100 ms.</summary>
    public TimeSpan Debounce { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Gets or sets the longest a change waits while changes keep arriving. Default: 1 s.</summary>
    public TimeSpan MaxDebounce { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Gets or sets how many discovery responses are written at once, across all streams (Istio's
    /// <c>PILOT_PUSH_THROTTLE</c>). A response waits in the server's buffers until the workload reads it, so this bounds
    /// the memory a push to a large fleet takes (a full view to every workload of a cold-starting fleet would
    /// otherwise be buffered all at once). Default: 100.
    /// </summary>
    public int PushConcurrency { get; set; } = 100;

    /// <summary>
    /// Gets or sets how long a workload whose stream broke (rather than closed cleanly) stays registered, so that a
    /// reconnect does not churn its endpoints. Default: 10 s.
    /// </summary>
    public TimeSpan RegistrationGrace { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Gets or sets how long after start the control plane collects reconnecting workloads before its first push, so
    /// that a restarted control plane never pushes a registry that is still filling up. Default: 3 s.
    /// </summary>
    public TimeSpan StartupSyncDelay { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Gets or sets how often the config directory is rescanned besides file-system notifications. Default: 2 s.</summary>
    public TimeSpan ConfigPollInterval { get; set; } = TimeSpan.FromSeconds(2);
}
