using MeshKit.Config.Compilation;
using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;
using MeshKit.Protocol.V1;

namespace MeshKit.Config.Tests.Compilation;

/// <summary>The Telemetry API's metrics overrides: validated field by field, resolved root → namespace → workload.</summary>
public sealed class TelemetryTests
{
    private static readonly Dictionary<string, string> Reviews = new() { ["app"] = "reviews" };

    private static TelemetryPolicy Resolve(string yaml, string ns = "default", IReadOnlyDictionary<string, string>? labels = null)
    {
        var result = ConfigParser.Parse(yaml, "telemetry.yaml");
        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        var view = MeshCompiler.Compile(new ConfigSet(result.Resources), []).ViewFor(ns, labels ?? Reviews);
        return view.OfType(ResourceTypes.Inbound)[ResourceTypes.InboundResourceName].Resource_.Unpack<InboundPolicy>().Telemetry;
    }

    private static string Telemetry(string name, string ns, string overrides, string selector = "", string providers = "", string? reportingInterval = null) => $$"""
        apiVersion: telemetry.istio.io/v1
        kind: Telemetry
        metadata: { name: {{name}}, namespace: {{ns}} }
        spec:
          {{selector}}
          metrics:
          - {{providers}}
            overrides: {{overrides}}
            {{(reportingInterval is null ? string.Empty : "reportingInterval: " + reportingInterval)}}
        ---

        """;

    /// <summary>A Telemetry document with one field of <c>spec</c> besides the selector (<c>tracing: [...]</c>, <c>accessLogging: [...]</c>).</summary>
    private static string Spec(string name, string ns, string field, string selector = "") => $$"""
        apiVersion: telemetry.istio.io/v1
        kind: Telemetry
        metadata: { name: {{name}}, namespace: {{ns}} }
        spec:
          {{selector}}
          {{field}}
        ---

        """;

    private static MetricPolicy? Metric(TelemetryPolicy policy, string name) => policy.Metrics.SingleOrDefault(m => m.Metric == name);

    [Fact]
    public void NoTelemetry_ChangesNothing()
    {
        Assert.Empty(Resolve("apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec: {}\n").Metrics);
    }

    [Fact]
    public void ADisabledMetric_PerMode_AndAllMetrics()
    {
        var sizes = Resolve(Telemetry("sizes", "istio-system", "[{ match: { metric: REQUEST_SIZE }, disabled: true }, { match: { metric: RESPONSE_SIZE, mode: SERVER }, disabled: true }]"));

        Assert.Equal(["REQUEST_SIZE", "RESPONSE_SIZE"], sizes.Metrics.Select(m => m.Metric));
        Assert.True(Metric(sizes, "REQUEST_SIZE")!.ClientDisabled);
        Assert.True(Metric(sizes, "REQUEST_SIZE")!.ServerDisabled);
        Assert.False(Metric(sizes, "RESPONSE_SIZE")!.ClientDisabled);
        Assert.True(Metric(sizes, "RESPONSE_SIZE")!.ServerDisabled);

        // match is optional: every metric, both modes.
        var all = Resolve(Telemetry("off", "istio-system", "[{ disabled: true }]"));
        Assert.Equal(IstioStandardMetrics.Metrics.Length, all.Metrics.Count);
        Assert.All(all.Metrics, m => Assert.True(m.ClientDisabled && m.ServerDisabled));
    }

    [Fact]
    public void TheGrpcMessageCounts_AreMetricsOfTheirOwn_AndAllMetricsCoversThem()
    {
        var one = Resolve(Telemetry("grpc", "istio-system", "[{ match: { metric: GRPC_RESPONSE_MESSAGES, mode: CLIENT }, disabled: true }]"));
        Assert.Equal(["GRPC_RESPONSE_MESSAGES"], one.Metrics.Select(m => m.Metric));
        Assert.True(Metric(one, "GRPC_RESPONSE_MESSAGES")!.ClientDisabled);
        Assert.False(Metric(one, "GRPC_RESPONSE_MESSAGES")!.ServerDisabled);

        var all = Resolve(Telemetry("all", "istio-system", "[{ match: { metric: ALL_METRICS }, disabled: true }]"));
        Assert.Equal(IstioStandardMetrics.Metrics, all.Metrics.Select(m => m.Metric));
        Assert.Contains("GRPC_REQUEST_MESSAGES", IstioStandardMetrics.Metrics);
    }

    [Fact]
    public void Levels_ApplyRootThenNamespaceThenWorkload_ALaterDecisionWins()
    {
        var mesh = Telemetry("mesh", "istio-system", "[{ match: { metric: ALL_METRICS }, disabled: true }]");
        var space = Telemetry("ns", "default", "[{ match: { metric: REQUEST_COUNT }, disabled: false }]");
        var workload = Telemetry("w", "default", "[{ match: { metric: REQUEST_COUNT, mode: CLIENT }, tagOverrides: { source_principal: { operation: REMOVE } } }]", "selector: { matchLabels: { app: reviews } }");

        // The namespace turns the request count back on; the rest stays off, as the mesh said.
        var inNamespace = Resolve(mesh + space);
        Assert.Null(Metric(inNamespace, "REQUEST_COUNT"));
        Assert.True(Metric(inNamespace, "REQUEST_DURATION")!.ServerDisabled);

        // The workload removes a label from what the namespace turned back on, and inherits the rest.
        var selected = Resolve(mesh + space + workload);
        var count = Metric(selected, "REQUEST_COUNT")!;
        Assert.False(count.ClientDisabled || count.ServerDisabled);
        Assert.Equal(["source_principal"], count.ClientRemovedTags);
        Assert.Empty(count.ServerRemovedTags);

        // Not selected, another namespace: only the mesh's.
        Assert.Null(Metric(Resolve(mesh + space + workload, labels: new Dictionary<string, string> { ["app"] = "ratings" }), "REQUEST_COUNT"));
        Assert.True(Metric(Resolve(mesh + space + workload, ns: "other"), "REQUEST_COUNT")!.ClientDisabled);
    }

    [Fact]
    public void TwoWorkloadsOfANamespace_GetTheirOwnPolicy_FromOneCompiledMesh()
    {
        // Views are cached per namespace and selecting resources: a Telemetry selector must be part of that key.
        var yaml = Telemetry("w", "default", "[{ match: { metric: REQUEST_COUNT }, disabled: true }]", "selector: { matchLabels: { app: reviews } }");
        var mesh = MeshCompiler.Compile(new ConfigSet(ConfigParser.Parse(yaml, "telemetry.yaml").Resources), []);
        TelemetryPolicy For(string app) =>
            mesh.ViewFor("default", new Dictionary<string, string> { ["app"] = app }).OfType(ResourceTypes.Inbound)[ResourceTypes.InboundResourceName].Resource_.Unpack<InboundPolicy>().Telemetry;

        Assert.Empty(For("ratings").Metrics);
        Assert.Single(For("reviews").Metrics);
        Assert.Empty(For("details").Metrics);
    }

    [Fact]
    public void TheAccessLog_IsOnUnlessTheLastEntryForASideTurnsItOff()
    {
        string Logging(string name, string ns, string entries, string selector = "") => Spec(name, ns, "accessLogging: " + entries, selector);
        var off = Logging("mesh", "istio-system", "[{ disabled: true }]");
        var serverOn = Logging("ns", "default", "[{ match: { mode: SERVER } }]");
        var otherProvider = Logging("w", "default", "[{ providers: [{ name: otel }], disabled: false }]", "selector: { matchLabels: { app: reviews } }");

        var mesh = Resolve(off);
        Assert.True(mesh.ClientAccessLogDisabled && mesh.ServerAccessLogDisabled);
        var space = Resolve(off + serverOn);
        Assert.True(space.ClientAccessLogDisabled);
        Assert.False(space.ServerAccessLogDisabled);

        // An entry for another provider changes nothing here (and is reported).
        var workload = Resolve(off + serverOn + otherProvider);
        Assert.True(workload.ClientAccessLogDisabled);
        Assert.Equal("spec.accessLogging[0].providers", Assert.Single(ConfigParser.Parse(otherProvider, "t.yaml").Diagnostics).Path);
        Assert.False(Resolve(Logging("none", "istio-system", "[]")).ClientAccessLogDisabled);
    }

    [Fact]
    public void TagValues_ArePerMetricAndSide_AndTheLastWordOnALabelWins()
    {
        var mesh = Telemetry("mesh", "istio-system", "[{ tagOverrides: { request_method: { value: request.method }, destination_port: { value: \"string(upstream.port)\" } } }]");
        var space = Telemetry("ns", "default", "[{ match: { metric: REQUEST_COUNT, mode: SERVER }, tagOverrides: { request_method: { operation: REMOVE }, response_code: { value: \"string(response.code / 100) + 'xx'\" } } }]");

        var resolved = Resolve(mesh + space);

        var count = Metric(resolved, "REQUEST_COUNT")!;
        Assert.Equal(["destination_port", "request_method"], count.ClientUpsertedTags.Select(t => t.Name));
        Assert.Equal("request.method", count.ClientUpsertedTags[1].Expression);
        Assert.Equal(["destination_port", "response_code"], count.ServerUpsertedTags.Select(t => t.Name));
        Assert.Equal(["request_method"], count.ServerRemovedTags);
        var duration = Metric(resolved, "REQUEST_DURATION")!;
        Assert.Equal(["destination_port", "request_method"], duration.ServerUpsertedTags.Select(t => t.Name));
        Assert.Empty(duration.ServerRemovedTags);
    }

    [Theory]
    [InlineData("{ request-method: { value: request.method } }", "spec.metrics[0].overrides[0].tagOverrides.request-method", "not a label name")]
    [InlineData("{ __name: { value: request.method } }", "spec.metrics[0].overrides[0].tagOverrides.__name", "not a label name")]
    [InlineData("{ request_method: { value: request.verb } }", "spec.metrics[0].overrides[0].tagOverrides.request_method.value", "column 1: unknown attribute 'request.verb'")]
    [InlineData("{ request_headers: { value: request.headers } }", "spec.metrics[0].overrides[0].tagOverrides.request_headers.value", "must be a string")]
    public void AnInvalidTagValue_IsAnError(string overrides, string path, string reason)
    {
        var result = ConfigParser.Parse(Telemetry("t", "default", $"[{{ tagOverrides: {overrides} }}]"), "telemetry.yaml");

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Error, error.Severity);
        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheAccessLogFilter_IsTheLastEntryForASide_AndAChildEntryWithoutOneLogsEveryRequest()
    {
        string Logging(string name, string ns, string entries, string selector = "") => Spec(name, ns, "accessLogging: " + entries, selector);
        var errors = Logging("mesh", "istio-system", "[{ filter: { expression: \"response.code >= 400\" } }]");
        var slowServer = Logging("ns", "default", "[{ match: { mode: SERVER }, filter: { expression: \"request.duration > duration('1s')\" } }]");
        var everyCall = Logging("w", "default", "[{ match: { mode: CLIENT } }]", "selector: { matchLabels: { app: reviews } }");

        var mesh = Resolve(errors);
        Assert.Equal("response.code >= 400", mesh.ClientAccessLogFilter);
        Assert.Equal("response.code >= 400", mesh.ServerAccessLogFilter);
        var space = Resolve(errors + slowServer);
        Assert.Equal("response.code >= 400", space.ClientAccessLogFilter);
        Assert.Equal("request.duration > duration('1s')", space.ServerAccessLogFilter);
        var workload = Resolve(errors + slowServer + everyCall);
        Assert.Equal(string.Empty, workload.ClientAccessLogFilter);
        Assert.Equal("request.duration > duration('1s')", workload.ServerAccessLogFilter);
    }

    [Theory]
    [InlineData("respons.code >= 400", "column 1: unknown attribute 'respons.code'")]
    [InlineData("response.code >= '400'", "column 15: no overload of '>=' takes an int and a string")]
    [InlineData("response.code >= 400 &&", "column 24: the expression ends where a value was expected")]
    [InlineData("response.code", "a filter must be a bool expression; this one is an int")]
    [InlineData("request.headers.all(h, h == 'x')", "the comprehension macro 'all' is not supported")]
    [InlineData("request.url_path.matches('(')", "invalid pattern for matches()")]
    public void AnInvalidAccessLogFilter_IsAnErrorWithItsColumn(string expression, string reason)
    {
        var result = ConfigParser.Parse(Spec("t", "default", $"accessLogging: [{{ filter: {{ expression: \"{expression}\" }} }}]"), "telemetry.yaml");

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Error, error.Severity);
        Assert.Equal("spec.accessLogging[0].filter.expression", error.Path);
        Assert.Equal(6, error.Line);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TwoNamespaceWideResources_TheFirstByNameApplies_TheOtherIsReported()
    {
        var yaml = Telemetry("b-second", "default", "[{ match: { metric: REQUEST_SIZE }, disabled: true }]")
            + Telemetry("a-first", "default", "[{ match: { metric: REQUEST_COUNT }, disabled: true }]")
            + Telemetry("mesh", "istio-system", "[]");
        var parsed = ConfigParser.Parse(yaml, "telemetry.yaml");

        var mesh = MeshCompiler.Compile(new ConfigSet(parsed.Resources), []);

        var finding = Assert.Single(mesh.Diagnostics);
        Assert.Equal("Telemetry default/b-second", finding.Resource);
        Assert.Contains("Telemetry default/a-first already applies", finding.Message, StringComparison.Ordinal);
        Assert.Equal((3, 19), (finding.Line, finding.Column)); // b-second's metadata.name
        Assert.Equal(["REQUEST_COUNT"], Resolve(yaml).Metrics.Select(m => m.Metric));
    }

    [Fact]
    public void Tracing_TagsMerge_ByName_AndTheLastDecisionOnSpansWins_ServerEntriesChangeNothing()
    {
        string Tracing(string name, string ns, string entries, string selector = "") => Spec(name, ns, "tracing: " + entries, selector);
        var mesh = Tracing("mesh", "istio-system", "[{ disableSpanReporting: true, customTags: { team: { literal: { value: platform } }, zone: { environment: { name: ZONE, defaultValue: unknown } } } }]");
        var space = Tracing("ns", "default", "[{ match: { mode: CLIENT }, disableSpanReporting: false, customTags: { team: { literal: { value: books } } } }]");
        var server = Tracing("w", "default", "[{ match: { mode: SERVER }, disableSpanReporting: true }]", "selector: { matchLabels: { app: reviews } }");

        Assert.True(Resolve(mesh).ClientSpansDisabled);
        var resolved = Resolve(mesh + space + server);
        Assert.False(resolved.ClientSpansDisabled);
        Assert.Equal(["team=literal:books", "zone=environment:ZONE|unknown"], resolved.ClientSpanTags.Select(t => $"{t.Name}={t.Kind}:{t.Value}{(t.DefaultValue.Length > 0 ? "|" + t.DefaultValue : "")}"));

        var warnings = ConfigParser.Parse(server, "t.yaml").Diagnostics;
        Assert.Equal("spec.tracing[0].disableSpanReporting", Assert.Single(warnings).Path);
    }

    [Fact]
    public void Tracing_TheSamplingPercentage_PerSide_TheLastDecisionWins()
    {
        string Tracing(string name, string ns, string entries, string selector = "") => Spec(name, ns, "tracing: " + entries, selector);
        var mesh = Tracing("mesh", "istio-system", "[{ randomSamplingPercentage: 1 }]");
        var workload = Tracing("w", "default", "[{ match: { mode: SERVER }, randomSamplingPercentage: 25.5 }]", "selector: { matchLabels: { app: reviews } }");

        Assert.False(Resolve("apiVersion: meshkit.dev/v1alpha1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec: {}\n").HasClientSamplingPercentage);
        var resolved = Resolve(mesh + workload);
        Assert.Equal(1, resolved.ClientSamplingPercentage);
        Assert.Equal(25.5, resolved.ServerSamplingPercentage);

        var wrong = ConfigParser.Parse(Tracing("bad", "default", "[{ randomSamplingPercentage: 150 }]"), "t.yaml");
        Assert.Equal("spec.tracing[0].randomSamplingPercentage", Assert.Single(wrong.Diagnostics, d => d.Severity == DiagnosticSeverity.Error).Path);
    }

    [Fact]
    public void Tracing_WhatMeshKitDoesNotActOn_IsReported_AndMistakesAreErrors()
    {
        var result = ConfigParser.Parse("""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: t, namespace: istio-system }
            spec:
              tracing:
              - providers: [{ name: otel }]
                randomSamplingPercentage: 10
                useRequestIdForTraceSampling: true
                customTags:
                  both: { literal: { value: a }, header: { name: b } }
                  none: {}
                  typo: { literal: { vaule: a } }
            """, "t.yaml");

        Assert.Equal(
            [
                "spec.tracing[0].customTags.both",
                "spec.tracing[0].customTags.none",
                "spec.tracing[0].customTags.typo.literal.value",
                "spec.tracing[0].customTags.typo.literal.vaule",
                "spec.tracing[0].providers",
                "spec.tracing[0].useRequestIdForTraceSampling",
            ],
            result.Diagnostics.Select(d => d.Path).Order(StringComparer.Ordinal));
        Assert.Equal(4, result.Diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error));
    }

    [Fact]
    public void TwoResourcesSelectingOneLiveWorkload_TheSecondIsReported()
    {
        var yaml = Telemetry("b", "default", "[{ disabled: true }]", "selector: { matchLabels: { app: reviews, version: v1 } }")
            + Telemetry("a", "default", "[{ match: { metric: REQUEST_COUNT }, disabled: true }]", "selector: { matchLabels: { app: reviews } }")
            + Telemetry("c", "default", "[{ disabled: true }]", "selector: { matchLabels: { app: ratings } }");
        var parsed = ConfigParser.Parse(yaml, "telemetry.yaml");
        WorkloadAnnouncement Workload(string id, string version)
        {
            var w = new WorkloadAnnouncement { Service = "reviews", Namespace = "default", InstanceId = id, Address = "10.0.0.1" };
            w.Labels["app"] = "reviews";
            w.Labels["version"] = version;
            return w;
        }

        // reviews-v1 is selected by a and b (a applies, b is reported once); reviews-v2 by a only; ratings runs nowhere.
        var mesh = MeshCompiler.Compile(new ConfigSet(parsed.Resources), [Workload("r1", "v1"), Workload("r2", "v1"), Workload("r3", "v2")]);

        var finding = Assert.Single(mesh.Diagnostics);
        Assert.Equal("Telemetry default/b", finding.Resource);
        Assert.Equal("spec.selector", finding.Path);
        Assert.Equal((5, 13), (finding.Line, finding.Column)); // b's selector
        Assert.Contains("Telemetry default/a also selects the workloads of reviews.default", finding.Message, StringComparison.Ordinal);
        Assert.Empty(MeshCompiler.Compile(new ConfigSet(parsed.Resources), []).Diagnostics);
    }

    [Fact]
    public void AnEntryForAnotherProvider_IsIgnored_WithAWarning()
    {
        var yaml = Telemetry("otel", "istio-system", "[{ disabled: true }]", providers: "providers: [{ name: stackdriver }]");
        var result = ConfigParser.Parse(yaml, "telemetry.yaml");

        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Equal("spec.metrics[0].providers", warning.Path);
        Assert.Empty(Resolve(yaml).Metrics);
        Assert.NotEmpty(Resolve(Telemetry("prom", "istio-system", "[{ disabled: true }]", providers: "providers: [{ name: prometheus }]")).Metrics);
    }

    [Fact]
    public void TheReportingInterval_IsTheMostSpecificLevelsThatSetsOne()
    {
        Assert.Equal(0UL, Resolve(Telemetry("mesh", "istio-system", "[{ disabled: true }]")).MetricsReportingIntervalMs); // unset: the default
        Assert.Equal(10_000UL, Resolve(Telemetry("mesh", "istio-system", "[]", reportingInterval: "10s")).MetricsReportingIntervalMs);
        Assert.Equal(500UL, Resolve(Telemetry("mesh", "istio-system", "[]", reportingInterval: "10s") + Telemetry("ns", "default", "[]", reportingInterval: "500ms")).MetricsReportingIntervalMs);
        Assert.Equal(2_000UL, Resolve(Telemetry("mesh", "istio-system", "[]", reportingInterval: "10s") + Telemetry("ns", "default", "[]", reportingInterval: "500ms")
            + Telemetry("reviews", "default", "[]", selector: "selector: { matchLabels: { app: reviews } }", reportingInterval: "2s")).MetricsReportingIntervalMs);

        // A level that says nothing of it leaves its parent's; an entry for another provider is ignored, as its overrides are.
        Assert.Equal(10_000UL, Resolve(Telemetry("mesh", "istio-system", "[]", reportingInterval: "10s") + Telemetry("ns", "default", "[{ disabled: true }]")).MetricsReportingIntervalMs);
        Assert.Equal(10_000UL, Resolve(Telemetry("mesh", "istio-system", "[]", reportingInterval: "10s") + Telemetry("ns", "default", "[]", providers: "providers: [{ name: stackdriver }]", reportingInterval: "1s")).MetricsReportingIntervalMs);
    }

    [Theory]
    [InlineData("0s")]
    [InlineData("500us")]
    [InlineData("soon")]
    public void AReportingIntervalThatIsNoTimersPeriod_IsAnError(string interval)
    {
        var result = ConfigParser.Parse($$"""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: mesh, namespace: istio-system }
            spec:
              metrics: [{ reportingInterval: {{interval}} }]
            """, "telemetry.yaml");

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Error, error.Severity);
        Assert.Equal("spec.metrics[0].reportingInterval", error.Path);
        Assert.Equal(5, error.Line);
    }

    [Fact]
    public void WhatMeshKitDoesNotActOn_IsReportedWithItsPath()
    {
        var result = ConfigParser.Parse("""
            apiVersion: telemetry.istio.io/v1alpha1
            kind: Telemetry
            metadata: { name: t, namespace: default }
            spec:
              selector: { matchLabels: { app: reviews } }
              tracing: [{ randomSamplingPercentage: 10 }]
              accessLogging: [{ providers: [{ name: envoy }], filter: { expression: "response.code >= 400" } }]
              metrics:
              - reportingInterval: 5s
                overrides:
                - match: { metric: TCP_OPENED_CONNECTIONS }
                  disabled: true
                - match: { customMetric: my_metric }
                  disabled: true
                - tagOverrides:
                    request_host: { value: request.host }
                    not_a_label: { operation: REMOVE }
                    response_code: { operation: REMOVE }
            """, "telemetry.yaml");

        Assert.False(result.HasErrors, string.Join(Environment.NewLine, result.Diagnostics));
        Assert.Equal(
            [
                "spec.metrics[0].overrides[0].match.metric",
                "spec.metrics[0].overrides[1].match.customMetric",
                "spec.metrics[0].overrides[2].tagOverrides.not_a_label",
            ],
            result.Diagnostics.Select(d => d.Path).Order(StringComparer.Ordinal));
        Assert.All(result.Diagnostics, d => Assert.True(d.Line > 0));

        // What remains acts: the REMOVE of a standard label (and the harmless one of an unknown name), the UPSERT.
        var telemetry = Assert.IsType<TelemetryResource>(Assert.Single(result.Resources));
        Assert.Equal(["not_a_label", "response_code"], Assert.Single(telemetry.MetricOverrides).RemovedTags.Order(StringComparer.Ordinal));
        Assert.Equal("request.host", Assert.Single(telemetry.MetricOverrides).UpsertedTags!["request_host"]);
    }

    [Theory]
    [InlineData("[{ match: { metric: REQUEST_COUNTS } }]", "spec.metrics[0].overrides[0].match.metric")]
    [InlineData("[{ match: { mode: BOTH } }]", "spec.metrics[0].overrides[0].match.mode")]
    [InlineData("[{ tagOverrides: { reporter: { operation: DROP } } }]", "spec.metrics[0].overrides[0].tagOverrides.reporter.operation")]
    [InlineData("[{ disabled: maybe }]", "spec.metrics[0].overrides[0].disabled")]
    [InlineData("[{ tagOverrides: { reporter: { operation: UPSERT } } }]", "spec.metrics[0].overrides[0].tagOverrides.reporter.value")]
    [InlineData("[{ match: { customMetric: \"\" } }]", "spec.metrics[0].overrides[0].match.customMetric")]
    [InlineData("[{ tagOverrides: { reporter: { operation: REMOVE, value: x } } }]", "spec.metrics[0].overrides[0].tagOverrides.reporter.value")]
    [InlineData("[{ match: { metric: REQUEST_COUNT }, enabled: false }]", "spec.metrics[0].overrides[0].enabled")]
    public void Mistakes_AreErrors_WithTheirPath(string overrides, string path)
    {
        var result = ConfigParser.Parse(Telemetry("bad", "default", overrides), "telemetry.yaml");

        var error = Assert.Single(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Error);
        Assert.Equal(path, error.Path);
    }

    [Fact]
    public void ATracingProviderWithoutAName_IsAnError()
    {
        var result = ConfigParser.Parse("""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: t, namespace: default }
            spec:
              tracing: [{ providers: [{ name: "" }], randomSamplingPercentage: 10 }]
            """, "telemetry.yaml");

        Assert.Equal("spec.tracing[0].providers[0].name", Assert.Single(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Error).Path);
    }

    [Fact]
    public void ATelemetryForGatewaysOrWaypoints_AppliesToNoWorkload()
    {
        var result = ConfigParser.Parse("""
            apiVersion: telemetry.istio.io/v1
            kind: Telemetry
            metadata: { name: waypoint, namespace: default }
            spec:
              targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
              metrics: [{ overrides: [{ disabled: true }] }]
            """, "telemetry.yaml");

        Assert.Equal("spec.targetRefs", Assert.Single(result.Diagnostics).Path);
        Assert.Empty(result.Resources);
    }
}
