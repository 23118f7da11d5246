using System.Net;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>The client's cookie container, kept by the mesh by the URL the application called.</summary>
public sealed class CookiesTests
{
    [Fact]
    public void TakeOver_TurnsThePrimaryHandlersCookiesOff_AndReturnsItsContainer()
    {
        var jar = new CookieContainer();
        using var sockets = new SocketsHttpHandler { CookieContainer = jar };
        Assert.Same(jar, Cookies.TakeOver(sockets));
        Assert.False(sockets.UseCookies);

        using var client = new HttpClientHandler();
        Assert.NotNull(Cookies.TakeOver(client));
        Assert.False(client.UseCookies);

        using var none = new SocketsHttpHandler { UseCookies = false };
        Assert.Null(Cookies.TakeOver(none));
    }

    [Fact]
    public void Send_PutsTheContainersCookiesFirst_AndTheRestoreGivesTheApplicationsHeaderBack()
    {
        var jar = new CookieContainer();
        var uri = new Uri("http://reviews/a");
        jar.SetCookies(uri, "session=1");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.TryAddWithoutValidation("Cookie", "mine=2");

        MeshKit.Routing.HeaderRestore? restore = null;
        Cookies.Send(jar, request, uri, ref restore);
        Assert.Equal("session=1; mine=2", request.Headers.GetValues("Cookie").Single());

        restore!.Restore(request);
        Assert.Equal("mine=2", request.Headers.GetValues("Cookie").Single());

        // Another host's cookies are not sent; an empty container adds nothing and saves nothing.
        using var other = new HttpRequestMessage(HttpMethod.Get, "http://ratings/");
        MeshKit.Routing.HeaderRestore? none = null;
        Cookies.Send(jar, other, other.RequestUri!, ref none);
        Cookies.Send(new CookieContainer(), other, other.RequestUri!, ref none);
        Assert.Null(none);
        Assert.False(other.Headers.Contains("Cookie"));
    }

    [Fact]
    public void Store_KeepsEachSetCookie_ByTheUrlCalled_AndSkipsAMalformedOne()
    {
        var jar = new CookieContainer();
        using var response = new HttpResponseMessage(HttpStatusCode.OK);
        response.Headers.TryAddWithoutValidation("Set-Cookie", "a=1; Path=/");
        response.Headers.TryAddWithoutValidation("Set-Cookie", "b=2; Domain=elsewhere.example");
        response.Headers.TryAddWithoutValidation("Set-Cookie", "c=3");

        Cookies.Store(jar, new Uri("http://reviews/x"), response);

        Assert.Equal("a=1; c=3", jar.GetCookieHeader(new Uri("http://reviews/x")));
        Assert.Equal(string.Empty, jar.GetCookieHeader(new Uri("http://ratings/x")));
    }
}
