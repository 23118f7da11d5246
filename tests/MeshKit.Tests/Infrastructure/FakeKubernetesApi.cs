using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshKit.Tests.Infrastructure;

/// <summary>
/// The part of a Kubernetes API server a control plane reads, on loopback (as <c>kubectl proxy</c> serves it): lists
/// (paged, with the list's resource version; items without kind and version, as the server leaves them out) and watches
/// (newline-delimited events from a resource version on, ERROR 410 when it expired), for the paths it serves; 404 for
/// the others (a CRD not installed); 401 without the control plane's token.
/// </summary>
internal sealed class FakeKubernetesApi : IAsyncDisposable
{
    public const string Token = "controlplane-token";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, SortedDictionary<string, JsonObject>> _objects = new(StringComparer.Ordinal);
    private readonly List<(long Version, string Path, string Type, JsonObject Object)> _events = [];
    private readonly List<(string Path, Channel<string> Events)> _watches = [];
    private readonly HashSet<string> _notServed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _lists = new(StringComparer.Ordinal);
    private WebApplication _app = null!;
    private long _version = 1000;
    private bool _stopping;
    private string _token = Token;

    public Uri Address { get; private set; } = null!;

    /// <summary>Starts one over plain HTTP (as <c>kubectl proxy</c> serves), or over TLS with a certificate of <paramref name="ca"/> (as the API server does).</summary>
    public static async Task<FakeKubernetesApi> StartAsync(string token = Token, ExternalCa? ca = null, params string[] notServed)
    {
        var api = new FakeKubernetesApi { _token = token };
        api._notServed.UnionWith(notServed);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var certificate = ca?.Leaf("localhost", server: true);
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, l =>
        {
            if (certificate is not null)
            {
                l.UseHttps(certificate);
            }
        }));
        api._app = builder.Build();
        api._app.MapGet("/{**path}", api.ServeAsync);
        await api._app.StartAsync();
        var port = new Uri(api._app.Urls.First()).Port;
        api.Address = new Uri(certificate is null ? $"http://127.0.0.1:{port}/" : $"https://localhost:{port}/");
        return api;
    }

    /// <summary>How many times a path was listed (the first page of each list).</summary>
    public int Lists(string path)
    {
        lock (_lock)
        {
            return _lists.GetValueOrDefault(path);
        }
    }

    /// <summary>Creates or replaces an object (JSON) at a collection path, and tells the watches.</summary>
    public void Put(string path, string json)
    {
        var entry = JsonNode.Parse(json)!.AsObject();
        lock (_lock)
        {
            var key = Key(entry);
            var objects = Collection(path);
            var type = objects.ContainsKey(key) ? "MODIFIED" : "ADDED";
            entry["metadata"]!["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            objects[key] = entry;
            Record(path, type, entry);
        }
    }

    /// <summary>Deletes an object and tells the watches (<paramref name="quietly"/>: tells no one, as if a watch had missed it).</summary>
    public void Delete(string path, string ns, string name, bool quietly = false)
    {
        lock (_lock)
        {
            if (Collection(path).Remove($"{ns}/{name}", out var entry))
            {
                ++_version;
                if (!quietly)
                {
                    Record(path, "DELETED", entry);
                }
            }
        }
    }

    /// <summary>Ends every watch with ERROR 410 (the version it watched from is too old): the client must list again.</summary>
    public void ExpireWatches()
    {
        lock (_lock)
        {
            _events.Clear();
            foreach (var (_, events) in _watches)
            {
                events.Writer.TryWrite("""{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}""");
                events.Writer.TryComplete();
            }

            _watches.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            // A client resumes a watch that ends: from now on every request is refused at once, so none waits for the stop.
            _stopping = true;
            foreach (var (_, events) in _watches)
            {
                events.Writer.TryComplete();
            }
        }

        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static string Key(JsonObject entry) => $"{entry["metadata"]?["namespace"]?.GetValue<string>() ?? "default"}/{entry["metadata"]!["name"]!.GetValue<string>()}";

    private SortedDictionary<string, JsonObject> Collection(string path)
    {
        if (!_objects.TryGetValue(path, out var objects))
        {
            _objects[path] = objects = new SortedDictionary<string, JsonObject>(StringComparer.Ordinal);
        }

        return objects;
    }

    private void Record(string path, string type, JsonObject entry)
    {
        _events.Add((_version, path, type, entry));
        var line = Event(type, entry);
        foreach (var (watched, events) in _watches)
        {
            if (watched == path)
            {
                events.Writer.TryWrite(line);
            }
        }
    }

    private static string Event(string type, JsonObject entry) => new JsonObject { ["type"] = type, ["object"] = entry.DeepClone() }.ToJsonString();

    private async Task ServeAsync(HttpContext context, string path)
    {
        if (Volatile.Read(ref _stopping))
        {
            context.Response.StatusCode = 503;
            return;
        }

        if (context.Request.Headers.Authorization != $"Bearer {_token}")
        {
            context.Response.StatusCode = 401;
            await context.Response.WriteAsync("""{"kind":"Status","message":"Unauthorized","code":401}""");
            return;
        }

        if (_notServed.Contains(path) || !(path.StartsWith("api/", StringComparison.Ordinal) || path.StartsWith("apis/", StringComparison.Ordinal)))
        {
            context.Response.StatusCode = 404;
            await context.Response.WriteAsync("""{"kind":"Status","message":"the server could not find the requested resource","reason":"NotFound","code":404}""");
            return;
        }

        if (context.Request.Query["watch"] == "1")
        {
            await WatchAsync(context, path, long.Parse(context.Request.Query["resourceVersion"].ToString(), System.Globalization.CultureInfo.InvariantCulture));
            return;
        }

        // A list, in pages of the asked size: the continue token is the index of the next item.
        var limit = int.TryParse(context.Request.Query["limit"], out var l) ? l : int.MaxValue;
        var start = int.TryParse(context.Request.Query["continue"], out var c) ? c : 0;
        JsonObject list;
        lock (_lock)
        {
            if (start == 0)
            {
                _lists[path] = _lists.GetValueOrDefault(path) + 1;
            }

            var all = Collection(path).Values.ToList();
            var items = new JsonArray();
            foreach (var entry in all.Skip(start).Take(limit))
            {
                var item = entry.DeepClone().AsObject();
                item.Remove("apiVersion");
                item.Remove("kind");
                items.Add(item);
            }

            var metadata = new JsonObject { ["resourceVersion"] = _version.ToString(System.Globalization.CultureInfo.InvariantCulture) };
            if (start + limit < all.Count)
            {
                metadata["continue"] = (start + limit).ToString(System.Globalization.CultureInfo.InvariantCulture);
            }

            list = new JsonObject { ["kind"] = "List", ["apiVersion"] = "v1", ["metadata"] = metadata, ["items"] = items };
        }

        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(list.ToJsonString());
    }

    private async Task WatchAsync(HttpContext context, string path, long from)
    {
        var events = Channel.CreateUnbounded<string>();
        lock (_lock)
        {
            // What happened since the version the watch starts from, then what happens next.
            foreach (var (version, watched, type, entry) in _events)
            {
                if (watched == path && version > from)
                {
                    events.Writer.TryWrite(Event(type, entry));
                }
            }

            _watches.Add((path, events));
            if (_stopping)
            {
                events.Writer.TryComplete();
            }
        }

        context.Response.ContentType = "application/json";
        await context.Response.Body.FlushAsync(context.RequestAborted);
        try
        {
            await foreach (var line in events.Reader.ReadAllAsync(context.RequestAborted))
            {
                await context.Response.WriteAsync(line + "\n", context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            lock (_lock)
            {
                _watches.RemoveAll(w => w.Events == events);
            }
        }
    }
}
