using System.Globalization;
using MeshKit.Config.Model;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Parsing;

// MeshConfig: mesh-wide settings and extension providers.
public static partial class ConfigParser
{
    private static IReadOnlyList<string> ReadTrustDomainAliases(MapReader s)
    {
        var aliases = s.Strings("trustDomainAliases");
        for (var i = 0; i < aliases.Count; i++)
        {
            if (!Names.IsDnsSubdomain(aliases[i]))
            {
                s.Context.Error(s.Get("trustDomainAliases"), $"{s.ChildPath("trustDomainAliases")}[{i}]", $"'{aliases[i]}' is not a valid trust domain");
            }
        }

        return aliases;
    }

    private static MeshConfigResource ReadMeshConfig(MapReader s, Header h)
    {
        var trustDomain = s.String("trustDomain");
        if (trustDomain is not null && !Names.IsDnsSubdomain(trustDomain))
        {
            s.Context.Error(s.Get("trustDomain"), s.ChildPath("trustDomain"), $"'{trustDomain}' is not a valid trust domain");
        }

        var root = s.String("rootNamespace");
        if (root is not null && !Names.IsDnsLabel(root))
        {
            s.Context.Error(s.Get("rootNamespace"), s.ChildPath("rootNamespace"), $"'{root}' is not a valid namespace");
        }

        var outbound = s.Map("outboundTrafficPolicy", o => new BoxedString(o.String("mode")))?.Value;
        if (outbound is not null && outbound is not ("ALLOW_ANY" or "REGISTRY_ONLY"))
        {
            s.Context.Error(s.Node, s.ChildPath("outboundTrafficPolicy.mode"), $"unknown mode '{outbound}'; expected ALLOW_ANY or REGISTRY_ONLY");
        }

        var normalization = s.Map("pathNormalization", n => new BoxedString(n.String("normalization")))?.Value;
        if (normalization is not null && normalization is not ("BASE" or "MERGE_SLASHES" or "DECODE_AND_MERGE_SLASHES" or "NONE" or "DEFAULT"))
        {
            s.Context.Error(s.Node, s.ChildPath("pathNormalization.normalization"), $"unknown normalization '{normalization}'; expected BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or NONE");
        }

        var clusterDomain = s.String("clusterDomain");
        if (clusterDomain is not null && !Names.IsDnsSubdomain(clusterDomain))
        {
            s.Context.Error(s.Get("clusterDomain"), s.ChildPath("clusterDomain"), $"'{clusterDomain}' is not a valid DNS suffix");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var providers = s.List("extensionProviders", p =>
        {
            var name = p.String("name", required: true);
            if (name is not null && !names.Add(name))
            {
                p.Context.Error(p.Get("name"), p.ChildPath("name"), $"another extension provider is named '{name}'");
            }

            var http = p.Map("envoyExtAuthzHttp", a => ReadExtAuthz(a, grpc: false));
            var grpc = p.Map("envoyExtAuthzGrpc", a => ReadExtAuthz(a, grpc: true));
            if (http is not null && grpc is not null)
            {
                p.Context.Error(p.Node, p.Path, "envoyExtAuthzHttp and envoyExtAuthzGrpc exclude each other");
            }

            http ??= grpc;
            foreach (var kind in TelemetryProviderKinds)
            {
                p.NotSupported(kind, DiagnosticSeverity.Warning, "MeshKit's spans, metrics and access logs go through the application's OpenTelemetry and ILogger setup (observability.md)");
            }

            return name is null || http is null ? null : http with { Name = name };
        });

        return Fill(new MeshConfigResource
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            TrustDomain = trustDomain, RootNamespace = root, OutboundTrafficPolicy = outbound, ClusterDomain = clusterDomain,
            PathNormalization = normalization == "DEFAULT" ? "BASE" : normalization, ExtensionProviders = providers,
            DefaultHttpRetryPolicy = s.Map("defaultHttpRetryPolicy", ReadRetries),
            EnableAutoMtls = s.Bool("enableAutoMtls"),
            LocalityLbSetting = s.Map("localityLbSetting", ReadLocality),
            TrustDomainAliases = ReadTrustDomainAliases(s),
            DefaultServiceExportTo = ReadExportTo(s, "defaultServiceExportTo"),
            DefaultVirtualServiceExportTo = ReadExportTo(s, "defaultVirtualServiceExportTo"),
            DefaultDestinationRuleExportTo = ReadExportTo(s, "defaultDestinationRuleExportTo"),
            ProxyHeaders = s.Map("defaultConfig", ReadDefaultConfig),
            DiscoverySelectors = s.List("discoverySelectors", ReadLabelSelector),
        }, h);
    }

    // A Kubernetes LabelSelector, validated as the API server validates one.
    private static LabelSelectorSpec ReadLabelSelector(MapReader l)
    {
        var labels = l.StringMap("matchLabels");
        foreach (var (key, value) in labels)
        {
            if (!Names.IsLabelKey(key) || !Names.IsLabelValue(value))
            {
                l.Context.Error(l.Get("matchLabels"), $"{l.ChildPath("matchLabels")}.{key}", $"'{key}: {value}' is not a valid label (a key of at most 63 characters, with an optional DNS prefix and '/', and a value of at most 63 characters: letters, digits, '-', '_', '.')");
            }
        }

        var expressions = l.List("matchExpressions", e =>
        {
            var key = e.String("key", required: true) ?? string.Empty;
            var op = e.String("operator", required: true) ?? string.Empty;
            var values = e.Strings("values");
            if (key.Length > 0 && !Names.IsLabelKey(key))
            {
                e.Context.Error(e.Get("key"), e.ChildPath("key"), $"'{key}' is not a valid label key");
            }

            if (op.Length > 0 && op is not ("In" or "NotIn" or "Exists" or "DoesNotExist"))
            {
                e.Context.Error(e.Get("operator"), e.ChildPath("operator"), $"unknown operator '{op}'; expected In, NotIn, Exists or DoesNotExist");
            }
            else if (op is "In" or "NotIn" && values.Count == 0)
            {
                e.Context.Error(e.Node, e.ChildPath("values"), $"{op} needs at least one value");
            }
            else if (op is "Exists" or "DoesNotExist" && values.Count > 0)
            {
                e.Context.Error(e.Get("values"), e.ChildPath("values"), $"{op} takes no values");
            }

            return new LabelRequirementSpec(key, op, values);
        });
        return new LabelSelectorSpec { MatchLabels = labels, MatchExpressions = expressions };
    }

    // defaultConfig is Istio's ProxyConfig, the settings of each sidecar: of it only the headers a proxy adds apply to an
    // in-process mesh; the rest set up a proxy process that MeshKit does not run, and are reported as ignored.
    private static ProxyHeadersSpec? ReadDefaultConfig(MapReader c)
    {
        var headers = c.Map("proxyHeaders", ReadProxyHeaders);
        foreach (var key in c.Node.Children.Keys.OfType<YamlDotNet.RepresentationModel.YamlScalarNode>().Select(k => k.Value).OfType<string>().Where(k => k != "proxyHeaders").ToArray())
        {
            c.NotSupported(key, DiagnosticSeverity.Warning, "a setting of the sidecar proxy process, which MeshKit does not run (of defaultConfig only proxyHeaders applies)");
        }

        return headers;
    }

    private static ProxyHeadersSpec ReadProxyHeaders(MapReader p)
    {
        bool Disabled(string key) => p.Map(key, d => new BoxedBool(d.Bool("disabled") ?? false))?.Value ?? false;

        var forwarded = p.String("forwardedClientCert");
        if (forwarded is "FORWARD_ONLY" or "ALWAYS_FORWARD_ONLY")
        {
            p.Context.Error(p.Get("forwardedClientCert"), p.ChildPath("forwardedClientCert"), $"{forwarded} is not supported by MeshKit: it would hand the application the caller's own claim of who it is; the application is told the verified caller's certificate (SANITIZE_SET, APPEND_FORWARD) or nothing (SANITIZE)");
        }
        else if (forwarded is not (null or "SANITIZE" or "SANITIZE_SET" or "APPEND_FORWARD" or "UNDEFINED"))
        {
            p.Context.Error(p.Get("forwardedClientCert"), p.ChildPath("forwardedClientCert"), $"unknown mode '{forwarded}'; expected SANITIZE, SANITIZE_SET or APPEND_FORWARD");
        }

        var exchange = p.Map("metadataExchangeHeaders", m => new BoxedString(m.String("mode")))?.Value;
        if (exchange is not (null or "IN_MESH"))
        {
            p.Context.Warning(p.Get("metadataExchangeHeaders"), p.ChildPath("metadataExchangeHeaders.mode"), exchange == "UNDEFINED"
                ? "MeshKit exchanges peer metadata with mesh workloads only, over mutual TLS, whatever the mode (IN_MESH)"
                : $"unknown mode '{exchange}'; expected IN_MESH or UNDEFINED");
        }

        p.NotSupported("server", DiagnosticSeverity.Warning, "the application's server names itself in its responses (Kestrel: KestrelServerOptions.AddServerHeader)");
        p.NotSupported("setCurrentClientCertDetails", DiagnosticSeverity.Error, "x-forwarded-client-cert carries By, Hash, Subject, URI and DNS, as Istio's default details");
        p.NotSupported("preserveHttp1HeaderCase", DiagnosticSeverity.Warning, "HttpClient sends header names as the application wrote them; Kestrel gives the application known names in their standard case");
        return new ProxyHeadersSpec
        {
            RequestIdDisabled = Disabled("requestId"),
            AttemptCountDisabled = Disabled("attemptCount"),
            EnvoyDebugHeadersDisabled = Disabled("envoyDebugHeaders"),
            ForwardedClientCert = forwarded is "UNDEFINED" ? null : forwarded,
        };
    }

    private static readonly string[] TelemetryProviderKinds =
    [
        "zipkin", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking", "opentelemetry", "prometheus",
        "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls", "envoyOtelAls",
    ];

    // envoyExtAuthzHttp and envoyExtAuthzGrpc: the gRPC one has the common fields only (the service decides which
    // headers go where), and its reader reports the HTTP-only ones as unknown fields.
    private static ExtAuthzProviderSpec ReadExtAuthz(MapReader a, bool grpc)
    {
        // "[namespace/]host": the namespace only disambiguates; MeshKit resolves hosts by name.
        var service = a.String("service", required: true) ?? string.Empty;
        var host = service.Contains('/', StringComparison.Ordinal) ? service[(service.IndexOf('/', StringComparison.Ordinal) + 1)..] : service;
        if (host.Length > 0)
        {
            ValidateHostName(a, a.ChildPath("service"), host, allowWildcard: false);
        }

        var port = a.UInt("port", 1, 65535);
        if (port is null && !a.Has("port"))
        {
            a.Context.Error(a.Node, a.ChildPath("port"), "is required");
        }

        var prefix = grpc ? null : a.String("pathPrefix");
        if (prefix is not null && !prefix.StartsWith('/'))
        {
            a.Context.Error(a.Get("pathPrefix"), a.ChildPath("pathPrefix"), $"'{prefix}' must start with '/'");
        }

        int? status = null;
        if (a.String("statusOnError") is { } statusText)
        {
            if (int.TryParse(statusText, NumberStyles.None, CultureInfo.InvariantCulture, out var code) && code is >= 200 and <= 599)
            {
                status = code;
            }
            else
            {
                a.Context.Error(a.Get("statusOnError"), a.ChildPath("statusOnError"), $"'{statusText}' is not an HTTP status between 200 and 599");
            }
        }

        var packAsBytes = false;
        var body = a.Map("includeRequestBodyInCheck", b =>
        {
            if (grpc)
            {
                packAsBytes = b.Bool("packAsBytes") ?? false;
            }
            else
            {
                b.NotSupported("packAsBytes", DiagnosticSeverity.Warning, "it applies to the gRPC protocol only");
            }

            return new CheckBodyBox(b.UInt("maxRequestBytes", 1, int.MaxValue) ?? 0, b.Bool("allowPartialMessage") ?? false);
        });
        if (body is { Max: 0 })
        {
            a.Context.Error(a.Get("includeRequestBodyInCheck"), a.ChildPath("includeRequestBodyInCheck.maxRequestBytes"), "is required");
        }

        if (grpc)
        {
            return new ExtAuthzProviderSpec
            {
                Name = string.Empty, Grpc = true, Service = host, Port = port ?? 0, Timeout = a.TimerDuration("timeout"),
                FailOpen = a.Bool("failOpen") ?? false, StatusOnError = status,
                MaxRequestBytes = body is { Max: > 0 } ? body.Max : null, AllowPartialMessage = body?.AllowPartial ?? false, PackAsBytes = packAsBytes,
            };
        }

        return new ExtAuthzProviderSpec
        {
            Name = string.Empty,
            Service = host,
            Port = port ?? 0,
            Timeout = a.TimerDuration("timeout"),
            PathPrefix = prefix,
            FailOpen = a.Bool("failOpen") ?? false,
            StatusOnError = status,
            IncludeRequestHeadersInCheck = [.. a.Strings("includeRequestHeadersInCheck"), .. a.Strings("includeHeadersInCheck")],
            IncludeAdditionalHeadersInCheck = a.StringMap("includeAdditionalHeadersInCheck"),
            MaxRequestBytes = body is { Max: > 0 } ? body.Max : null,
            AllowPartialMessage = body?.AllowPartial ?? false,
            HeadersToUpstreamOnAllow = a.Strings("headersToUpstreamOnAllow"),
            HeadersToDownstreamOnDeny = a.Strings("headersToDownstreamOnDeny"),
            HeadersToDownstreamOnAllow = a.Strings("headersToDownstreamOnAllow"),
        };
    }

    private sealed record CheckBodyBox(uint Max, bool AllowPartial);
}
