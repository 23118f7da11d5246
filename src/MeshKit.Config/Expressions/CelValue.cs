namespace MeshKit.Config.Expressions;

/// <summary>The static types of MeshKit's CEL subset.</summary>
internal enum CelType
{
    /// <summary>Not known until evaluation (a list's elements of mixed types).</summary>
    Dyn,
    Bool,
    Int,
    UInt,
    Double,
    String,
    Duration,
    Null,

    /// <summary>A <c>map(string, string)</c> the host provides (HTTP headers).</summary>
    StringMap,
    List,
}

/// <summary>
/// One CEL value, without boxing: numbers and durations inline, strings and lists by reference, a host map by its
/// attribute. An absent attribute, a failed conversion or a division by zero is an error value, which CEL's logical
/// operators absorb where the other side decides (<c>false &amp;&amp; error</c> is <c>false</c>).
/// </summary>
internal readonly struct CelValue
{
    private CelValue(CelType type, long number, double real, object? reference, bool error = false)
    {
        Type = type;
        Number = number;
        Real = real;
        Reference = reference;
        IsError = error;
    }

    public static readonly CelValue Error = new(CelType.Dyn, 0, 0, null, error: true);

    public static readonly CelValue True = new(CelType.Bool, 1, 0, null);

    public static readonly CelValue False = new(CelType.Bool, 0, 0, null);

    public static readonly CelValue Null = new(CelType.Null, 0, 0, null);

    public CelType Type { get; }

    public bool IsError { get; }

    /// <summary>An int, a uint (as its bits), a bool (0 or 1), a duration (ticks) or a host map's attribute id.</summary>
    public long Number { get; }

    public double Real { get; }

    /// <summary>A string, or a list's values (<see cref="CelValue"/>[]).</summary>
    public object? Reference { get; }

    public bool Bool => Number != 0;

    public string String => (string)Reference!;

    public CelValue[] List => (CelValue[])Reference!;

    public static CelValue Of(bool value) => value ? True : False;

    public static CelValue Of(long value) => new(CelType.Int, value, 0, null);

    public static CelValue OfUInt(ulong value) => new(CelType.UInt, unchecked((long)value), 0, null);

    public static CelValue Of(double value) => new(CelType.Double, 0, value, null);

    public static CelValue Of(string? value) => value is null ? Error : new(CelType.String, 0, 0, value);

    public static CelValue Of(TimeSpan value) => new(CelType.Duration, value.Ticks, 0, null);

    public static CelValue Map(int attribute) => new(CelType.StringMap, attribute, 0, null);

    public static CelValue Of(CelValue[] list) => new(CelType.List, 0, 0, list);

    public override string ToString() => IsError ? "<error>" : Type switch
    {
        CelType.Bool => Bool ? "true" : "false",
        CelType.Int => Number.ToString(System.Globalization.CultureInfo.InvariantCulture),
        CelType.UInt => unchecked((ulong)Number).ToString(System.Globalization.CultureInfo.InvariantCulture) + "u",
        CelType.Double => Real.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        CelType.String => String,
        CelType.Duration => TimeSpan.FromTicks(Number).ToString(),
        CelType.Null => "null",
        CelType.List => "[" + string.Join(", ", List.Select(v => v.ToString())) + "]",
        _ => Type.ToString(),
    };
}

/// <summary>What a request offers an expression: its attributes by id, and the entries of its header maps.</summary>
internal interface ICelContext
{
    /// <summary>Gets an attribute's value; an error value when the attribute is absent for this request.</summary>
    CelValue Get(int attribute);

    /// <summary>Looks a key up in a map attribute (a header collection: case-insensitive, as HTTP names are).</summary>
    bool TryGetEntry(int attribute, string key, out string? value);
}

/// <summary>An attribute an expression may name, with the type it has when present.</summary>
internal sealed record CelAttribute(string Name, CelType Type, int Id, string Description);
