using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace MeshKit.ControlPlane.Sources;

/// <summary>
/// Fetches the JSON Web Key Sets that RequestAuthentications name by <c>jwksUri</c>, so that workloads receive keys
/// rather than fetch them (Istio's istiod does the same). Keys are refreshed every
/// <see cref="ControlPlaneOptions.JwksRefreshInterval"/>; a failed refresh keeps the last good keys; an issuer whose
/// keys were never fetched gets none, and its tokens are rejected. Loopback, link-local and unspecified addresses are
/// refused (they reach the control plane's own host or cloud metadata) unless
/// <see cref="ControlPlaneOptions.AllowLocalJwksUris"/> is set.
/// </summary>
internal sealed partial class JwksCache : BackgroundService
{
    private const int MaxJwksBytes = 1024 * 1024;

    /// <summary>How long a fetch may take when no rule naming the URI sets <c>timeout</c>.</summary>
    internal static readonly TimeSpan DefaultFetchTimeout = TimeSpan.FromSeconds(10);
    private readonly IConfigStore _store;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<JwksCache> _logger;
    private readonly HttpClient _http;
    private readonly SemaphoreSlim _wake = new(0);
    private ImmutableDictionary<string, string> _keys = ImmutableDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
    private readonly ChangeSignal _changed = new();

    public JwksCache(IConfigStore store, IOptions<ControlPlaneOptions> options, TimeProvider time, ILogger<JwksCache> logger)
    {
        _store = store;
        _options = options.Value;
        _time = time;
        _logger = logger;
        var allowLocal = _options.AllowLocalJwksUris;
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            ConnectCallback = async (context, cancellationToken) =>
            {
                // Resolve here, so that the address checked is the address connected to.
                var addresses = await Dns.GetHostAddressesAsync(context.DnsEndPoint.Host, cancellationToken).ConfigureAwait(false);
                var allowed = addresses.Where(a => allowLocal || !IsLocal(a)).ToArray();
                if (allowed.Length == 0)
                {
                    throw new HttpRequestException($"{context.DnsEndPoint.Host} resolves only to loopback or link-local addresses; set ControlPlane:AllowLocalJwksUris to allow them");
                }

                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        })
        {
            // Per fetch instead (a rule's timeout).
            Timeout = System.Threading.Timeout.InfiniteTimeSpan,
            MaxResponseContentBufferSize = MaxJwksBytes,
        };
        ChangeToken.OnChange(store.GetReloadToken, () => _wake.Release());
    }

    /// <summary>Gets the keys fetched so far, by URI.</summary>
    public IReadOnlyDictionary<string, string> Keys => Volatile.Read(ref _keys);

    public IChangeToken GetChangeToken() => _changed.Token;

    public override void Dispose()
    {
        _http.Dispose();
        _wake.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            await RefreshAsync(stoppingToken).ConfigureAwait(false);
            try
            {
                await _wake.WaitAsync(_options.JwksRefreshInterval, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var config = _store.Current;
        var wanted = config.JwksUris.ToHashSet(StringComparer.Ordinal);
        var keys = Keys.Where(k => wanted.Contains(k.Key)).ToDictionary(k => k.Key, k => k.Value, StringComparer.Ordinal);
        foreach (var uri in wanted)
        {
            try
            {
                using var deadline = new CancellationTokenSource(config.JwksTimeout(uri, DefaultFetchTimeout), _time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken);
                var json = await _http.GetStringAsync(new Uri(uri), linked.Token).ConfigureAwait(false);
                _ = new Microsoft.IdentityModel.Tokens.JsonWebKeySet(json); // refuse what is not a key set
                keys[uri] = json;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or ArgumentException or System.Text.Json.JsonException or UriFormatException)
            {
                Log.FetchFailed(_logger, uri, ex.Message, keys.ContainsKey(uri));
            }
        }

        var updated = keys.ToImmutableDictionary(StringComparer.Ordinal);
        var old = Keys;
        if (updated.Count != old.Count || updated.Any(k => !old.TryGetValue(k.Key, out var v) || v != k.Value))
        {
            Volatile.Write(ref _keys, updated);
            await _changed.FireAsync().ConfigureAwait(false);
        }
    }

    private static bool IsLocal(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        return IPAddress.IsLoopback(address) || address.IsIPv6LinkLocal || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)
            || (address.AddressFamily == AddressFamily.InterNetwork && address.GetAddressBytes() is [169, 254, ..]);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Fetching the JWKS at {Uri} failed: {Error} (last good keys kept: {Kept})", EventName = "JwksFetchFailed")]
        public static partial void FetchFailed(ILogger logger, string uri, string error, bool kept);
    }
}
