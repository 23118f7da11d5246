using MeshKit.Resilience;
using Microsoft.Extensions.Time.Testing;

namespace MeshKit.Tests.Resilience;

public sealed class CallDeadlineTests
{
    [Fact]
    public void Passes_WhenItsClockReachesIt()
    {
        var time = new FakeTimeProvider();
        var deadline = CallDeadline.Start(TimeSpan.FromSeconds(2), CancellationToken.None, time);

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(deadline.Token.IsCancellationRequested);
        time.Advance(TimeSpan.FromSeconds(1));

        Assert.True(deadline.Token.IsCancellationRequested);
        Assert.True(deadline.Passed(CancellationToken.None));
        deadline.End();
    }

    [Fact]
    public void CallerCancellation_CancelsIt_ButIsNotItsPassing()
    {
        var time = new FakeTimeProvider();
        using var caller = new CancellationTokenSource();
        var deadline = CallDeadline.Start(TimeSpan.FromSeconds(2), caller.Token, time);

        caller.Cancel();

        Assert.True(deadline.Token.IsCancellationRequested);
        Assert.False(deadline.Passed(caller.Token));
        deadline.End();
    }

    [Fact]
    public void Moving_SetsANewDueTime_UntilItHasPassed()
    {
        var time = new FakeTimeProvider();
        var deadline = CallDeadline.Start(TimeSpan.FromSeconds(1), CancellationToken.None, time);

        Assert.True(deadline.TryMove(TimeSpan.FromSeconds(5)));
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.False(deadline.Token.IsCancellationRequested);
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.True(deadline.Passed(CancellationToken.None));

        Assert.False(deadline.TryMove(TimeSpan.FromSeconds(5)));
        deadline.End();
    }

    [Fact]
    public void WithTheSystemClock_AnUnfiredDeadlinesSource_IsReusedByTheThreadsNext()
    {
        var first = CallDeadline.Start(TimeSpan.FromMinutes(1), CancellationToken.None, TimeProvider.System);
        var token = first.Token;
        first.End();

        var second = CallDeadline.Start(TimeSpan.FromMinutes(1), CancellationToken.None, TimeProvider.System);
        Assert.Equal(token, second.Token);
        Assert.False(second.Token.IsCancellationRequested);
        second.End();
    }

    [Fact]
    public void WithTheSystemClock_AFiredSource_IsNeverReused()
    {
        using var caller = new CancellationTokenSource();
        var first = CallDeadline.Start(TimeSpan.FromMinutes(1), caller.Token, TimeProvider.System);
        var token = first.Token;
        caller.Cancel();
        first.End();

        var second = CallDeadline.Start(TimeSpan.FromMinutes(1), CancellationToken.None, TimeProvider.System);
        Assert.NotEqual(token, second.Token);
        Assert.False(second.Token.IsCancellationRequested);
        second.End();
    }
}
