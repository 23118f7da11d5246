
namespace MeshKit.Telemetry;

/// <summary>
/// What each side of a mesh call tells the other about itself, so both can report Istio's full label set (Istio's
/// proxies exchange the same in <c>x-envoy-peer-metadata</c>). It travels in the <see cref="Header"/> request and
/// response header, and is believed only when the peer's mutual TLS identity backs it: the header is removed
/// otherwise, and always before the application sees the request or response.
/// </summary>
internal sealed record PeerMetadata(string Workload, string Namespace, string App, string Version, string Service, string? CanonicalName = null, string? CanonicalRevisionName = null)
{
    /// <summary>
    /// The cluster Istio reports for a known peer (<c>source_cluster</c>, <c>destination_cluster</c>): Istio's default
    /// cluster ID. MeshKit's mesh is one cluster.
    /// </summary>
    public const string ClusterId = "Kubernetes";

    /// <summary>
    /// Gets Istio's canonical service (<c>*_canonical_service</c>, which Kiali groups by): the workload's
    /// <c>service.istio.io/canonical-name</c> or <c>app.kubernetes.io/name</c> label when it has one, else its app.
    /// </summary>
    public string CanonicalService => CanonicalName ?? App;

    /// <summary>
    /// Gets Istio's canonical revision (<c>*_canonical_revision</c>): the workload's
    /// <c>service.istio.io/canonical-revision</c> or <c>app.kubernetes.io/version</c> label when it has one, else its
    /// version, else <c>latest</c>, as Istio defaults it.
    /// </summary>
    public string CanonicalRevision => CanonicalRevisionName ?? (Version == "unknown" ? "latest" : Version);

    /// <summary>Gets the cluster label: <see cref="ClusterId"/>, or <c>unknown</c> for a peer that told nothing.</summary>
    public string Cluster => Workload == "unknown" ? "unknown" : ClusterId;

    /// <summary>The header that carries it.</summary>
    public const string Header = "x-meshkit-peer-metadata";

    /// <summary>Gets the metadata of a peer that told nothing (or could not be believed).</summary>
    public static PeerMetadata Unknown { get; } = new("unknown", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown");

    /// <summary>Gets the header value, computed once.</summary>
    public string Encoded => _encoded ??= string.Join(';', new[] { ("w", Workload), ("n", Namespace), ("a", App), ("v", Version), ("s", Service), ("cs", CanonicalName), ("cr", CanonicalRevisionName) }
        .Where(p => p.Item2 is not null) // the canonical names only when set apart from app and version (older peers skip the keys)
        .Select(p => p.Item1 + "=" + Uri.EscapeDataString(p.Item2!)));

    private string? _encoded;

    /// <summary>
    /// Gets the header value of a caller that records nothing about the server (no Istio metrics, no access log): the
    /// server then sends no metadata back. Callers without the field get it, so older workloads keep working.
    /// </summary>
    public string EncodedWithoutReply => _encodedWithoutReply ??= Encoded + ";" + NoReply;

    private string? _encodedWithoutReply;

    private const string NoReply = "r=0";

    /// <summary>Returns whether the caller that sent <paramref name="told"/> wants the server's metadata back.</summary>
    public static bool WantsReply(string? told) => told is null || !told.EndsWith(";" + NoReply, StringComparison.Ordinal);

    // A copy (`with`) takes the five fields, not the header texts cached from the original's values.
    private PeerMetadata(PeerMetadata original)
    {
        Workload = original.Workload;
        Namespace = original.Namespace;
        App = original.App;
        Version = original.Version;
        Service = original.Service;
        CanonicalName = original.CanonicalName;
        CanonicalRevisionName = original.CanonicalRevisionName;
    }

    /// <summary>Equal when the fields are: the cached header texts are not part of the value.</summary>
    public bool Equals(PeerMetadata? other) =>
        other is not null && Workload == other.Workload && Namespace == other.Namespace && App == other.App && Version == other.Version && Service == other.Service
        && CanonicalName == other.CanonicalName && CanonicalRevisionName == other.CanonicalRevisionName;

    public override int GetHashCode() => HashCode.Combine(Workload, Namespace, App, Version, Service, CanonicalName, CanonicalRevisionName);

    /// <summary>The workload name Istio reports: the app and version, as a Deployment would be named.</summary>
    public static PeerMetadata ForWorkload(string service, string ns, IReadOnlyDictionary<string, string> labels)
    {
        var app = labels.TryGetValue("app", out var a) ? a : service;
        var version = labels.TryGetValue("version", out var v) ? v : "unknown";
        var workload = version == "unknown" ? service : $"{service}-{version}";

        // Istio's canonical service and revision labels first (Kiali groups by them); app and version otherwise.
        var canonicalName = labels.TryGetValue("service.istio.io/canonical-name", out var cn) ? cn : labels.TryGetValue("app.kubernetes.io/name", out var kn) ? kn : null;
        var canonicalRevision = labels.TryGetValue("service.istio.io/canonical-revision", out var cr) ? cr : labels.TryGetValue("app.kubernetes.io/version", out var kv) ? kv : null;
        return new PeerMetadata(workload, ns, app, version, service, canonicalName, canonicalRevision);
    }

    public static PeerMetadata? Parse(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 1024)
        {
            return null;
        }

        string? w = null, n = null, a = null, v = null, s = null, cs = null, cr = null;
        foreach (var range in value.AsSpan().Split(';'))
        {
            var part = value.AsSpan(range);
            var eq = part.IndexOf('=');
            if (eq <= 0)
            {
                return null;
            }

            var key = part[..eq];
            if (key.Length > 2)
            {
                continue;
            }

            var start = range.Start.GetOffset(value.Length) + eq + 1;
            var raw = value[start..range.End.GetOffset(value.Length)];
            var text = Uri.UnescapeDataString(raw);
            switch (key)
            {
                case "w": w = text; break;
                case "n": n = text; break;
                case "a": a = text; break;
                case "v": v = text; break;
                case "s": s = text; break;
                case "cs": cs = text; break;
                case "cr": cr = text; break;
            }
        }

        return w is null || n is null ? null : new PeerMetadata(w, n, a ?? "unknown", v ?? "unknown", s ?? "unknown", cs, cr);
    }

    /// <summary>
    /// Parses <paramref name="value"/>, or returns what <paramref name="memo"/> holds when it is the value parsed last:
    /// a peer sends the same text on every request of a connection, so one parse serves them all. Equal texts give the
    /// same object whichever holder parsed them (up to <see cref="SharedLabels{T}.Capacity"/> texts).
    /// </summary>
    public static PeerMetadata? Parse(string? value, ref Memo? memo)
    {
        if (value is null)
        {
            return null;
        }

        if (Volatile.Read(ref memo) is { } last && string.Equals(last.Raw, value, StringComparison.Ordinal))
        {
            return last.Parsed;
        }

        // Another connection or endpoint may have parsed the same text: share its result (see SharedLabels).
        if (!SharedLabels<PeerMetadata>.TryGet(value, out var parsed))
        {
            parsed = Parse(value) is { } fresh ? SharedLabels<PeerMetadata>.Share(value, fresh) : null;
        }

        Volatile.Write(ref memo, new Memo(value, parsed));
        return parsed;
    }

    /// <summary>The last text parsed by a holder (a connection, an endpoint) and what it parsed to.</summary>
    internal sealed record Memo(string Raw, PeerMetadata? Parsed);
}

/// <summary>
/// What a caller's report says of a destination outside the registry (a call passed through, or refused): its host
/// text, one shared object per host, so that such reports carry the same label objects call after call, as resolved
/// destinations' do (the metrics store finds a series by them; a new object per call would render its labels per
/// call). Its service name is Envoy's cluster for such calls, as Istio reports it: <c>PassthroughCluster</c>, or
/// <c>BlackHoleCluster</c> under <c>REGISTRY_ONLY</c>.
/// </summary>
internal sealed class UnresolvedPeer(string host)
{
    private static readonly PeerMetadata Passthrough = PeerMetadata.Unknown with { Service = "PassthroughCluster" };
    private static readonly PeerMetadata BlackHole = PeerMetadata.Unknown with { Service = "BlackHoleCluster" };

    /// <summary>Gets the host as called: the <c>destination_service</c> label.</summary>
    public string Host { get; } = host;

    /// <summary>Returns the service label and metadata of <paramref name="host"/>, the host shared while there is room.</summary>
    public static (string Service, PeerMetadata Metadata) Of(string host, bool registryOnly)
    {
        var peer = SharedLabels<UnresolvedPeer>.TryGet(host, out var shared)
            ? shared
            : SharedLabels<UnresolvedPeer>.Share(host, new UnresolvedPeer(host));
        return (peer.Host, registryOnly ? BlackHole : Passthrough);
    }
}
