using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Tests.Parsing;

/// <summary>Kubernetes' v1 Service, read as Istio reads one: selector, ports, the protocol Istio selects, what is below the mesh.</summary>
public class KubernetesServiceParserTests
{
    private static ParseResult Parse(string yaml) => ConfigParser.Parse(yaml, "services.yaml");

    [Fact]
    public void AServiceWithASelector_IsReadWithItsPorts_AndTheProtocolIstioSelects()
    {
        // Istio's bookinfo-versions.yaml, with what a cluster adds to a Service it stored.
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-v1, namespace: shop, labels: { app: reviews } }
            spec:
              type: ClusterIP
              clusterIP: 10.96.4.7
              clusterIPs: [10.96.4.7]
              ipFamilies: [IPv4]
              ipFamilyPolicy: SingleStack
              sessionAffinity: None
              internalTrafficPolicy: Cluster
              selector: { app: reviews, version: v1 }
              ports:
              - { port: 9080, name: http }
              - { port: 9081, name: grpc-api, targetPort: 7070, protocol: TCP }
              - { port: 9082, name: grpc-web, targetPort: web }
              - { port: 9083, name: api, appProtocol: kubernetes.io/h2c, nodePort: 30083 }
              - { port: 9084, name: metrics }
              - { port: 9085, name: http-admin, appProtocol: https }
            status: { loadBalancer: {} }
            """);

        Assert.Empty(result.Diagnostics);
        var service = Assert.IsType<KubernetesService>(Assert.Single(result.Resources));
        Assert.Equal(("Service", "shop", "reviews-v1"), (service.Kind, service.Namespace, service.Name));
        Assert.Equal(new Dictionary<string, string> { ["app"] = "reviews", ["version"] = "v1" }, service.Selector!.MatchLabels);
        Assert.Equal(
            ["9080 http HTTP -", "9081 grpc-api GRPC 7070", "9082 grpc-web GRPC-WEB web", "9083 api HTTP2 -", "9084 metrics HTTP -", "9085 http-admin HTTPS -"],
            service.Ports.Select(p => $"{p.Number} {p.Name} {p.Protocol} {(object?)p.TargetPort ?? p.TargetPortName ?? "-"}"));

        // It is the internal host of its name, whose endpoints its selector picks.
        var entry = service.AsServiceEntry();
        Assert.Equal(["reviews-v1"], entry.Hosts);
        Assert.Equal(("MESH_INTERNAL", "STATIC", "Service"), (entry.Location, entry.Resolution, entry.Kind));
        Assert.Same(service.Selector, entry.WorkloadSelector);
    }

    [Fact]
    public void WhatAServiceCannotMean_InTheMesh_IsAWarning_AndTheDocumentOrThePortIsSkipped()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata: { name: headless }
            spec: { clusterIP: None, selector: { app: headless } }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: dns }
            spec:
              selector: { app: dns }
              sessionAffinity: ClientIP
              sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }
              internalTrafficPolicy: Local
              trafficDistribution: PreferClose
              ports:
              - { port: 53, name: dns, protocol: UDP }
              - { port: 8053, name: http }
            """);

        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        Assert.Equal(
            [
                (4, "spec.ports", "a Service without ports has no calls the mesh can route"),
                (16, "spec.ports[0].protocol", "MeshKit carries HTTP calls, not UDP: the port is ignored"),
                (11, "spec.sessionAffinity", "a DestinationRule's loadBalancer.consistentHash.useSourceIp"),
                (13, "spec.internalTrafficPolicy", "localityLbSetting"),
                (14, "spec.trafficDistribution", "localityLbSetting"),
            ],
            result.Diagnostics.Select(d => (d.Line, d.Path, Contained(d.Message, "a Service without ports has no calls the mesh can route", "MeshKit carries HTTP calls, not UDP: the port is ignored", "a DestinationRule's loadBalancer.consistentHash.useSourceIp", "localityLbSetting"))));
        var dns = Assert.IsType<KubernetesService>(Assert.Single(result.Resources));
        Assert.Equal([8053u], dns.Ports.Select(p => p.Number));
    }

    [Fact]
    public void AnExternalNameService_IsAnAliasOfTheNameItGives()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews-alias, namespace: shop }
            spec:
              type: ExternalName
              externalName: Reviews.Shop.svc.cluster.local.
              selector: { app: ignored }
              clusterIP: ""
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: db, labels: { istio.io/persistent-session: db } }
            spec: { type: ExternalName, externalName: "db_example.com" }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: nothing }
            spec: { type: ExternalName }
            """);

        var alias = Assert.IsType<KubernetesService>(result.Resources[0]);
        Assert.Equal(("reviews.shop.svc.cluster.local", 0), (alias.ExternalName, alias.Ports.Count));
        Assert.Equal(
            ["metadata.labels.istio.io/persistent-session@12", "spec.externalName@13", "spec.externalName@18"],
            result.Diagnostics.Select(d => $"{d.Path}@{d.Line}"));
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
    }

    // The one of the expected fragments the message contains, or the message itself (the assertion then shows it).
    private static string Contained(string message, params string[] fragments) =>
        fragments.FirstOrDefault(f => message.Contains(f, StringComparison.Ordinal)) ?? message;

    [Fact]
    public void AMalformedService_IsAnErrorNamingTheField()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews }
            spec:
              type: Internal
              selector: { app: "*" }
              sessionAffinity: Sticky
              ports:
              - { port: 9080 }
              - { port: 9080, name: http, targetPort: Not_A_Name, protocol: QUIC }
              - { name: grpc, targetPort: 70000 }
              - { port: 9090, name: http }
              - { port: 9091, name: web, targetPort: a-very-long-port-name }
              - { port: 9092, name: x, weight: 3 }
            ---
            apiVersion: v1
            kind: Service
            metadata: { name: shop.reviews }
            spec: { selector: { app: reviews }, ports: [{ port: 80 }] }
            ---
            apiVersion: v2
            kind: Service
            metadata: { name: future }
            spec: { selector: { app: future }, ports: [{ port: 80 }] }
            """);

        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        Assert.Equal(
            [
                "spec.type@5", "spec.selector.app@6", "spec.ports[1].targetPort@10", "spec.ports[1].protocol@10", "spec.ports[1].port@10",
                "spec.ports[2].port@11", "spec.ports[2].targetPort@11", "spec.ports[3].name@12", "spec.ports[4].targetPort@13",
                "spec.ports[5].weight@14", "spec.ports[0].name@9", "spec.sessionAffinity@7", "metadata.name@18", "apiVersion@21",
            ],
            result.Diagnostics.Select(d => $"{d.Path}@{d.Line}"));
        Assert.Contains(result.Diagnostics, d => d.Message == "is required when a Service has more than one port (as in Kubernetes)");
        Assert.Contains(result.Diagnostics, d => d.Message.StartsWith("'a-very-long-port-name' is neither a port number nor a port name", StringComparison.Ordinal));
        Assert.True(result.HasErrors);
    }

    [Fact]
    public void IstiosExportToAnnotation_IsTheServicesExportTo_AndAMalformedOneAnError()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata:
              name: reviews
              annotations:
                networking.istio.io/exportTo: "., web"
            spec: { selector: { app: reviews }, ports: [{ port: 9080 }] }
            ---
            apiVersion: v1
            kind: Service
            metadata:
              name: ratings
              annotations:
                networking.istio.io/exportTo: "Web,*"
            spec: { selector: { app: ratings }, ports: [{ port: 9080 }] }
            """);

        Assert.Equal([".", "web"], Assert.IsType<KubernetesService>(result.Resources[0]).ExportTo);
        Assert.Equal([".", "web"], ((KubernetesService)result.Resources[0]).AsServiceEntry().ExportTo);
        var error = Assert.Single(result.Diagnostics);
        Assert.Equal(("metadata.annotations.networking.istio.io/exportTo", 14, "'Web' must be '.', '*', '~' or a namespace"), (error.Path, error.Line, error.Message));
    }

    [Theory]
    [InlineData("istio.io/persistent-session: shop", "shop", null, "/")]
    [InlineData("istio.io/persistent-session: \"shop:/cart\"", "shop", null, "/cart")]
    [InlineData("istio.io/persistent-session-header: X-Session", null, "x-session", null)]
    public void IstiosPersistentSessionLabels_AreTheServicesSessionPersistence(string label, string? cookie, string? header, string? path)
    {
        var result = Parse($$"""
            apiVersion: v1
            kind: Service
            metadata:
              name: reviews
              labels:
                {{label}}
            spec: { selector: { app: reviews }, ports: [{ port: 9080 }] }
            """);

        Assert.Empty(result.Diagnostics);
        Assert.Equal(new SessionPersistenceSpec(cookie, header, path, null), Assert.IsType<KubernetesService>(Assert.Single(result.Resources)).SessionPersistence);
    }

    [Theory]
    [InlineData("{ istio.io/persistent-session: a, istio.io/persistent-session-header: b }", "istio.io/persistent-session-header", "not both")]
    [InlineData("{ istio.io/persistent-session: \"a:cart\" }", "istio.io/persistent-session", "is not a cookie name, or name:/path")]
    [InlineData("{ istio.io/persistent-session-header: \"a b\" }", "istio.io/persistent-session-header", "is not a header name")]
    public void AMalformedPersistentSessionLabel_IsAnError(string labels, string label, string message)
    {
        var result = Parse($$"""
            apiVersion: v1
            kind: Service
            metadata: { name: reviews, labels: {{labels}} }
            spec: { selector: { app: reviews }, ports: [{ port: 9080 }] }
            """);

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal(($"metadata.labels.{label}", 3), (error.Path, error.Line));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OtherCoreKubernetesKinds_AreStillSkippedWithAWarning()
    {
        var result = Parse("""
            apiVersion: v1
            kind: ServiceAccount
            metadata: { name: bookinfo-reviews }
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: { name: settings }
            data: { a: b }
            """);

        Assert.Equal(
            ["ServiceAccount (v1) is a Kubernetes resource, not mesh configuration; the document is ignored", "ConfigMap (v1) is a Kubernetes resource, not mesh configuration; the document is ignored"],
            result.Diagnostics.Select(d => d.Message));
        Assert.Empty(result.Resources);
    }
}
