using System.Net;
using MeshKit.LoadBalancing;
using MeshKit.Protocol.V1;
using Polly;
using Polly.Retry;

namespace MeshKit.Resilience;

/// <summary>What one request carries through the retry pipeline.</summary>
internal sealed class AttemptState : IReadOnlyCollection<EndpointView>
{
    // The endpoints tried so far: almost always one, kept without a list until a retry needs more.
    private EndpointView? _firstTried;
    private List<EndpointView>? _moreTried;

    public HttpRequestMessage Request { get; set; } = null!;

    public Uri Uri { get; set; } = null!;

    public EndpointSet Endpoints { get; set; } = null!;

    public uint Port { get; set; }

    public string PathAndQuery { get; set; } = string.Empty;

    public bool Idempotent { get; set; }

    public bool Replayable { get; set; }

    /// <summary>Gets the endpoints tried so far, in order.</summary>
    public AttemptState Tried => this;

    /// <summary>Gets or sets how many attempts were made (to endpoints, or to the host a pass-through call names).</summary>
    public int Attempted { get; set; }

    /// <summary>Gets how many endpoints were tried.</summary>
    public int Count => _firstTried is null ? 0 : 1 + (_moreTried?.Count ?? 0);

    public bool Contains(EndpointView endpoint) => ReferenceEquals(_firstTried, endpoint) || (_moreTried?.Contains(endpoint) ?? false);

    public void Add(EndpointView endpoint)
    {
        if (_firstTried is null)
        {
            _firstTried = endpoint;
        }
        else
        {
            (_moreTried ??= new(2)).Add(endpoint);
        }
    }

    public IEnumerator<EndpointView> GetEnumerator()
    {
        if (_firstTried is not null)
        {
            yield return _firstTried;
        }

        foreach (var more in _moreTried ?? [])
        {
            yield return more;
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Gets the destination cluster's runtime state (requests and retries in flight).</summary>
    public ClusterRuntime? Cluster { get; set; }

    /// <summary>Gets the cluster's limits (maxRetries, retryBudget).</summary>
    public ConnectionLimits? Limits { get; set; }

    /// <summary>Gets the caller's cancellation: a probe it abandons is not a failure of the endpoint.</summary>
    public CancellationToken CallerToken { get; set; }

    /// <summary>Gets the cluster's own connection pool, if it has one.</summary>
    public Http.ClusterTransports.Transport? Transport { get; set; }

    /// <summary>Gets the cluster's DestinationRule <c>tls.mode</c>: empty (automatic), ISTIO_MUTUAL or DISABLE.</summary>
    public string TlsMode { get; set; } = string.Empty;

    /// <summary>Gets whether retries may go to endpoints in other localities.</summary>
    public bool RetryRemoteLocalities { get; set; }

    /// <summary>Gets whether a retry avoids the endpoints already tried.</summary>
    public bool AvoidTried { get; set; } = true;

    /// <summary>Gets or sets whether a retry has been counted as in flight and its attempt has not started yet.</summary>
    public bool RetryReserved { get; set; }

    /// <summary>Gets or sets whether a retry was refused by the retry budget or maxRetries.</summary>
    public bool RetryOverflow { get; set; }

    public string? SetCookie { get; set; }

    /// <summary>Gets or sets the call's strong session affinity (its route's, else its destination's), if any.</summary>
    public LoadBalancing.StickySession? Session { get; set; }

    /// <summary>Gets or sets the endpoint (<c>address:port</c>) the call's session cookie or header names, if any.</summary>
    public string? Pinned { get; set; }

    /// <summary>Gets or sets the endpoint (<c>address:port</c>) of the last attempt.</summary>
    public string? ServedBy { get; set; }

    /// <summary>Gets the called service's host (for messages).</summary>
    public string ServiceHost { get; set; } = string.Empty;

    /// <summary>Gets which of the headers a sidecar adds the call gets (MeshConfig's <c>proxyHeaders</c>).</summary>
    public Protocol.V1.ProxyHeaders Headers { get; set; } = Http.ProxyHeaderValues.Defaults;

    /// <summary>Gets the route that matched.</summary>
    public Routing.RouteEntry Route { get; set; } = null!;

    /// <summary>Gets the destination the route picked.</summary>
    public Routing.RouteTarget Target { get; set; } = null!;

    /// <summary>Gets the route's timeout and retry policy, if any.</summary>
    public RouteResilience? Resilience { get; set; }

    /// <summary>Gets whether an injected delay was applied (the DI response flag).</summary>
    public bool Delayed { get; set; }

    /// <summary>Gets whether the call goes to the host the caller named (ServiceEntry resolution NONE).</summary>
    public bool Passthrough { get; set; }

    /// <summary>Gets the authority the upstream sees (the Host header sent).</summary>
    public string Authority { get; set; } = string.Empty;

    /// <summary>Gets the caller's own Host header, put back when the call ends.</summary>
    public string? OriginalHost { get; set; }

    /// <summary>Gets whether the Host header was replaced for the call.</summary>
    public bool HostChanged { get; set; }

    /// <summary>Gets the header edits to undo when the call ends.</summary>
    public Routing.HeaderRestore? Restore { get; set; }

    /// <summary>Gets or sets the first attempt's outcome, handed to the retry pipeline as its own first attempt's.</summary>
    public Outcome<HttpResponseMessage> PendingOutcome { get; set; }

    /// <summary>Gets or sets whether <see cref="PendingOutcome"/> is still to be handed over.</summary>
    public bool HasPendingOutcome { get; set; }

    /// <summary>Gets where the attempt that answered leaves who answered, for the caller's metrics and access log; null when nothing records it.</summary>
    public Http.Answer? Answer { get; set; }

    /// <summary>Takes a cleared state (the thread's cached one, or a new one).</summary>
    /// <remarks>
    /// A call gives it back when it ends: nothing keeps a state past its call (Polly awaits every attempt, even a
    /// timed-out one, before the call returns).
    /// </remarks>
    public static AttemptState Rent() => PerThread<AttemptState>.Rent();

    /// <summary>Clears a state whose call has ended and keeps it for the next call on this thread.</summary>
    public static void Return(AttemptState state)
    {
        state.Request = null!;
        state.Uri = null!;
        state.Endpoints = null!;
        state.PathAndQuery = string.Empty;
        state.Cluster = null;
        state.Limits = null;
        state.CallerToken = default;
        state.Transport = null;
        state.TlsMode = string.Empty;
        state.RetryRemoteLocalities = false;
        state.AvoidTried = true;
        state.RetryReserved = false;
        state.RetryOverflow = false;
        state.SetCookie = null;
        state.Session = null;
        state.Pinned = null;
        state.ServedBy = null;
        state.ServiceHost = string.Empty;
        state.Headers = Http.ProxyHeaderValues.Defaults;
        state.Route = null!;
        state.Target = null!;
        state.Resilience = null;
        state.Delayed = false;
        state.Passthrough = false;
        state.Authority = string.Empty;
        state.OriginalHost = null;
        state.HostChanged = false;
        state.Restore = null;
        state.PendingOutcome = default;
        state.HasPendingOutcome = false;
        state.Answer = null;
        state.Port = 0;
        state.Idempotent = false;
        state.Replayable = false;
        state.Attempted = 0;
        state._firstTried = null;
        state._moreTried?.Clear();
        PerThread<AttemptState>.Return(state);
    }
}

/// <summary>
/// A route's timeout and retry policy. The route timeout is a deadline over the whole call (retries and their
/// backoff included), kept by the handler with the runtime's timer; retries (conditions, full-jitter exponential
/// backoff, server pushback, budget) and the per-try timeout are a Polly pipeline, compiled once per policy, that takes
/// over from the first attempt's outcome when that outcome may be retried. Each attempt picks an endpoint afresh,
/// avoiding the ones already tried.
/// </summary>
internal sealed class RouteResilience
{
    private string? _expectedTimeoutText;

    /// <summary>Envoy's default base interval of the retries' backoff (a route's <c>retries.backoff</c> sets it); the cap is ten times it.</summary>
    internal static readonly TimeSpan BaseDelay = TimeSpan.FromMilliseconds(25);

    internal static readonly ResiliencePropertyKey<AttemptState> StateKey = new("meshkit.attempt");

    // Pipelines for the requests whose x-envoy-* headers change the retries, by what they change; a few at most in
    // practice (an application sends constants), and bounded so that varying values cannot grow it.
    private const int MaxVariants = 32;
    private System.Collections.Concurrent.ConcurrentDictionary<(string RetryOn, string Codes, int Attempts, TimeSpan? PerTry), (ResiliencePipeline<HttpResponseMessage>, RetryConditions)>? _variants;
    private readonly TimeSpan _backoff;
    private readonly TimeProvider _time;

    private RouteResilience(ResiliencePipeline<HttpResponseMessage> pipeline, RetryConditions conditions, int attempts, TimeSpan? timeout, TimeSpan? perTryTimeout, FaultPlan? fault, bool retryNonIdempotent, bool retryRemoteLocalities, bool avoidTried, TimeSpan backoff, TimeProvider time)
    {
        _backoff = backoff;
        _time = time;
        RetryRemoteLocalities = retryRemoteLocalities;
        AvoidTried = avoidTried;
        Pipeline = pipeline;
        Conditions = conditions;
        Attempts = attempts;
        Timeout = timeout;
        PerTryTimeout = perTryTimeout;
        Fault = fault;
        RetryNonIdempotent = retryNonIdempotent;
        PerTryFirst = perTryTimeout is { } perTry && (timeout is not { } overall || perTry < overall);
        FirstDeadline = PerTryFirst ? perTryTimeout : timeout;
    }

    /// <summary>Gets the retry pipeline (retries around the per-try timeout); empty when the route has no retries.</summary>
    public ResiliencePipeline<HttpResponseMessage> Pipeline { get; }

    /// <summary>Gets the compiled <c>retryOn</c> and retriable status codes.</summary>
    public RetryConditions Conditions { get; }

    public int Attempts { get; }

    /// <summary>Gets the route timeout: the whole call's deadline, retries included.</summary>
    public TimeSpan? Timeout { get; }

    /// <summary>Gets the deadline of each attempt.</summary>
    public TimeSpan? PerTryTimeout { get; }

    /// <summary>Gets whether the per-try timeout ends the first attempt before the route timeout would.</summary>
    public bool PerTryFirst { get; }

    /// <summary>Gets the first attempt's deadline: the sooner of the per-try and the route timeout; null when neither is set.</summary>
    public TimeSpan? FirstDeadline { get; }

    /// <summary>Gets <see cref="FirstDeadline"/> in whole milliseconds as text (Envoy's <c>x-envoy-expected-rq-timeout-ms</c>); null without one.</summary>
    public string? ExpectedTimeoutText => _expectedTimeoutText ??= FirstDeadline is { } due ? Http.ProxyHeaderValues.Text((long)due.TotalMilliseconds) : null;

    public FaultPlan? Fault { get; }

    public bool RetryNonIdempotent { get; }

    public bool RetryRemoteLocalities { get; }

    /// <summary>Gets whether a retry avoids the endpoints already tried (Istio's default; <c>retryIgnorePreviousHosts: false</c> turns it off).</summary>
    public bool AvoidTried { get; }

    /// <summary>Compiles a route's resilience, sharing the Polly pipeline with every route of the same policy.</summary>
    public static RouteResilience Create(HttpRoute route, Pipelines pipelines, RetryPolicy? meshDefault = null)
    {
        // A route without retries takes MeshConfig's defaultHttpRetryPolicy, else Istio's default (2 attempts).
        var retries = route.Retries ?? meshDefault;
        var timeout = route.HasTimeoutMs && route.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(route.TimeoutMs) : (TimeSpan?)null;
        var attempts = retries is { } explicitPolicy ? (int)explicitPolicy.Attempts : 2;
        var perTry = retries is { PerTryTimeoutMs: > 0 } p ? TimeSpan.FromMilliseconds(p.PerTryTimeoutMs) : (TimeSpan?)null;
        var (pipeline, conditions) = pipelines.For(retries, attempts, perTry, route.RetryNonIdempotent);
        var remote = retries is { HasRetryRemoteLocalities: true, RetryRemoteLocalities: true };
        var avoidTried = retries is not { HasRetryIgnorePreviousHosts: true, RetryIgnorePreviousHosts: false };
        var backoff = Backoff(retries);
        return route.Fault is null
            ? pipelines.Shared(pipeline, conditions, attempts, timeout, perTry, route.RetryNonIdempotent, remote, avoidTried, backoff)
            : new RouteResilience(pipeline, conditions, attempts, timeout, perTry, FaultPlan.Create(route.Fault), route.RetryNonIdempotent, remote, avoidTried, backoff, pipelines.Time);
    }

    private static TimeSpan Backoff(RetryPolicy? retries) => retries is { BackoffMs: > 0 } b ? TimeSpan.FromMilliseconds(b.BackoffMs) : BaseDelay;

    /// <summary>
    /// This policy as a request's <c>x-envoy-*</c> headers change it, by Envoy's rules: the route timeout and the
    /// per-try timeout are replaced (0 turns either off); the retry conditions and codes are added to the route's; a
    /// route that retries nothing retries once when the request names conditions; <c>x-envoy-max-retries</c> sets the
    /// count where anything is retried. Only a request that carries such a header pays for the object; a change of the
    /// retries takes a pipeline built once per distinct change.
    /// </summary>
    public RouteResilience WithOverrides(in ResilienceOverrides overrides)
    {
        var timeout = overrides.Timeout is { } t ? (t > TimeSpan.Zero ? t : null) : Timeout;
        if (!overrides.ChangesRetries)
        {
            return new RouteResilience(Pipeline, Conditions, Attempts, timeout, PerTryTimeout, Fault, RetryNonIdempotent, RetryRemoteLocalities, AvoidTried, _backoff, _time);
        }

        var perTry = overrides.PerTryTimeout is { } p ? (p > TimeSpan.Zero ? p : null) : PerTryTimeout;
        var attempts = Attempts == 0 && overrides.RetryOn is not null ? 1 : Attempts;
        if (attempts > 0 && overrides.MaxRetries is { } max)
        {
            attempts = max;
        }

        var key = (string.Join(',', overrides.RetryOn ?? []), string.Join(',', overrides.RetriableStatusCodes ?? []), attempts, perTry);
        var variants = LazyInitializer.EnsureInitialized(ref _variants);
        if (!variants.TryGetValue(key, out var variant))
        {
            var conditions = overrides.RetryOn is null && overrides.RetriableStatusCodes is null
                ? Conditions
                : Conditions.With(overrides.RetryOn ?? [], overrides.RetriableStatusCodes ?? []);
            variant = (Build(conditions, attempts, perTry, RetryNonIdempotent, _backoff, _time), conditions);
            if (variants.Count < MaxVariants)
            {
                variants.TryAdd(key, variant);
            }
        }

        return new RouteResilience(variant.Item1, variant.Item2, attempts, timeout, perTry, Fault, RetryNonIdempotent, RetryRemoteLocalities, AvoidTried, _backoff, _time);
    }

    /// <summary>
    /// Whether an attempt's outcome is one this policy retries, before the retry budget is asked: a replayable
    /// request, a failure or response its conditions name, and the idempotency rule. Has no side effects.
    /// </summary>
    public bool MayRetry(AttemptState state, Outcome<HttpResponseMessage> outcome) =>
        Attempts > 0 && Retriable(Conditions, RetryNonIdempotent, state, outcome);

    private static bool Retriable(RetryConditions conditions, bool retryNonIdempotent, AttemptState state, Outcome<HttpResponseMessage> outcome)
    {
        if (!state.Replayable)
        {
            return false;
        }

        var failure = outcome.Exception is { } ex ? RetryConditions.Classify(ex) : AttemptFailure.None;
        if (outcome.Exception is not null && failure == AttemptFailure.None)
        {
            return false;
        }

        return conditions.ShouldRetry(outcome.Result, failure, state.Idempotent || retryNonIdempotent) && !RetryConditions.ServerRefusesRetry(outcome.Result);
    }

    private static ResiliencePipeline<HttpResponseMessage> Build(RetryConditions conditions, int attempts, TimeSpan? perTry, bool retryNonIdempotent, TimeSpan backoff, TimeProvider time)
    {
        if (attempts <= 0)
        {
            // A single attempt never enters a pipeline: its per-try deadline is the handler's.
            return ResiliencePipeline<HttpResponseMessage>.Empty;
        }

        var builder = new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = time };
        builder.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
        {
            MaxRetryAttempts = attempts,
            ShouldHandle = args =>
            {
                var state = args.Context.Properties.GetValue(StateKey, null!);
                if (state is null || !Retriable(conditions, retryNonIdempotent, state, args.Outcome))
                {
                    return new ValueTask<bool>(false);
                }

                if (!WithinBudget(state))
                {
                    state.RetryOverflow = true;
                    return new ValueTask<bool>(false);
                }

                // A retry counts against the budget from now (through its backoff) until its attempt ends.
                if (state.Cluster is { } cluster)
                {
                    Interlocked.Increment(ref cluster._activeRetries);
                    state.RetryReserved = true;
                }

                return new ValueTask<bool>(true);
            },
            DelayGenerator = args => new ValueTask<TimeSpan?>(RetryConditions.Pushback(args.Outcome.Result, time) ?? FullJitter(args.AttemptNumber, backoff)),
            OnRetry = args =>
            {
                args.Outcome.Result?.Dispose();
                return default;
            },
        });

        if (perTry is { } tryTimeout)
        {
            builder.AddTimeout(tryTimeout);
        }

        return builder.Build();
    }

    /// <summary>
    /// The Polly pipelines of one snapshot, one per distinct policy (retries, attempts, per-try timeout,
    /// retryNonIdempotent): a pipeline holds no per-route state (everything a request needs travels in its
    /// <see cref="AttemptState"/>), so a mesh of thousands of routes on Istio's default retry policy builds and keeps
    /// one, not thousands.
    /// </summary>
    internal sealed class Pipelines(TimeProvider time)
    {
        /// <summary>Gets the clock of the pipelines' delays and timeouts.</summary>
        public TimeProvider Time => time;

        private readonly Dictionary<(RetryPolicy? Retries, int Attempts, TimeSpan? PerTry, bool RetryNonIdempotent), (ResiliencePipeline<HttpResponseMessage>, RetryConditions)> _built = [];

        public (ResiliencePipeline<HttpResponseMessage> Pipeline, RetryConditions Conditions) For(RetryPolicy? retries, int attempts, TimeSpan? perTry, bool retryNonIdempotent)
        {
            var key = (retries, attempts, perTry, retryNonIdempotent);
            if (!_built.TryGetValue(key, out var built))
            {
                // As Istio: a policy starts from the default one, whose conditions a retryOn (conditions or bare codes) replaces.
                var conditions = retries is { } policy && (policy.RetryOn.Count > 0 || policy.RetriableStatusCodes.Count > 0)
                    ? new RetryConditions(policy.RetryOn, policy.RetriableStatusCodes)
                    : RetryConditions.IstioDefault;
                built = (Build(conditions, attempts, perTry, retryNonIdempotent, Backoff(retries), time), conditions);
                _built[key] = built;
            }

            return built;
        }

        private readonly Dictionary<(ResiliencePipeline<HttpResponseMessage>, RetryConditions, int, TimeSpan?, TimeSpan?, bool, bool, bool, TimeSpan), RouteResilience> _shared = [];

        /// <summary>One policy object for every route without fault injection that has the same policy (it holds no per-route state).</summary>
        public RouteResilience Shared(ResiliencePipeline<HttpResponseMessage> pipeline, RetryConditions conditions, int attempts, TimeSpan? timeout, TimeSpan? perTry, bool retryNonIdempotent, bool retryRemoteLocalities, bool avoidTried, TimeSpan backoff)
        {
            var key = (pipeline, conditions, attempts, timeout, perTry, retryNonIdempotent, retryRemoteLocalities, avoidTried, backoff);
            if (!_shared.TryGetValue(key, out var shared))
            {
                shared = new RouteResilience(pipeline, conditions, attempts, timeout, perTry, null, retryNonIdempotent, retryRemoteLocalities, avoidTried, backoff, time);
                _shared[key] = shared;
            }

            return shared;
        }
    }

    /// <summary>
    /// Retries in flight to the cluster stay under <c>maxRetries</c> and under the retry budget: <c>percent</c> of the
    /// requests in flight, but at least <c>minRetryConcurrency</c>.
    /// </summary>
    internal static bool WithinBudget(AttemptState state)
    {
        if (state.Cluster is not { } cluster || state.Limits is not { } limits)
        {
            return true;
        }

        var retries = cluster.ActiveRetries;
        if (limits.MaxRetries > 0 && retries >= limits.MaxRetries)
        {
            return false;
        }

        if (limits.RetryBudgetPercent > 0)
        {
            var allowed = Math.Max(limits.MinRetryConcurrency, (int)(limits.RetryBudgetPercent / 100 * cluster.ActiveRequests));
            return retries < allowed;
        }

        return true;
    }

    /// <summary>Full jitter, as Envoy's backoff: uniform between 0 and min(10 × base, base × 2^attempt).</summary>
    internal static TimeSpan FullJitter(int attempt, TimeSpan baseDelay)
    {
        var ceiling = Math.Min(10 * baseDelay.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 16)));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
    }
}

/// <summary>A route's <c>fault</c>, decided per request before it leaves.</summary>
internal sealed class FaultPlan
{
    private static readonly Dictionary<string, int> GrpcCodes = new(StringComparer.Ordinal)
    {
        ["OK"] = 0, ["CANCELLED"] = 1, ["UNKNOWN"] = 2, ["INVALID_ARGUMENT"] = 3, ["DEADLINE_EXCEEDED"] = 4, ["NOT_FOUND"] = 5,
        ["ALREADY_EXISTS"] = 6, ["PERMISSION_DENIED"] = 7, ["RESOURCE_EXHAUSTED"] = 8, ["FAILED_PRECONDITION"] = 9, ["ABORTED"] = 10,
        ["OUT_OF_RANGE"] = 11, ["UNIMPLEMENTED"] = 12, ["INTERNAL"] = 13, ["UNAVAILABLE"] = 14, ["DATA_LOSS"] = 15, ["UNAUTHENTICATED"] = 16,
    };

    private FaultPlan(TimeSpan delay, double delayPercent, HttpStatusCode abortStatus, int? grpcStatus, double abortPercent)
    {
        Delay = delay;
        DelayPercent = delayPercent;
        AbortStatus = abortStatus;
        GrpcStatus = grpcStatus;
        AbortPercent = abortPercent;
    }

    public TimeSpan Delay { get; }

    public double DelayPercent { get; }

    public HttpStatusCode AbortStatus { get; }

    public int? GrpcStatus { get; }

    public double AbortPercent { get; }

    public static FaultPlan? Create(FaultInjection? fault) => fault is null ? null : new FaultPlan(
        TimeSpan.FromMilliseconds(fault.Delay?.FixedDelayMs ?? 0),
        fault.Delay?.Percentage ?? 0,
        (HttpStatusCode)(fault.Abort?.HttpStatus ?? 0),
        fault.Abort is { GrpcStatus.Length: > 0 } abort ? GrpcCodes[abort.GrpcStatus] : null,
        fault.Abort?.Percentage ?? 0);

    public bool ShouldDelay() => DelayPercent > 0 && Delay > TimeSpan.Zero && Random.Shared.NextDouble() * 100 < DelayPercent;

    public bool ShouldAbort() => AbortPercent > 0 && Random.Shared.NextDouble() * 100 < AbortPercent;
}
