using System.Net;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>Which redirects the mesh follows for a client, and where to: as .NET's own redirect handler decides.</summary>
public sealed class RedirectsTests
{
    private static Uri? Next(string from, HttpStatusCode status, string? location)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, from);
        using var response = new HttpResponseMessage(status);
        if (location is not null)
        {
            response.Headers.Location = new Uri(location, UriKind.RelativeOrAbsolute);
        }

        return Redirects.Next(request, response);
    }

    [Theory]
    [InlineData(HttpStatusCode.MultipleChoices)]
    [InlineData(HttpStatusCode.Moved)]
    [InlineData(HttpStatusCode.Found)]
    [InlineData(HttpStatusCode.SeeOther)]
    [InlineData(HttpStatusCode.TemporaryRedirect)]
    [InlineData(HttpStatusCode.PermanentRedirect)]
    public void RedirectStatuses_WithALocation_AreFollowed_RelativeToTheRequest(HttpStatusCode status) =>
        Assert.Equal(new Uri("http://reviews/b/c"), Next("http://reviews/a/x", status, "/b/c"));

    [Theory]
    [InlineData(HttpStatusCode.NotModified, "/b")]
    [InlineData(HttpStatusCode.OK, "/b")]
    [InlineData(HttpStatusCode.Found, null)]
    [InlineData(HttpStatusCode.Found, "ftp://files/b")]
    public void OtherStatuses_NoLocation_OrAnotherScheme_AreNotFollowed(HttpStatusCode status, string? location) =>
        Assert.Null(Next("http://reviews/a", status, location));

    [Fact]
    public void FromHttpsToHttp_IsNotFollowed_TheOtherWaysAre()
    {
        Assert.Null(Next("https://reviews/a", HttpStatusCode.Found, "http://reviews/b"));
        Assert.Equal(new Uri("https://reviews/b"), Next("http://reviews/a", HttpStatusCode.Found, "https://reviews/b"));
        Assert.Equal(new Uri("https://ratings/b"), Next("https://reviews/a", HttpStatusCode.Found, "https://ratings/b"));
    }

    [Fact]
    public void ALocationWithoutAFragment_KeepsTheRequests()
    {
        Assert.Equal("#part", Next("http://reviews/a#part", HttpStatusCode.Found, "/b")!.Fragment);
        Assert.Equal("#other", Next("http://reviews/a#part", HttpStatusCode.Found, "/b#other")!.Fragment);
    }

    [Theory]
    [InlineData(HttpStatusCode.Moved, "POST", true)]
    [InlineData(HttpStatusCode.Found, "POST", true)]
    [InlineData(HttpStatusCode.MultipleChoices, "POST", true)]
    [InlineData(HttpStatusCode.Found, "PUT", false)]
    [InlineData(HttpStatusCode.SeeOther, "PUT", true)]
    [InlineData(HttpStatusCode.SeeOther, "HEAD", false)]
    [InlineData(HttpStatusCode.TemporaryRedirect, "POST", false)]
    [InlineData(HttpStatusCode.PermanentRedirect, "POST", false)]
    public void TheMethodBecomesGet_AsDotNetsHandlerDecides(HttpStatusCode status, string method, bool get) =>
        Assert.Equal(get, Redirects.RequiresGet(status, new HttpMethod(method)));

    [Fact]
    public void TakeOver_TurnsThePrimaryHandlersFollowingOff_AndReturnsItsLimit()
    {
        using var sockets = new SocketsHttpHandler { MaxAutomaticRedirections = 7 };
        Assert.Equal(7, Redirects.TakeOver(sockets));
        Assert.False(sockets.AllowAutoRedirect);

        using var client = new HttpClientHandler();
        Assert.Equal(client.MaxAutomaticRedirections, Redirects.TakeOver(client));
        Assert.False(client.AllowAutoRedirect);

        using var none = new SocketsHttpHandler { AllowAutoRedirect = false };
        Assert.Equal(0, Redirects.TakeOver(none));
    }
}
