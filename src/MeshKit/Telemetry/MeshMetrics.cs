using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MeshKit.Telemetry;

/// <summary>
/// The data plane's decisions as metrics (Meter <c>MeshKit</c>, created through <see cref="IMeterFactory"/>): requests
/// by response flags, retries, retry budget exhaustion, overflows, ejections, injected faults and mirrored requests, and
/// the requests and durations of routes with a <c>statPrefix</c>.
/// Tags are built only when an instrument is enabled.
/// </summary>
internal sealed class MeshMetrics
{
    public const string MeterName = "MeshKit";

    private readonly Counter<long> _requests;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _budgetExhausted;
    private readonly Counter<long> _overflows;
    private readonly Counter<long> _ejections;
    private readonly Counter<long> _faults;
    private readonly Counter<long> _mirrors;
    private readonly Counter<long> _routeRequests;
    private readonly Histogram<double> _routeDuration;

    private readonly Counter<long> _nacks;

    public MeshMetrics(IMeterFactory meterFactory, Snapshot.MeshSnapshotProvider? provider = null, Security.WorkloadIdentity? identity = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = meterFactory.Create(MeterName);
        _nacks = meter.CreateCounter<long>("meshkit.config.nacks", "{nack}", "Config pushes this workload rejected (the previous config stayed in force).");
        if (provider is not null)
        {
            meter.CreateObservableGauge("meshkit.config.version", () => long.TryParse(provider.Current.Version, out var v) ? v : 0, description: "The control plane's state version this workload runs.");
        }

        if (identity is not null)
        {
            var clock = time ?? TimeProvider.System;
            meter.CreateObservableGauge(
                "meshkit.certificate.expiry",
                () => identity.Current is { } c ? new[] { new Measurement<double>((c.NotAfter - clock.GetUtcNow()).TotalSeconds) } : [],
                "s",
                "Time left before the workload certificate expires.");
        }

        _requests = meter.CreateCounter<long>("meshkit.client.requests", "{request}", "Outbound requests through the mesh, by destination, status and response flags.");
        _retries = meter.CreateCounter<long>("meshkit.client.retries", "{retry}", "Retries sent.");
        _budgetExhausted = meter.CreateCounter<long>("meshkit.client.retry_budget_exhausted", "{retry}", "Retries not sent because of maxRetries or the retry budget.");
        _overflows = meter.CreateCounter<long>("meshkit.client.overflows", "{request}", "Requests refused at once by a connection-pool limit (UO).");
        _ejections = meter.CreateCounter<long>("meshkit.client.outlier_ejections", "{ejection}", "Endpoints ejected by outlier detection.");
        _faults = meter.CreateCounter<long>("meshkit.client.faults_injected", "{fault}", "Delays and aborts injected by fault rules.");
        _mirrors = meter.CreateCounter<long>("meshkit.client.mirrored_requests", "{request}", "Copies of requests sent to mirrors.");

        // Envoy's per-route statistics (a match block's statPrefix): opt in per route, as Envoy generates none without it.
        _routeRequests = meter.CreateCounter<long>("meshkit.route.requests", "{request}", "Outbound requests of routes with a statPrefix, by route, destination, status and response flags.");
        _routeDuration = meter.CreateHistogram("meshkit.route.duration", "ms", "Duration of the outbound requests of routes with a statPrefix, to the end of the response body, by route, destination and status.", tags: null, IstioMetrics.DurationBuckets);
    }

    /// <summary>Gets whether anyone listens to the per-route instruments (only then do calls carry their route's statPrefix).</summary>
    public bool RouteStatsEnabled => _routeRequests.Enabled || _routeDuration.Enabled;

    /// <summary>Counts and times one call of the route named <paramref name="statPrefix"/>; status 0 when no response came.</summary>
    public void RouteRequest(string statPrefix, string destination, int status, string flags, double milliseconds)
    {
        var tags = new TagList { { "meshkit.route", statPrefix }, { "meshkit.destination.service", destination }, { "http.response.status_code", BoxedStatus.Of(status) } };
        _routeDuration.Record(milliseconds, tags);
        tags.Add("meshkit.response_flags", flags.Length == 0 ? "-" : flags);
        _routeRequests.Add(1, tags);
    }

    /// <summary>Gets whether anyone listens to the request counter (the handler then skips measuring).</summary>
    public bool RequestsEnabled => _requests.Enabled;

    /// <summary>Gets whether anyone listens to an instrument that counts finished calls (else the handler skips measuring them).</summary>
    public bool ObservesCalls => _requests.Enabled || RouteStatsEnabled;

    public void Request(string destination, int status, string flags) => Requests(destination, status, flags, 1);

    /// <summary>Counts <paramref name="count"/> outbound requests of one series (the report queue counts a batch at once).</summary>
    public void Requests(string destination, int status, string flags, long count)
    {
        if (_requests.Enabled)
        {
            _requests.Add(count, new TagList { { "meshkit.destination.service", destination }, { "http.response.status_code", BoxedStatus.Of(status) }, { "meshkit.response_flags", flags.Length == 0 ? "-" : flags } });
        }
    }

    public void Nack() => _nacks.Add(1);

    public void Retry(string destination) => Add(_retries, destination);

    public void BudgetExhausted(string destination) => Add(_budgetExhausted, destination);

    public void Overflow(string destination) => Add(_overflows, destination);

    public void Ejection(string destination) => Add(_ejections, destination);

    public void Mirror(string destination) => Add(_mirrors, destination);

    public void Fault(string destination, string kind)
    {
        if (_faults.Enabled)
        {
            _faults.Add(1, new TagList { { "meshkit.destination.service", destination }, { "meshkit.fault", kind } });
        }
    }

    private static void Add(Counter<long> counter, string destination)
    {
        if (counter.Enabled)
        {
            counter.Add(1, new KeyValuePair<string, object?>("meshkit.destination.service", destination));
        }
    }
}
