using MeshKit.Config.Expressions;
using A = MeshKit.Config.Expressions.RequestAttributes;

namespace MeshKit.Config.Tests.Expressions;

/// <summary>MeshKit's CEL subset: cel-spec's operators, literals, functions and error semantics over Envoy's attributes.</summary>
public sealed class CelTests
{
    private sealed class Request : ICelContext
    {
        public Dictionary<int, CelValue> Attributes { get; } = new()
        {
            [A.RequestMethod] = CelValue.Of("GET"),
            [A.RequestUrlPath] = CelValue.Of("/api/orders"),
            [A.ResponseCode] = CelValue.Of(503L),
            [A.RequestDuration] = CelValue.Of(TimeSpan.FromMilliseconds(1500)),
            [A.ConnectionMtls] = CelValue.True,
        };

        public Dictionary<string, string> Headers { get; } = new(StringComparer.OrdinalIgnoreCase) { ["x-debug"] = "true", ["foo"] = "bar" };

        public CelValue Get(int attribute) => Attributes.TryGetValue(attribute, out var value) ? value : CelValue.Error;

        public bool TryGetEntry(int attribute, string key, out string? value)
        {
            value = null;
            return attribute == A.RequestHeaders && Headers.TryGetValue(key, out value);
        }
    }

    private static bool True(string expression) => RequestAttributes.CompileFilter(expression).IsTrue(new Request());

    [Theory]
    [InlineData("1 + 2 * 3 == 7")]
    [InlineData("(1 + 2) * 3 == 9")]
    [InlineData("7 % 4 == 3 && 7 / 2 == 3 && 7.0 / 2.0 == 3.5")]
    [InlineData("!false && !!true")]
    [InlineData("(true ? 1 : 2) == 1")]
    [InlineData("-5 < 0 && -(-5) == 5")]
    [InlineData("-9223372036854775808 < 9223372036854775807")]
    [InlineData("0x1F == 31 && 18446744073709551615u > 0u")]
    [InlineData("1 == 1.0 && 1u == 1 && 2 > 1.5 && -1 < 0u")]
    [InlineData("1e3 == 1000.0 && .5 == 0.5")]
    [InlineData("'a' + \"b\" == 'ab'")]
    [InlineData("'\\x41\\u0042\\103' == 'ABC'")]
    [InlineData("r'\\n' == '\\\\n'")]
    [InlineData("'''it's''' == \"it's\"")]
    [InlineData("size('héllo') == 5 && 'héllo'.size() == 5")]
    [InlineData("'abc'.contains('b') && 'abc'.startsWith('ab') && 'abc'.endsWith('bc')")]
    [InlineData("'foobar'.matches('o+b') && !'foobar'.matches('^b') && matches('abc', 'b')")]
    [InlineData("int('42') == 42 && uint(3) == 3u && double(3) == 3.0 && string(42) == '42' && int(2.9) == 2")]
    [InlineData("'b' > 'a' && true > false")]
    [InlineData("[1, 2, 3][1] == 2 && size([1, 2]) == 2 && [1] + [2] == [1, 2] && 2 in [1, 2]")]
    [InlineData("null == null && request.method != null")]
    [InlineData("duration('1m') == duration('60s') && duration('1h2m') > duration('62m') == false")]
    [InlineData("response.code >= 500 // a comment")]
    public void Operators_Literals_AndFunctions_FollowCelSpec(string expression)
    {
        Assert.True(True(expression));
    }

    [Theory]
    [InlineData("response.code >= 500 && request.method == 'GET'", true)]
    [InlineData("response.code == 503u", true)]
    [InlineData("request.method in ['GET', 'HEAD']", true)]
    [InlineData("request.url_path.startsWith('/api') && !request.url_path.contains('health')", true)]
    [InlineData("request.headers['x-debug'] == 'true'", true)]
    [InlineData("request.headers['X-DEBUG'] == 'true'", true)]
    [InlineData("request.headers.foo == 'bar' && has(request.headers.foo) && !has(request.headers.nope)", true)]
    [InlineData("'x-debug' in request.headers && !('x-other' in request.headers)", true)]
    [InlineData("request.duration > duration('1s') && request.duration < duration('1.6s')", true)]
    [InlineData("connection.mtls", true)]
    [InlineData("has(request.method) && !has(response.size)", true)]
    [InlineData("response.code < 400", false)]
    public void Attributes_AreReadThroughTheContext(string expression, bool expected)
    {
        Assert.Equal(expected, True(expression));
    }

    [Theory]
    [InlineData("response.size > 0", false)] // absent: an error, never true
    [InlineData("response.size > 0 || response.code == 503", true)] // || absorbs the error
    [InlineData("response.code == 503 || response.size > 0", true)]
    [InlineData("response.size > 0 && false", false)] // && absorbs it when the other side is false
    [InlineData("!(response.size > 0 && false)", true)]
    [InlineData("!(response.size > 0)", false)]
    [InlineData("request.headers['missing'] == 'x'", false)]
    [InlineData("1 / 0 == 0", false)]
    [InlineData("1 / 0 == 0 || true", true)]
    [InlineData("9223372036854775807 + 1 > 0", false)] // overflow is an error
    [InlineData("int('nope') == 0", false)]
    [InlineData("[1, 2][5] == 1", false)]
    [InlineData("response.size > 0 ? true : true", false)]
    public void Errors_PropagateAndAreAbsorbedAsCelSpecSays(string expression, bool expected)
    {
        Assert.Equal(expected, True(expression));
    }

    [Theory]
    [InlineData("request.host.foo", 13, "'request.host' is a string, which has no field 'foo'")]
    [InlineData("request.headers['a'] > 1", 22, "no overload of '>' takes a string and an int")]
    [InlineData("request.method.lowerAscii() == 'get'", 15, "the function 'lowerAscii' is not supported")]
    [InlineData("{'a': 1}['a'] == 1", 1, "map literals are not supported")]
    [InlineData("b'abc' == b'abc'", 1, "bytes literals are not supported")]
    [InlineData("if == 1", 1, "'if' is a reserved word")]
    [InlineData("request.method == 'GET", 19, "unterminated string literal")]
    [InlineData("request.method == 'a\\q'", 21, "invalid escape sequence")]
    [InlineData("1 + 'a' == 2", 3, "no overload of '+' takes an int and a string")]
    [InlineData("response.code >= 400 response.code", 22, "unexpected 'r'")]
    [InlineData("request.url_path.matches(request.method)", 17, "needs a string literal as its pattern")]
    [InlineData("duration('soon') > request.duration", 10, "'soon' is not a duration")]
    [InlineData("has(request.method.x)", 19, "has() needs a map's field or an attribute")]
    [InlineData("99999999999999999999 > 0", 1, "out of range")]
    [InlineData("-1u == 1u", 2, "cannot be negative")]
    [InlineData("request.url_path", 1, "must be a bool expression")]
    public void Mistakes_AreCompileErrorsWithTheirColumn(string expression, int column, string reason)
    {
        var error = Assert.Throws<CelException>(() => RequestAttributes.CompileFilter(expression));

        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
        Assert.Equal(column, error.Column);
    }

    [Fact]
    public void AnUnknownAttribute_NamesTheKnownOnesOfItsRoot()
    {
        var error = Assert.Throws<CelException>(() => RequestAttributes.CompileFilter("response.status == 200"));

        Assert.Equal(1, error.Column);
        Assert.Contains("unknown attribute 'response.status'", error.Message, StringComparison.Ordinal);
        Assert.Contains("response.code", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("request.path", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluating_AConstantListAndHeaderFilter_AllocatesNothing()
    {
        var filter = RequestAttributes.CompileFilter("response.code >= 500 && request.method in ['GET', 'HEAD'] && request.headers['x-debug'] == 'true' && request.url_path.startsWith('/api')");
        var request = new Request();
        Assert.True(filter.IsTrue(request));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            filter.IsTrue(request);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void AnyText_EitherCompilesOrIsACompileError_NeverAnotherException()
    {
        // Mutations of valid filters (cut, doubled, characters swapped for CEL's punctuation): the control plane parses
        // what users write, and a crash there would be worse than the mistake it met.
        string[] seeds =
        [
            "response.code >= 500 || request.headers['x-debug'] == 'true'",
            "request.url_path.matches('^/api/v[0-9]+') && !has(request.headers.foo)",
            "(request.duration > duration('1.5s') ? 'slow' : 'fast') in ['slow'] && size(request.method) == 3",
            "int('42') + 0x1F * -3 % 7 == 1u && 1e3 != .5 && r'\\n' + '''x''' == \"y\" && '\\u00e9\\x41\\101' != b",
        ];
        const string alphabet = "()[]{}.,:?!=<>&|+-*/%'\"\\ 0123456789eEuUxXabcrRbB_hs";
        var random = new Random(20261126);
        var request = new Request();
        for (var i = 0; i < 20_000; i++)
        {
            var text = seeds[random.Next(seeds.Length)].ToList();
            for (var edits = random.Next(1, 4); edits > 0 && text.Count > 0; edits--)
            {
                var at = random.Next(text.Count);
                switch (random.Next(3))
                {
                    case 0:
                        text.RemoveAt(at);
                        break;
                    case 1:
                        text.Insert(at, alphabet[random.Next(alphabet.Length)]);
                        break;
                    default:
                        text.RemoveRange(at, text.Count - at);
                        break;
                }
            }

            var expression = new string([.. text]);
            try
            {
                var program = CelProgram.Compile(expression, RequestAttributes.All);
                program.Evaluate(request); // whatever it yields, evaluating must not throw either
            }
            catch (CelException)
            {
            }
            catch (Exception ex)
            {
                Assert.Fail($"'{expression}' threw {ex.GetType().Name}: {ex.Message}");
            }
        }
    }
}
