using System.Text.Json;

namespace MeshKit.Cli.Tests;

public sealed class ValidateCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("meshctl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string yaml)
    {
        var path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, yaml);
        return path;
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = MeshCtl.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private const string Valid = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: { name: reviews }
        spec:
          hosts: [reviews]
          http: [{ timeout: 2s, route: [{ destination: { host: reviews } }] }]
        """;

    [Fact]
    public void Validate_ValidFolder_ExitsZero_ListingWarningsWithTheirPaths()
    {
        Write("a/reviews.yaml", Valid);

        var (code, output, _) = Run("validate", "-f", _dir);

        Assert.Equal(0, code);
        Assert.Contains("1 file(s), 1 resource(s): 0 error(s), 0 warning(s). Valid.", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_AResourceTwoFilesDefine_IsWarnedAtTheSecond_AndTwiceInOneFile_IsAnError()
    {
        Write("a.yaml", Valid);
        Write("b.yaml", "# the same route, again\n" + Valid);

        var (code, output, _) = Run("validate", "-f", _dir);

        Assert.Equal(0, code);
        Assert.Contains("b.yaml:4:19: warning: metadata.name: VirtualService default/reviews is already defined in ", output, StringComparison.Ordinal);
        Assert.Contains("2 file(s), 2 resource(s): 0 error(s), 1 warning(s). Valid.", output, StringComparison.Ordinal);

        File.Delete(Path.Combine(_dir, "b.yaml"));
        Write("a.yaml", Valid + "\n---\n" + Valid);
        (code, output, _) = Run("validate", "-f", _dir);

        Assert.Equal(1, code);
        Assert.Contains("a.yaml:10:19: error: metadata.name: VirtualService default/reviews is defined twice in this file (first at line 1)", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_UnenforcedField_IsAWarningWithItsPath()
    {
        Write("dr.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: r }\nspec:\n  host: r\n  subsets: [{ name: v1, labels: { version: v1 }, trafficPolicy: { tunnel: { protocol: CONNECT, targetHost: x, targetPort: 80 } } }]\n");

        var (code, output, _) = Run("validate", "-f", _dir);

        Assert.Equal(0, code);
        Assert.Contains("dr.yaml:6:", output, StringComparison.Ordinal);
        Assert.Contains("warning: spec.subsets[0].trafficPolicy.tunnel: is not supported by MeshKit and is ignored", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_InvalidFile_ExitsOne_NamingFileLineAndField()
    {
        var good = Write("good.yaml", Valid);
        var bad = Write("bad.yaml", Valid.Replace("timeout: 2s", "timeout: 2s, retries: { attempts: 1, retryOn: sometimes }", StringComparison.Ordinal));

        var (code, output, _) = Run("validate", "-f", good, bad);

        Assert.Equal(1, code);
        Assert.Contains("bad.yaml:6:", output, StringComparison.Ordinal);
        Assert.Contains("error: spec.http[0].retries.retryOn: unknown retry condition 'sometimes'", output, StringComparison.Ordinal);
        Assert.Contains("Invalid", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_Json_IsMachineReadable()
    {
        Write("bad.yaml", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: r }\nspec: { host: r, bogus: 1 }\n");

        var (code, output, _) = Run("validate", "-f", _dir, "-o", "json");

        Assert.Equal(1, code);
        using var doc = JsonDocument.Parse(output);
        Assert.False(doc.RootElement.GetProperty("valid").GetBoolean());
        var diagnostic = doc.RootElement.GetProperty("diagnostics")[0];
        Assert.Equal("spec.bogus", diagnostic.GetProperty("path").GetString());
        Assert.Equal(4, diagnostic.GetProperty("line").GetInt32());
        Assert.Equal("unknown field", diagnostic.GetProperty("message").GetString());
    }

    [Fact]
    public void Validate_MissingInputOrArguments_ExitsTwo()
    {
        var (code, _, error) = Run("validate", "-f", Path.Combine(_dir, "nope.yaml"));
        Assert.Equal(2, code);
        Assert.Contains("neither a file nor a folder", error, StringComparison.Ordinal);

        Assert.NotEqual(0, Run("validate").Code);
        Assert.NotEqual(0, Run("validate", "-f", _dir, "-o", "xml").Code);
    }

    [Fact]
    public void Validate_TheBookinfoSampleConfigs_EachTaskOnTheBase_AreValidWithoutWarnings()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "MeshKit.sln")))
        {
            root = root.Parent;
        }

        Assert.NotNull(root);
        var config = Path.Combine(root.FullName, "samples", "Bookinfo", "config");

        // Each task is applied on top of the base (the tasks are alternatives: several define the same route), in
        // place of the base file of a resource it redefines, as getting-started.md tells.
        static HashSet<string> Keys(string file) => [.. Config.Parsing.ConfigParser.ParseFile(file).Resources.Select(r => r.Key)];
        var bases = Directory.GetFiles(Path.Combine(config, "base"), "*.yaml");
        var tasks = Directory.GetFiles(Path.Combine(config, "tasks"), "*.yaml");
        Assert.NotEmpty(tasks);
        foreach (var task in tasks)
        {
            var replaced = Keys(task);
            var files = bases.Where(b => !Keys(b).Overlaps(replaced)).Append(task).SelectMany(f => new[] { "-f", f });
            var (code, output, _) = Run(["validate", .. files]);

            Assert.True(code == 0, output);
            Assert.True(output.Contains("0 error(s), 0 warning(s). Valid.", StringComparison.Ordinal), output);
        }
    }

    [Fact]
    public void Run_NullArguments_Throw() =>
        Assert.Throws<ArgumentNullException>(() => MeshCtl.Run(null!, TextWriter.Null, TextWriter.Null));
}
