using System.Text.RegularExpressions;
using MeshKit.Config.Model;
using YamlDotNet.RepresentationModel;

namespace MeshKit.Config.Parsing;

// DestinationRule (networking.istio.io): traffic policies, subsets, load balancers, connection pools, outlier detection, TLS.
public static partial class ConfigParser
{
    private static DestinationRule ReadDestinationRule(MapReader s, Header h)
    {
        var host = s.String("host", required: true) ?? string.Empty;
        if (host.Length > 0)
        {
            ValidateRouteHost(s, s.ChildPath("host"), host);
        }

        var policy = s.Map("trafficPolicy", ReadTrafficPolicy);
        var subsets = s.List("subsets", ReadSubset);
        if (s.Get("subsets") is YamlSequenceNode items)
        {
            // Reported where the second one is named (the parsed list skips entries that failed, so it is not indexed).
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < items.Children.Count; i++)
            {
                if (items.Children[i] is YamlMappingNode item && item.Children.TryGetValue(new YamlScalarNode("name"), out var named)
                    && named is YamlScalarNode { Value: { } name } && !seen.Add(name))
                {
                    s.Context.Error(named, $"{s.ChildPath("subsets")}[{i}].name", $"duplicate subset name '{name}'");
                }
            }
        }

        var exportTo = ReadExportTo(s);
        var selector = s.Map("workloadSelector", ReadMatchLabels);
        return Fill(new DestinationRule
        {
            Kind = h.Kind, ApiVersion = h.ApiVersion, Name = h.Metadata.Name, Namespace = h.Metadata.Namespace,
            Host = host, TrafficPolicy = policy, Subsets = subsets, ExportTo = exportTo, WorkloadSelector = selector,
        }, h);
    }

    private static TrafficPolicy ReadTrafficPolicy(MapReader t) => ReadTrafficPolicyCore(t, allowPortLevel: true);

    private static TrafficPolicy ReadTrafficPolicyCore(MapReader t, bool allowPortLevel)
    {
        // As Istio validates: a policy (and a connection pool) names at least one setting; a port-level entry
        // at least one besides its port.
        if (t.Node is YamlMappingNode map && map.Children.All(c => c.Key is YamlScalarNode { Value: "port" }))
        {
            t.Context.Error(t.Node, t.Path, allowPortLevel ? "a traffic policy needs at least one setting (as in Istio)" : "a port-level setting needs at least one setting besides its port (as in Istio)");
        }

        ConsistentHashSpec? hash = null;
        WarmupSpec? warmup = null;
        LocalityLbSpec? locality = null;
        var lb = t.Map("loadBalancer", l =>
        {
            var simple = l.String("simple");
            if (simple is not null && !LoadBalancers.Contains(simple))
            {
                l.Context.Error(l.Get("simple"), l.ChildPath("simple"), $"unknown load balancer '{simple}'; expected one of {string.Join(", ", LoadBalancers)}");
            }

            hash = l.Map("consistentHash", ReadConsistentHash);
            if (simple is not null && hash is not null)
            {
                l.Context.Error(l.Node, l.Path, "simple and consistentHash exclude each other");
            }

            locality = l.Map("localityLbSetting", ReadLocality);
            var legacyWarmup = l.Duration("warmupDurationSecs");
            warmup = l.Map("warmup", w =>
            {
                var duration = w.TimerDuration("duration");
                if (duration is null && !w.Has("duration"))
                {
                    w.Context.Error(w.Node, w.ChildPath("duration"), "is required");
                }

                var minimum = w.Map("minimumPercent", m => new PercentBox(m.Double("value", 0, 100)))?.Value ?? 10;
                var aggression = w.Map("aggression", a => new PercentBox(a.Double("value", 1, 100)))?.Value ?? 1;
                return new WarmupSpec(duration ?? TimeSpan.Zero, minimum, aggression);
            });
            if (legacyWarmup is { } legacy)
            {
                warmup ??= new WarmupSpec(legacy, 10, 1);
            }

            if (warmup is not null && (hash is not null || simple is "RANDOM" or "PASSTHROUGH"))
            {
                l.Context.Error(l.Node, l.Path, "warmup applies to ROUND_ROBIN and LEAST_REQUEST only");
            }

            return new BoxedString(simple);
        });
        var pool = t.Map("connectionPool", ReadConnectionPool);
        if (t.Get("connectionPool") is YamlMappingNode { Children.Count: 0 } emptyPool)
        {
            t.Context.Error(emptyPool, t.ChildPath("connectionPool"), "needs tcp or http settings (as in Istio)");
        }

        var outlier = t.Map("outlierDetection", ReadOutlierDetection);
        var tls = t.Map("tls", ReadClientTls);
        // Istio's PortTrafficPolicy has loadBalancer, connectionPool, outlierDetection and tls only: the rest is an
        // unknown field there.
        var budget = allowPortLevel ? t.Map("retryBudget", b => new RetryBudgetSpec(b.Double("percent", 0, 100), b.Int("minRetryConcurrency", 0, int.MaxValue))) : null;
        var seenPorts = new HashSet<uint>();
        var ports = allowPortLevel ? t.List("portLevelSettings", p =>
        {
            var port = p.Map("port", n => new PortBox(n.UInt("number", 1, 65535)))?.Number;
            if (port is null)
            {
                p.Context.Error(p.Node, p.ChildPath("port.number"), "is required");
            }
            else if (!seenPorts.Add(port.Value))
            {
                p.Context.Error(p.Get("port"), p.ChildPath("port.number"), $"port {port} has an earlier entry in portLevelSettings");
            }

            var policy = ReadTrafficPolicyCore(p, allowPortLevel: false);
            return port is null ? null : new PortTrafficPolicy(port.Value, policy);
        }) : [];
        if (tls is not null)
        {
            var tlsNode = t.Get("tls");
            var tlsPath = t.ChildPath("tls");
            if (tls.Mode is "SIMPLE" or "MUTUAL")
            {
                if (tls.CredentialName is not null)
                {
                    t.Context.Error(tlsNode, tlsPath + ".credentialName", "credentialName (a Kubernetes secret) is not supported; give clientCertificate, privateKey and caCertificates as files on the calling workload");
                }
            }
            else if (tls.Sni is not null || tls.SubjectAltNames.Count > 0 || tls.ClientCertificate is not null || tls.PrivateKey is not null || tls.CaCertificates is not null || tls.CaCrl is not null || tls.CredentialName is not null || tls.InsecureSkipVerify is not null)
            {
                t.Context.Warning(tlsNode, tlsPath, $"with {tls.Mode}, sni, subjectAltNames, certificate and revocation files, credentialName and insecureSkipVerify are not used and are ignored: a mesh peer must prove the identity it registered with");
            }
        }

        // Like retryBudget, proxyProtocol and tunnel are not fields of a port-level setting.
        var proxyProtocol = allowPortLevel ? t.Map("proxyProtocol", ReadProxyProtocol) : null;
        if (allowPortLevel)
        {
            t.Map("tunnel", ReadTunnel);
        }

        var simpleLb = lb?.Value;
        return new TrafficPolicy(simpleLb == "LEAST_CONN" ? "LEAST_REQUEST" : simpleLb == "UNSPECIFIED" ? null : simpleLb, hash, locality)
        {
            Warmup = warmup,
            ConnectionPool = pool, OutlierDetection = outlier, Tls = tls, RetryBudget = budget, PortLevelSettings = ports,
            ProxyProtocol = proxyProtocol,
        };
    }

    private static ProxyProtocolSpec ReadProxyProtocol(MapReader p)
    {
        // Istio's default is V1, the human-readable header.
        var version = p.String("version") ?? "V1";
        if (version is not ("V1" or "V2"))
        {
            p.Context.Error(p.Get("version"), p.ChildPath("version"), $"unknown PROXY protocol version '{version}'; expected V1 or V2");
        }

        return new ProxyProtocolSpec(version == "V2" ? 2 : 1);
    }

    /// <summary>
    /// Validates <c>tunnel</c> as Istio does and says it has no effect: Istio applies it to TCP and TLS routes only,
    /// never to HTTP routes, and MeshKit routes HTTP only.
    /// </summary>
    private static object? ReadTunnel(MapReader u)
    {
        var protocol = u.String("protocol");
        if (protocol is not null && protocol is not ("CONNECT" or "POST"))
        {
            u.Context.Error(u.Get("protocol"), u.ChildPath("protocol"), $"unknown tunnel protocol '{protocol}'; expected CONNECT or POST");
        }

        var host = u.String("targetHost", required: true);
        if (host is { Length: > 0 } && Uri.CheckHostName(host) is UriHostNameType.Unknown or UriHostNameType.Basic)
        {
            u.Context.Error(u.Get("targetHost"), u.ChildPath("targetHost"), $"'{host}' is not a host name or an IP address");
        }

        if (u.UInt("targetPort", 1, 65535) is null && !u.Has("targetPort"))
        {
            u.Context.Error(u.Node, u.ChildPath("targetPort"), "is required");
        }

        u.Context.Warning(u.Node, u.Path, "is not supported by MeshKit and is ignored: a tunnel applies to TCP and TLS routes only (as in Istio, never to HTTP routes), and MeshKit routes HTTP only");
        return null;
    }

    private static ConnectionPoolSpec ReadConnectionPool(MapReader c) => new(
        c.Map("tcp", t =>
        {
            var keepalive = t.Map("tcpKeepalive", k => new KeepaliveBox(k.TimerDuration("time"), k.TimerDuration("interval"), k.Int("probes", 0, int.MaxValue)));
            return new TcpPoolSpec
            {
                MaxConnections = t.Limit("maxConnections"),
                ConnectTimeout = t.TimerDuration("connectTimeout"),
                KeepaliveTime = keepalive?.Time,
                KeepaliveInterval = keepalive?.Interval,
                KeepaliveProbes = keepalive?.Probes,
                MaxConnectionDuration = t.TimerDuration("maxConnectionDuration"),
                IdleTimeout = t.TimerDuration("idleTimeout", zeroAllowed: true), // 0s: never closed (Istio)
            };
        }),
        c.Map("http", h =>
        {
            var upgrade = h.String("h2UpgradePolicy");
            if (upgrade is not null && upgrade is not ("DEFAULT" or "DO_NOT_UPGRADE" or "UPGRADE"))
            {
                h.Context.Error(h.Get("h2UpgradePolicy"), h.ChildPath("h2UpgradePolicy"), $"unknown policy '{upgrade}'; expected DEFAULT, DO_NOT_UPGRADE or UPGRADE");
            }

            if (upgrade == "UPGRADE" && h.Bool("useClientProtocol") == true)
            {
                h.Context.Error(h.Get("useClientProtocol"), h.ChildPath("useClientProtocol"), "cannot be true with h2UpgradePolicy UPGRADE (as in Istio): the two decide the protocol differently");
            }

            return new HttpPoolSpec
            {
                Http1MaxPendingRequests = h.Limit("http1MaxPendingRequests"),
                Http2MaxRequests = h.Limit("http2MaxRequests"),
                MaxRequestsPerConnection = h.Int("maxRequestsPerConnection", 0, int.MaxValue),
                MaxRetries = h.Int("maxRetries", 0, int.MaxValue),
                IdleTimeout = h.TimerDuration("idleTimeout"),
                H2UpgradePolicy = upgrade,
                UseClientProtocol = h.Bool("useClientProtocol"),
                MaxConcurrentStreams = h.Limit("maxConcurrentStreams"),
            };
        }));

    private sealed record KeepaliveBox(TimeSpan? Time, TimeSpan? Interval, int? Probes);

    private static OutlierDetectionSpec ReadOutlierDetection(MapReader o)
    {
        var legacy = o.Int("consecutiveErrors", 0, int.MaxValue);
        var split = o.Bool("splitExternalLocalOriginErrors") ?? false;
        var local = o.Int("consecutiveLocalOriginFailures", 0, int.MaxValue);
        if (local is not null && !split)
        {
            o.Context.Error(o.Get("consecutiveLocalOriginFailures"), o.ChildPath("consecutiveLocalOriginFailures"), "needs splitExternalLocalOriginErrors: true");
        }

        return new OutlierDetectionSpec
        {
            Consecutive5xxErrors = o.Int("consecutive5xxErrors", 0, int.MaxValue) ?? legacy,
            ConsecutiveGatewayErrors = o.Int("consecutiveGatewayErrors", 0, int.MaxValue),
            ConsecutiveLocalOriginFailures = local,
            SplitExternalLocalOriginErrors = split,
            Interval = o.TimerDuration("interval"),
            BaseEjectionTime = o.TimerDuration("baseEjectionTime"),
            MaxEjectionPercent = o.Int("maxEjectionPercent", 0, 100),
            MinHealthPercent = o.Int("minHealthPercent", 0, 100),
        };
    }

    private static ClientTlsSpec ReadClientTls(MapReader t)
    {
        var mode = t.String("mode") ?? "DISABLE";
        if (mode is not ("DISABLE" or "SIMPLE" or "MUTUAL" or "ISTIO_MUTUAL"))
        {
            t.Context.Error(t.Get("mode"), t.ChildPath("mode"), $"unknown mode '{mode}'; expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL");
        }

        var spec = new ClientTlsSpec
        {
            Mode = mode,
            ClientCertificate = t.String("clientCertificate"),
            PrivateKey = t.String("privateKey"),
            CaCertificates = t.String("caCertificates"),
            CredentialName = t.String("credentialName"),
            SubjectAltNames = t.Strings("subjectAltNames"),
            CaCrl = t.String("caCrl"),
            Sni = t.String("sni"),
            InsecureSkipVerify = t.Bool("insecureSkipVerify"),
        };
        if (mode == "MUTUAL" && (spec.ClientCertificate is null || spec.PrivateKey is null))
        {
            t.Context.Error(t.Node, t.Path, "MUTUAL needs clientCertificate and privateKey");
        }

        return spec;
    }

    private static ConsistentHashSpec ReadConsistentHash(MapReader c)
    {
        var header = c.String("httpHeaderName");
        var query = c.String("httpQueryParameterName");
        var sourceIp = c.Bool("useSourceIp") ?? false;
        string? cookieName = null, cookiePath = null;
        TimeSpan? ttl = null;
        IReadOnlyList<KeyValuePair<string, string>> attributes = [];
        var hasCookie = c.Map("httpCookie", k =>
        {
            cookieName = k.String("name", required: true);
            cookiePath = k.String("path");
            var ttlText = k.String("ttl");
            if (ttlText is not null)
            {
                if (Durations.TryParse(ttlText, out var parsed))
                {
                    ttl = parsed;
                }
                else
                {
                    k.Context.Error(k.Get("ttl"), k.ChildPath("ttl"), $"'{ttlText}' is not a duration (e.g. 0s, 10s, 1h)");
                }
            }

            attributes = k.List("attributes", a =>
            {
                var name = a.String("name", required: true);
                var value = a.String("value") ?? string.Empty;

                // A cookie attribute is a token, its value may not end the attribute or the header.
                if (name is not null && (name.Length == 0 || name.Any(c => c is ';' or '=' or ',' || char.IsWhiteSpace(c) || char.IsControl(c))))
                {
                    a.Context.Error(a.Get("name"), a.ChildPath("name"), $"'{name}' is not a cookie attribute name");
                }

                if (value.Any(c => c == ';' || char.IsControl(c)))
                {
                    a.Context.Error(a.Get("value"), a.ChildPath("value"), "may not hold ';' or control characters");
                }

                return name is null ? null : new AttributeBox(name, value);
            }).Select(p => new KeyValuePair<string, string>(p.Name, p.Value)).ToList();
            return new BoxedString(cookieName);
        }) is not null;
        var keys = (header is null ? 0 : 1) + (query is null ? 0 : 1) + (sourceIp ? 1 : 0) + (hasCookie ? 1 : 0);
        if (keys != 1)
        {
            c.Context.Error(c.Node, c.Path, "exactly one of httpHeaderName, httpCookie, httpQueryParameterName or useSourceIp is required");
        }

        if (header is not null && header != header.ToLowerInvariant())
        {
            c.Context.Error(c.Get("httpHeaderName"), c.ChildPath("httpHeaderName"), "header names must be lower case");
        }

        var ring = c.Map("ringHash", r => new SizeBox(ReadSize(r, "minimumRingSize", 1, 8_388_608)));
        var legacyRing = ReadSize(c, "minimumRingSize", 1, 8_388_608);
        var maglev = c.Map("maglev", m => new SizeBox(ReadSize(m, "tableSize", 3, 5_000_011)));
        if ((ring is not null || legacyRing is not null) && maglev is not null)
        {
            c.Context.Error(c.Node, c.Path, "ringHash and maglev exclude each other");
        }

        if (maglev?.Size is { } table && !IsPrime(table))
        {
            c.Context.Error(c.Node, c.ChildPath("maglev.tableSize"), $"{table} must be a prime number (Maglev needs it)");
        }

        return new ConsistentHashSpec
        {
            HttpHeaderName = header, QueryParameterName = query, UseSourceIp = sourceIp,
            CookieName = cookieName, CookiePath = cookiePath, CookieTtl = ttl, CookieAttributes = attributes,
            MinimumRingSize = ring?.Size ?? legacyRing, MaglevTableSize = maglev?.Size,
        };
    }

    private sealed record SizeBox(ulong? Size);

    private sealed record AttributeBox(string Name, string Value);

    // The identities mesh certificates carry: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
    private static readonly Regex SpiffeIdForm = new("^spiffe://[a-z0-9.-]+/ns/[a-z0-9-]+/sa/[A-Za-z0-9._-]+$", RegexOptions.CultureInvariant);

    private static ulong? ReadSize(MapReader r, string key, uint min, uint max) => r.UInt(key, min, max);

    private static bool IsPrime(ulong n)
    {
        if (n < 2)
        {
            return false;
        }

        for (ulong d = 2; d * d <= n; d++)
        {
            if (n % d == 0)
            {
                return false;
            }
        }

        return true;
    }

    private static LocalityLbSpec ReadLocality(MapReader l)
    {
        var enabled = l.Bool("enabled") ?? true;
        var distribute = l.List("distribute", d =>
        {
            var from = d.String("from", required: true) ?? string.Empty;
            var to = new Dictionary<string, uint>(StringComparer.Ordinal);
            if (d.Get("to") is YamlMappingNode map)
            {
                foreach (var (k, v) in map.Children)
                {
                    var name = (k as YamlScalarNode)?.Value ?? string.Empty;
                    var weight = d.ToUInt(v, $"{d.ChildPath("to")}.{name}", 1, 100);
                    if (weight is not null)
                    {
                        to[name] = weight.Value;
                    }
                }
            }
            else
            {
                d.Context.Error(d.Node, d.ChildPath("to"), "is required: a map of locality to weight");
            }

            if (to.Count > 0 && to.Values.Sum(w => (long)w) != 100)
            {
                d.Context.Error(d.Node, d.ChildPath("to"), $"weights must sum to 100, not {to.Values.Sum(w => (long)w)}");
            }

            ValidateLocalities(d, to.Keys.ToList(), i => $"{d.ChildPath("to")}.{to.Keys.ElementAt(i)}");
            return new LocalityDistribute(from, to);
        });
        ValidateLocalities(l, distribute.Select(d => d.From).ToList(), i => $"{l.ChildPath("distribute")}[{i}].from");
        var failover = l.List("failover", f =>
        {
            var entry = new LocalityFailover(f.String("from", required: true) ?? string.Empty, f.String("to", required: true) ?? string.Empty);
            if (entry.To.Contains('*', StringComparison.Ordinal))
            {
                f.Context.Error(f.Get("to"), f.ChildPath("to"), $"'{entry.To}': a failover region names one region, without '*' (as Istio requires)");
            }

            if (entry.From.Length > 0 && entry.From == entry.To)
            {
                f.Context.Error(f.Get("to"), f.ChildPath("to"), $"fails over to its own region '{entry.From}'; name another one (as Istio requires)");
            }

            return entry;
        });
        var priority = l.Strings("failoverPriority");
        if (distribute.Count > 0 && (failover.Count > 0 || priority.Count > 0))
        {
            l.Context.Error(l.Node, l.Path, "distribute excludes failover and failoverPriority");
        }

        return new LocalityLbSpec { Enabled = enabled, Distribute = distribute, Failover = failover, FailoverPriority = priority };
    }

    // A text as a reference type: MapReader.Map reads objects into classes.
    private sealed record BoxedString(string? Value);

    private sealed record BoxedBool(bool Value);

    private static SubsetSpec? ReadSubset(MapReader r)
    {
        var name = r.String("name", required: true);
        if (name is not null && name.Length > 0 && !Names.IsDnsLabel(name))
        {
            r.Context.Error(r.Get("name"), r.ChildPath("name"), $"'{name}' is not a valid subset name (lower-case DNS-1123 label)");
        }

        var labels = r.StringMap("labels");
        var policy = r.Map("trafficPolicy", ReadTrafficPolicy);
        return name is null ? null : new SubsetSpec(name, labels, policy);
    }
}
