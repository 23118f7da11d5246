using System.Net;
using BenchmarkDotNet.Attributes;
using MeshKit.Config.Expressions;
using MeshKit.Telemetry;
using Microsoft.AspNetCore.Http;

namespace MeshKit.Benchmarks;

/// <summary>
/// The Telemetry API's access-log filter, evaluated as the log writes an entry: a status test (the usual filter), and a
/// longer one with a constant list, a header lookup and a string test, on each side's attributes.
/// </summary>
[MemoryDiagnoser]
public class AccessLogFilterBenchmarks
{
    private const string Long = "response.code >= 500 || (request.method in ['GET', 'HEAD'] && request.headers['x-debug'] == 'true' && request.url_path.startsWith('/api'))";

    private CelProgram _status = null!;
    private CelProgram _long = null!;
    private HttpRequestMessage _request = null!;
    private HttpResponseMessage _response = null!;
    private DefaultHttpContext _context = null!;

    [GlobalSetup]
    public void Setup()
    {
        _status = RequestAttributes.CompileFilter("response.code >= 500");
        _long = RequestAttributes.CompileFilter(Long);
        _request = new HttpRequestMessage(HttpMethod.Get, "http://10.0.0.7:9080/api/books/1?x=1");
        _request.Headers.Add("x-debug", "true");
        _response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(new byte[64]) };
        _context = new DefaultHttpContext();
        _context.Request.Method = "GET";
        _context.Request.Path = "/api/books/1";
        _context.Request.Headers["x-debug"] = "true";
    }

    [Benchmark(Baseline = true)]
    public bool OutboundStatus() => OutboundAttributes.Passes(_status, _request, _response, "reviews", 1.5, 0, 180, "default", null);

    [Benchmark]
    public bool OutboundLong() => OutboundAttributes.Passes(_long, _request, _response, "reviews", 1.5, 0, 180, "default", null);

    [Benchmark]
    public bool InboundLong() => InboundAttributes.Passes(_long, _context, 200, 1.5, null, 0, 180);
}
