using MeshKit.Config.Model;
using MeshKit.Config.Parsing;
using MeshKit.Config.Validation;

namespace MeshKit.Config.Tests.Parsing;

/// <summary>Kubernetes' EndpointSlice and Endpoints, read as Istio reads them: the endpoints of a Service without a selector.</summary>
public class KubernetesEndpointsParserTests
{
    private static ParseResult Parse(string yaml) => ConfigParser.Parse(yaml, "endpoints.yaml");

    [Fact]
    public void AServiceWithoutASelector_IsRead_AndPublishNotReadyAddressesWithIt()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Service
            metadata: { name: db, namespace: shop }
            spec:
              ports: [{ port: 5432, name: tcp-postgres }]
              publishNotReadyAddresses: true
            """);

        Assert.Empty(result.Diagnostics);
        var service = Assert.IsType<KubernetesService>(Assert.Single(result.Resources));
        Assert.Null(service.Selector);
        Assert.True(service.PublishNotReadyAddresses);
        Assert.Null(service.AsServiceEntry().WorkloadSelector);
    }

    [Fact]
    public void AnEndpointSlice_IsItsServicesAddressesAndPorts_WithTheirConditions()
    {
        // As `kubectl get endpointslices -o yaml` writes a hand-made slice.
        var result = Parse("""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: db-1
              namespace: shop
              labels: { kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: cluster-admins }
              resourceVersion: "42"
            addressType: IPv4
            ports:
            - { name: http, port: 8080, protocol: TCP, appProtocol: http }
            - { name: admin, port: 9090 }
            endpoints:
            - addresses: [10.0.0.1]
              conditions: { ready: true, serving: true, terminating: false }
              nodeName: node-1
              zone: us-east-1a
              targetRef: { kind: Pod, name: db-0, namespace: shop }
            - addresses: [10.0.0.2]
              conditions: { ready: false }
            - addresses: [10.0.0.3]
              conditions: { serving: true, terminating: true }
            - addresses: [10.0.0.4]
            """);

        Assert.Empty(result.Diagnostics);
        var slice = Assert.IsType<KubernetesEndpoints>(Assert.Single(result.Resources));
        Assert.Equal(("EndpointSlice", "shop", "db-1", "db"), (slice.Kind, slice.Namespace, slice.Name, slice.ServiceName));
        var subset = Assert.Single(slice.Subsets);
        Assert.Equal(
            [new KubernetesEndpointAddress("10.0.0.1", true, false), new("10.0.0.2", false, false), new("10.0.0.3", true, true), new("10.0.0.4", true, false)],
            subset.Addresses);
        Assert.Equal([("http", 8080u, "ports[0]"), ("admin", 9090u, "ports[1]")], subset.Ports.Select(p => (p.Name, p.Number, p.Path)));
        Assert.Equal(11, slice.Locate("ports[1].name").Line);
        Assert.Equal(6, slice.Locate("metadata.labels.kubernetes.io/service-name").Line);
    }

    [Fact]
    public void AnEndpoints_IsOneGroupPerSubset_ItsNotReadyAddressesNotReady()
    {
        var result = Parse("""
            apiVersion: v1
            kind: Endpoints
            metadata: { name: db, namespace: shop }
            subsets:
            - addresses: [{ ip: 10.0.0.1, nodeName: node-1, targetRef: { kind: Pod, name: db-0 } }]
              notReadyAddresses: [{ ip: 10.0.0.2, hostname: db-1 }]
              ports: [{ name: http, port: 8080, protocol: TCP }]
            - addresses: [{ ip: "fd00::5" }]
              ports: [{ port: 80 }]
            """);

        Assert.Empty(result.Diagnostics);
        var endpoints = Assert.IsType<KubernetesEndpoints>(Assert.Single(result.Resources));
        Assert.Equal(("Endpoints", "db"), (endpoints.Kind, endpoints.ServiceName));
        Assert.Equal(2, endpoints.Subsets.Count);
        Assert.Equal([new KubernetesEndpointAddress("10.0.0.1", true, false), new("10.0.0.2", false, false)], endpoints.Subsets[0].Addresses);
        Assert.Equal([("http", 8080u, "subsets[0].ports[0]")], endpoints.Subsets[0].Ports.Select(p => (p.Name, p.Number, p.Path)));
        Assert.Equal(("fd00::5", "", 80u), (endpoints.Subsets[1].Addresses.Single().Address, endpoints.Subsets[1].Ports.Single().Name, endpoints.Subsets[1].Ports.Single().Number));
    }

    [Fact]
    public void KubernetesOwnSlicesOfASelector_AreSkippedWithoutAWord()
    {
        // An export of a cluster holds one for every Service with a selector: its pods, which the selector's live
        // workloads stand for in MeshKit.
        var result = Parse("""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: reviews-x7k2p
              generateName: reviews-
              namespace: default
              labels: { kubernetes.io/service-name: reviews, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io }
              ownerReferences: [{ apiVersion: v1, kind: Service, name: reviews, uid: 5b3c, controller: true, blockOwnerDeletion: true }]
            addressType: IPv4
            endpoints: [{ addresses: [10.244.0.12], conditions: { ready: true } }]
            ports: [{ name: http, port: 9080, protocol: TCP }]
            """);

        Assert.Empty(result.Diagnostics);
        Assert.Empty(result.Resources);
    }

    [Fact]
    public void KubernetesOwnSlice_ReadFromTheApiServer_IsRead_ItIsCurrent()
    {
        var result = Parse($$"""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: reviews-x7k2p
              namespace: default
              labels: { kubernetes.io/service-name: reviews, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io }
              annotations: { {{MeshKit.Config.Parsing.ConfigParser.LiveObjectAnnotation}}: "true" }
            addressType: IPv4
            endpoints: [{ addresses: [10.244.0.12], conditions: { ready: true } }]
            ports: [{ name: http, port: 9080, protocol: TCP }]
            """);

        Assert.Empty(result.Diagnostics);
        var slice = Assert.IsType<KubernetesEndpoints>(Assert.Single(result.Resources));
        Assert.Equal("10.244.0.12", slice.Subsets.Single().Addresses.Single().Address);
    }

    [Fact]
    public void AGeneratedNameAlone_IsAnError_BesideTheNameKubernetesMadeItIsAccepted()
    {
        var alone = Parse("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: { generateName: reviews- }
            spec: { hosts: [reviews], http: [{ route: [{ destination: { host: reviews } }] }] }
            """);
        Assert.Contains(alone.Diagnostics, d => d.Path == "metadata.generateName" && d.Message.Contains("need a fixed name", StringComparison.Ordinal));

        var exported = Parse("""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db-k2x9q, generateName: db-, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            endpoints: [{ addresses: [10.0.0.1] }]
            ports: [{ name: http, port: 80 }]
            """);
        Assert.Empty(exported.Diagnostics);
        Assert.Equal("db-k2x9q", Assert.Single(exported.Resources).Name);
    }

    [Fact]
    public void WhatASliceCannotMean_InTheMesh_IsAWarning_AndTheSliceOrThePortIsSkipped()
    {
        var result = Parse("""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: orphan }
            addressType: IPv4
            endpoints: null
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: names, labels: { kubernetes.io/service-name: names } }
            addressType: FQDN
            endpoints: [{ addresses: [db.example.com] }]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            endpoints: [{ addresses: [10.0.0.1], hints: { forZones: [{ name: a }] } }]
            ports: [{ name: dns, port: 53, protocol: UDP }, { name: any }, { name: http, port: 80 }]
            """);

        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Warning, d.Severity));
        Assert.Equal(
            [
                (3, "metadata.labels.kubernetes.io/service-name", "names no Service"),
                (10, "addressType", "FQDN slices are not read"),
                (17, "endpoints[0].hints", "localityLbSetting"),
                (18, "ports[0].protocol", "not UDP: the port is ignored"),
                (18, "ports[1].port", "a port without a number"),
            ],
            result.Diagnostics.Select(d => (d.Line, d.Path, Contained(d.Message, "names no Service", "FQDN slices are not read", "localityLbSetting", "not UDP: the port is ignored", "a port without a number"))));
        var slice = Assert.IsType<KubernetesEndpoints>(Assert.Single(result.Resources));
        Assert.Equal(["http"], slice.Subsets.Single().Ports.Select(p => p.Name));
    }

    [Fact]
    public void MalformedEndpoints_AreErrors_WithTheirPaths()
    {
        var result = Parse("""
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: db, labels: { kubernetes.io/service-name: db } }
            addressType: IPv4
            endpoints:
            - addresses: ["fd00::1"]
            - addresses: []
            - { addresses: [10.0.0.1], conditions: { ready: maybe } }
            ports: [{ name: http, port: 80 }, { name: http, port: 81 }, { name: Web_1, port: 70000 }]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: { name: web, labels: { kubernetes.io/service-name: web } }
            addressType: IPv5
            ---
            apiVersion: discovery.k8s.io/v1beta1
            kind: EndpointSlice
            metadata: { name: old, labels: { kubernetes.io/service-name: old } }
            addressType: IPv4
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: { name: db }
            subsets: [{ addresses: [{ ip: db.example.com }, { hostname: db-0 }], ports: [{ port: 80, protocol: QUIC }] }]
            """);

        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        Assert.Equal(
            [
                "endpoints[0].addresses[0]@6", "endpoints[1].addresses@7", "endpoints[2].conditions.ready@8", "ports[2].name@9", "ports[2].port@9", "ports[1].name@9",
                "addressType@14", "apiVersion@16",
                "subsets[0].addresses[0].ip@24", "subsets[0].addresses[1].ip@24", "subsets[0].ports[0].protocol@24",
            ],
            result.Diagnostics.Select(d => $"{d.Path}@{d.Line}"));
        Assert.Empty(result.Resources);
    }

    private static string Contained(string message, params string[] candidates) =>
        candidates.FirstOrDefault(c => message.Contains(c, StringComparison.Ordinal)) ?? message;
}
