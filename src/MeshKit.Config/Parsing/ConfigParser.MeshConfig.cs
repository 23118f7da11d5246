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
        }, h);
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
