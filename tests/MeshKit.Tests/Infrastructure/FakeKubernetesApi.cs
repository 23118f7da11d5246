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
    private readonly List<(string Path, string? Namespace, Channel<string> Events)> _watches = [];
    private readonly HashSet<string> _notServed = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _lists = new(StringComparer.Ordinal);
    private readonly List<(string Token, string[] Audiences)> _reviews = [];
    private WebApplication _app = null!;
    private long _version = 1000;
    private long _expiredBefore;
    private int _applies;
    private int _statusWrites;
    private readonly Dictionary<string, int> _refused = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _watchesStarted = new(StringComparer.Ordinal);
    private bool _stopping;
    private string _token = Token;

    public Uri Address { get; private set; } = null!;

    /// <summary>Gets a file holding the token this server takes, as the kubelet mounts a pod's.</summary>
    public string TokenFile { get; private set; } = null!;

    /// <summary>Points a control plane at this server, with its token.</summary>
    public void Configure(MeshKit.ControlPlane.ControlPlaneOptions options)
    {
        options.KubernetesApiServer = Address.ToString();
        options.KubernetesApiTokenFile = TokenFile;
        options.KubernetesApiCaFile = string.Empty;
    }

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
        api._app.MapMethods("/{**path}", ["PATCH"], api.ApplyAsync);
        api._app.MapPost("/apis/authentication.k8s.io/v1/tokenreviews", api.ReviewAsync);
        await api._app.StartAsync();
        var port = new Uri(api._app.Urls.First()).Port;
        api.TokenFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(api.TokenFile, token + "\n");
        api.Address = new Uri(certificate is null ? $"http://127.0.0.1:{port}/" : $"https://localhost:{port}/");
        return api;
    }

    /// <summary>Gets or sets whether a watch ends as soon as it starts (a proxy that closes long polls), with nothing in it.</summary>
    public bool EndWatchesAtOnce { get; set; }

    /// <summary>How many watches of a path were started.</summary>
    public int Watches(string path)
    {
        lock (_lock)
        {
            return _watchesStarted.GetValueOrDefault(path);
        }
    }

    /// <summary>How many requests for a path were refused for want of the token.</summary>
    public int Refused(string path)
    {
        lock (_lock)
        {
            return _refused.GetValueOrDefault(path);
        }
    }

    /// <summary>
    /// Gets or sets how the server reviews a token (a TokenReview): the review's <c>status</c> for the token and the
    /// audiences asked for. Default: none, and a review is refused (403), as for a role without <c>create tokenreviews</c>.
    /// </summary>
    public Func<string, string[], JsonObject>? Reviewer { get; set; }

    /// <summary>Gets the reviews asked for: each token and its audiences.</summary>
    public IReadOnlyList<(string Token, string[] Audiences)> Reviews
    {
        get
        {
            lock (_lock)
            {
                return [.. _reviews];
            }
        }
    }

    /// <summary>Gets or sets whether status writes are refused (403), as for a role without <c>patch</c> on the status subresource.</summary>
    public bool RefuseStatus { get; set; }

    /// <summary>Gets how many status writes were made.</summary>
    public int StatusWrites
    {
        get
        {
            lock (_lock)
            {
                return _statusWrites;
            }
        }
    }

    /// <summary>Gets how many server-side applies were made.</summary>
    public int Applies => Volatile.Read(ref _applies);

    /// <summary>An object of a collection, or null.</summary>
    public JsonObject? Get(string path, string ns, string name)
    {
        lock (_lock)
        {
            return Collection(path).TryGetValue($"{ns}/{name}", out var entry) ? entry.DeepClone().AsObject() : null;
        }
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

    /// <summary>
    /// Forgets the history so far, as the API server compacts it: every watch ends with ERROR 410, and so does one
    /// that starts from a version before now (a client that listed before, and had not started its watch yet): the
    /// client must list again.
    /// </summary>
    public void ExpireWatches()
    {
        lock (_lock)
        {
            _events.Clear();
            _expiredBefore = _version;
            foreach (var (_, _, events) in _watches)
            {
                events.Writer.TryWrite(Expired);
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
            foreach (var (_, _, events) in _watches)
            {
                events.Writer.TryComplete();
            }
        }

        await _app.StopAsync();
        await _app.DisposeAsync();
        File.Delete(TokenFile);
    }

    private const string Expired = """{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}""";

    private static string Key(JsonObject entry) => $"{NamespaceOf(entry)}/{entry["metadata"]!["name"]!.GetValue<string>()}";

    private static string NamespaceOf(JsonObject entry) => entry["metadata"]?["namespace"]?.GetValue<string>() ?? "default";

    // A namespace's collection (api/v1/namespaces/shop/services) is the collection's objects of that namespace.
    private static (string Collection, string? Namespace) Scope(string path)
    {
        var match = System.Text.RegularExpressions.Regex.Match(path, "^(?<before>.*?)namespaces/(?<ns>[^/]+)/(?<plural>[^/]+)$");
        return match.Success ? (match.Groups["before"].Value + match.Groups["plural"].Value, match.Groups["ns"].Value) : (path, null);
    }

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
        foreach (var (watched, ns, events) in _watches)
        {
            if (watched == path && (ns is null || ns == NamespaceOf(entry)))
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
            lock (_lock)
            {
                _refused[path] = _refused.GetValueOrDefault(path) + 1;
            }

            context.Response.StatusCode = 401;
            await context.Response.WriteAsync("""{"kind":"Status","message":"Unauthorized","code":401}""");
            return;
        }

        if (_notServed.Contains(Scope(path).Collection) || !(path.StartsWith("api/", StringComparison.Ordinal) || path.StartsWith("apis/", StringComparison.Ordinal)))
        {
            context.Response.StatusCode = 404;
            await context.Response.WriteAsync("""{"kind":"Status","message":"the server could not find the requested resource","reason":"NotFound","code":404}""");
            return;
        }

        var (collection, scope) = Scope(path);
        if (context.Request.Query["watch"] == "1")
        {
            await WatchAsync(context, collection, scope, long.Parse(context.Request.Query["resourceVersion"].ToString(), System.Globalization.CultureInfo.InvariantCulture));
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

            var all = Collection(collection).Values.Where(e => scope is null || NamespaceOf(e) == scope).ToList();
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

    // A TokenReview (POST, JSON): the status the reviewer gives, or 403 without one; 401 without the control plane's token.
    private async Task ReviewAsync(HttpContext context)
    {
        if (context.Request.Headers.Authorization != $"Bearer {_token}")
        {
            context.Response.StatusCode = 401;
            return;
        }

        using var reader = new StreamReader(context.Request.Body);
        var review = JsonNode.Parse(await reader.ReadToEndAsync())!.AsObject();
        var token = review["spec"]!["token"]!.GetValue<string>();
        string[] audiences = [.. (review["spec"]!["audiences"]?.AsArray() ?? []).Select(a => a!.GetValue<string>())];
        lock (_lock)
        {
            _reviews.Add((token, audiences));
        }

        context.Response.ContentType = "application/json";
        if (Reviewer is not { } reviewer)
        {
            context.Response.StatusCode = 403;
            await context.Response.WriteAsync("""{"kind":"Status","apiVersion":"v1","status":"Failure","message":"tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:meshkit-system:meshkit-controlplane\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope","reason":"Forbidden","code":403}""");
            return;
        }

        review["status"] = reviewer(token, audiences);
        await context.Response.WriteAsync(review.ToJsonString());
    }

    // A merge patch of an object's status subresource (PATCH .../namespaces/{ns}/{plural}/{name}/status): only its
    // status changes; a resourceVersion in the patch that is not the object's is a conflict (409), as the API server
    // takes it as a precondition.
    private async Task PatchStatusAsync(HttpContext context, string path)
    {
        var match = System.Text.RegularExpressions.Regex.Match(path, "^(?<before>.*?)namespaces/(?<ns>[^/]+)/(?<plural>[^/]+)/(?<name>[^/]+)$");
        if (context.Request.Headers.Authorization != $"Bearer {_token}" || !match.Success || context.Request.ContentType?.StartsWith("application/merge-patch+json", StringComparison.Ordinal) != true)
        {
            context.Response.StatusCode = 400;
            return;
        }

        if (RefuseStatus)
        {
            context.Response.StatusCode = 403;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"kind":"Status","apiVersion":"v1","status":"Failure","message":"httproutes.gateway.networking.k8s.io \"reviews\" is forbidden: User \"system:serviceaccount:meshkit-system:meshkit-controlplane\" cannot patch resource \"httproutes/status\"","reason":"Forbidden","code":403}""");
            return;
        }

        using var reader = new StreamReader(context.Request.Body);
        var patch = JsonNode.Parse(await reader.ReadToEndAsync())!.AsObject();
        var collection = match.Groups["before"].Value + match.Groups["plural"].Value;
        JsonObject? updated = null;
        lock (_lock)
        {
            var objects = Collection(collection);
            var key = $"{match.Groups["ns"].Value}/{match.Groups["name"].Value}";
            if (!objects.TryGetValue(key, out var entry))
            {
                context.Response.StatusCode = 404;
                return;
            }

            if (patch["metadata"]?["resourceVersion"]?.GetValue<string>() is { } expected && expected != entry["metadata"]!["resourceVersion"]!.GetValue<string>())
            {
                context.Response.StatusCode = 409;
                return;
            }

            entry["status"] = patch["status"]?.DeepClone();
            entry["metadata"]!["resourceVersion"] = (++_version).ToString(System.Globalization.CultureInfo.InvariantCulture);
            _statusWrites++;
            Record(collection, "MODIFIED", entry);
            updated = entry.DeepClone().AsObject();
        }

        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(updated.ToJsonString());
    }

    // Server-side apply of a namespaced object (PATCH .../namespaces/{ns}/{plural}/{name}, application/apply-patch+yaml):
    // the body is the object, stored in its collection.
    private async Task ApplyAsync(HttpContext context, string path)
    {
        if (path.EndsWith("/status", StringComparison.Ordinal))
        {
            await PatchStatusAsync(context, path[..^"/status".Length]);
            return;
        }

        var match = System.Text.RegularExpressions.Regex.Match(path, "^(?<before>.*?)namespaces/(?<ns>[^/]+)/(?<plural>[^/]+)/(?<name>[^/]+)$");
        if (context.Request.Headers.Authorization != $"Bearer {_token}" || !match.Success
            || context.Request.ContentType != "application/apply-patch+yaml" || context.Request.Query["fieldManager"].Count == 0)
        {
            context.Response.StatusCode = 400;
            return;
        }

        using var reader = new StreamReader(context.Request.Body);
        var entry = JsonNode.Parse(await reader.ReadToEndAsync())!.AsObject();
        if (entry["metadata"]?["namespace"]?.GetValue<string>() != match.Groups["ns"].Value || entry["metadata"]?["name"]?.GetValue<string>() != match.Groups["name"].Value)
        {
            context.Response.StatusCode = 400;
            return;
        }

        Interlocked.Increment(ref _applies);
        Put(match.Groups["before"].Value + match.Groups["plural"].Value, entry.ToJsonString());
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(entry.ToJsonString());
    }

    private async Task WatchAsync(HttpContext context, string path, string? scope, long from)
    {
        var events = Channel.CreateUnbounded<string>();
        lock (_lock)
        {
            // What happened since the version the watch starts from, then what happens next.
            foreach (var (version, watched, type, entry) in _events)
            {
                if (watched == path && version > from && (scope is null || NamespaceOf(entry) == scope))
                {
                    events.Writer.TryWrite(Event(type, entry));
                }
            }

            _watches.Add((path, scope, events));
            _watchesStarted[path] = _watchesStarted.GetValueOrDefault(path) + 1;
            if (from < _expiredBefore)
            {
                events.Writer.TryWrite(Expired);
                events.Writer.TryComplete();
            }

            if (_stopping || EndWatchesAtOnce)
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
