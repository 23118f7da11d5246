using System.Net;
using System.Text;
using System.Text.Json;
using MeshKit.ControlPlane;

namespace Bookinfo;

/// <summary>The Bookinfo services. Each is an ordinary ASP.NET Core app; AddMesh() is all it takes to join the mesh (it puts the inbound middleware first in the pipeline).</summary>
internal static class Services
{
    public static async Task<int> RunControlPlaneAsync(string[] args)
    {
        var app = ControlPlaneApp.Build(args.Where((a, i) => a != "--role" && (i == 0 || args[i - 1] != "--role")).ToArray());
        StopOnStdinClose(app.Lifetime);
        await app.RunAsync();
        return 0;
    }

    public static async Task<int> RunServiceAsync(string role, string[] args)
    {
        var version = Args.Get(args, "--version") ?? "v1";
        var port = Args.GetInt(args, "--port", 0);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Services.AddMesh(o =>
        {
            o.ServiceName = role;
            o.ServiceAccount = $"bookinfo-{role}";
            o.Labels["version"] = version;
            o.ServicePort = 9080;
            o.ControlPlaneAddress = new Uri(Args.Get(args, "--control-plane") ?? "http://127.0.0.1:15010");
            o.DrainDuration = TimeSpan.FromSeconds(1);
        });
        var app = builder.Build();
        StopOnStdinClose(app.Lifetime);
        var http = app.Services.GetRequiredService<IHttpClientFactory>();

        switch (role)
        {
            case "productpage":
                MapProductPage(app, http);
                break;
            case "details":
                app.MapGet("/details/{id:int}", (int id) => Results.Json(new Dictionary<string, object>
                {
                    ["id"] = id, ["author"] = "William Shakespeare", ["year"] = 1595, ["type"] = "paperback", ["pages"] = 200,
                    ["publisher"] = "PublisherA", ["language"] = "English", ["ISBN-10"] = "1234567890", ["ISBN-13"] = "123-1234567890",
                }));
                break;
            case "ratings":
                app.MapGet("/ratings/{id:int}", (int id) => Results.Json(new { id, ratings = new Dictionary<string, int> { ["Reviewer1"] = 5, ["Reviewer2"] = 4 } }));
                break;
            case "reviews":
                MapReviews(app, http, version);
                break;
            case "ext-authz":
                MapExtAuthz(app);
                break;
            default:
                Console.Error.WriteLine($"unknown role '{role}'");
                return 2;
        }

        app.MapGet("/health", () => Results.Text("ok"));
        app.MapMeshMetrics(); // Istio's standard metrics for Prometheus at /stats/prometheus, as a sidecar serves them
        await app.RunAsync();
        return 0;
    }

    // Istio's sample external authorization server (HTTP ext_authz): "x-ext-authz: allow" is allowed, anything else is
    // denied. AuthorizationPolicies with action CUSTOM send their requests here (config/tasks/authorization-policy-ext-authz.yaml).
    private static void MapExtAuthz(WebApplication app) => app.Map("/{**path}", (HttpContext context) =>
    {
        if (context.Request.Headers["x-ext-authz"] == "allow")
        {
            context.Response.Headers["x-ext-authz-check-result"] = "allowed";
            return Results.Ok();
        }

        context.Response.Headers["x-ext-authz-check-result"] = "denied";
        return Results.Text("denied by ext_authz for not found header `x-ext-authz: allow` in the request", statusCode: StatusCodes.Status403Forbidden);
    });

    private static void MapReviews(WebApplication app, IHttpClientFactory http, string version)
    {
        app.MapGet("/reviews/{id:int}", async (int id, HttpContext context) =>
        {
            var color = version switch { "v2" => "black", "v3" => "red", _ => null };
            Dictionary<string, int>? ratings = null;
            var ratingsError = false;
            if (color is not null)
            {
                try
                {
                    using var client = http.CreateClient("ratings");
                    client.Timeout = TimeSpan.FromSeconds(version == "v2" ? 10 : 2.5);
                    using var request = new HttpRequestMessage(HttpMethod.Get, $"http://ratings:9080/ratings/{id}");
                    Forward(context, request);
                    using var response = await client.SendAsync(request);
                    using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                    ratings = doc.RootElement.GetProperty("ratings").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    ratingsError = true;
                }
            }

            object? Rating(string reviewer) => color is null ? null
                : ratingsError ? new { error = "Ratings service is currently unavailable" }
                : new { stars = ratings!.GetValueOrDefault(reviewer), color };

            return Results.Json(new
            {
                id,
                podname = $"reviews-{version}",
                reviews = new[]
                {
                    new { reviewer = "Reviewer1", text = "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!", rating = Rating("Reviewer1") },
                    new { reviewer = "Reviewer2", text = "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.", rating = Rating("Reviewer2") },
                },
            });
        });
    }

    private static void MapProductPage(WebApplication app, IHttpClientFactory http)
    {
        app.MapGet("/", () => Results.Redirect("/productpage"));
        app.MapPost("/login", async (HttpContext context) =>
        {
            var form = await context.Request.ReadFormAsync();
            context.Response.Cookies.Append("user", form["username"].ToString());
            return Results.Redirect("/productpage");
        });
        app.MapGet("/logout", (HttpContext context) =>
        {
            context.Response.Cookies.Delete("user");
            return Results.Redirect("/productpage");
        });
        app.MapGet("/productpage", async (HttpContext context) =>
        {
            var user = context.Request.Cookies["user"] ?? string.Empty;
            var details = await FetchAsync(http, context, user, "details", "http://details:9080/details/0", TimeSpan.FromSeconds(3));
            var reviews = await FetchAsync(http, context, user, "reviews", "http://reviews:9080/reviews/0", TimeSpan.FromSeconds(3), retries: 1);
            return Results.Content(Render(user, details, reviews), "text/html; charset=utf-8");
        });
    }

    private static async Task<JsonDocument?> FetchAsync(IHttpClientFactory http, HttpContext context, string user, string name, string url, TimeSpan timeout, int retries = 0)
    {
        for (var attempt = 0; attempt <= retries; attempt++)
        {
            try
            {
                using var client = http.CreateClient(name);
                client.Timeout = timeout;
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                Forward(context, request);
                if (user.Length > 0)
                {
                    request.Headers.Add("end-user", user);
                }

                using var response = await client.SendAsync(request);
                if (response.IsSuccessStatusCode)
                {
                    return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException)
            {
            }
        }

        return null;
    }

    // The end user and trace headers travel with the request, as Bookinfo's services forward them.
    private static void Forward(HttpContext context, HttpRequestMessage request)
    {
        foreach (var header in new[] { "end-user", "user-agent", "traceparent", "tracestate", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled" })
        {
            if (context.Request.Headers.TryGetValue(header, out var value))
            {
                request.Headers.TryAddWithoutValidation(header, value.ToString());
            }
        }
    }

    private static string Render(string user, JsonDocument? details, JsonDocument? reviews)
    {
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><title>Simple Bookstore App</title></head><body>");
        html.Append(user.Length > 0
            ? $"<p>Signed in as <b>{WebUtility.HtmlEncode(user)}</b> <a href=\"/logout\">sign out</a></p>"
            : "<form method=\"post\" action=\"/login\">User: <input name=\"username\"/> <button>Sign in</button></form>");
        html.Append("<h1>The Comedy of Errors</h1>");
        html.Append("<h2>Book Details</h2>");
        if (details is null)
        {
            html.Append("<p class=\"error\">Error fetching product details!</p><p>Sorry, product details are currently unavailable for this book.</p>");
        }
        else
        {
            html.Append("<dl>");
            foreach (var property in details.RootElement.EnumerateObject().Where(p => p.Name != "id"))
            {
                html.Append($"<dt>{WebUtility.HtmlEncode(property.Name)}</dt><dd>{WebUtility.HtmlEncode(property.Value.ToString())}</dd>");
            }

            html.Append("</dl>");
        }

        html.Append("<h2>Book Reviews</h2>");
        if (reviews is null)
        {
            html.Append("<p class=\"error\">Error fetching product reviews!</p><p>Sorry, product reviews are currently unavailable for this book.</p>");
        }
        else
        {
            foreach (var review in reviews.RootElement.GetProperty("reviews").EnumerateArray())
            {
                html.Append($"<blockquote><p>{WebUtility.HtmlEncode(review.GetProperty("text").GetString())}</p><small>{review.GetProperty("reviewer").GetString()}</small>");
                if (review.GetProperty("rating") is { ValueKind: JsonValueKind.Object } rating)
                {
                    html.Append(rating.TryGetProperty("error", out var error)
                        ? $"<p class=\"error\">{WebUtility.HtmlEncode(error.GetString())}</p>"
                        : $"<p class=\"stars\" style=\"color:{rating.GetProperty("color").GetString()}\">{new string('★', rating.GetProperty("stars").GetInt32())}{new string('☆', 5 - rating.GetProperty("stars").GetInt32())}</p>");
                }

                html.Append("</blockquote>");
            }

            html.Append($"<p><small>Reviews served by: {WebUtility.HtmlEncode(reviews.RootElement.GetProperty("podname").GetString())}</small></p>");
        }

        html.Append("</body></html>");
        return html.ToString();
    }

    private static void StopOnStdinClose(IHostApplicationLifetime lifetime) => StdinWatcher.OnClose(lifetime.StopApplication);
}
