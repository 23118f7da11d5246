namespace MeshKit.Config.Tests.Parsing;

public class PatternsTests
{
    [Fact]
    public void SamePatternIsCompiledOnceAndShared()
    {
        var a = Patterns.TryCompileFullMatch("/api/v[0-9]+/shared-" + nameof(SamePatternIsCompiledOnceAndShared), false, out _);
        var b = Patterns.TryCompileFullMatch("/api/v[0-9]+/shared-" + nameof(SamePatternIsCompiledOnceAndShared), false, out _);

        Assert.NotNull(a);
        Assert.Same(a, b);
        Assert.Matches(a!, "/api/v2/shared-" + nameof(SamePatternIsCompiledOnceAndShared));
        Assert.DoesNotMatch(a!, "/api/v2/shared-" + nameof(SamePatternIsCompiledOnceAndShared) + "/more");
    }

    [Fact]
    public void OptionsAreKeptApart()
    {
        var exact = Patterns.TryCompileFullMatch("Case-" + nameof(OptionsAreKeptApart), false, out _);
        var ignoring = Patterns.TryCompileFullMatch("Case-" + nameof(OptionsAreKeptApart), true, out _);
        var anywhere = Patterns.TryCompile("Case-" + nameof(OptionsAreKeptApart), false, out _);

        Assert.NotSame(exact, ignoring);
        Assert.DoesNotMatch(exact!, "case-" + nameof(OptionsAreKeptApart));
        Assert.Matches(ignoring!, "case-" + nameof(OptionsAreKeptApart));
        Assert.Matches(anywhere!, "x Case-" + nameof(OptionsAreKeptApart) + " y");
    }

    [Fact]
    public void InvalidPatternsAreNotCached()
    {
        Assert.Null(Patterns.TryCompileFullMatch("(unclosed", false, out var first));
        Assert.Null(Patterns.TryCompileFullMatch("(unclosed", false, out var second));
        Assert.NotNull(first);
        Assert.Equal(first, second);
    }
}
