using System.Text.RegularExpressions;

namespace MeshKit.Config.Expressions;

/// <summary>
/// A CEL expression compiled once (per config version) against a fixed set of attributes into a tree of typed nodes:
/// evaluating it reads the request's attributes through <see cref="ICelContext"/> and allocates nothing for the
/// usual filters (comparisons, string tests, header lookups, constant lists).
/// </summary>
/// <remarks>
/// MeshKit evaluates a subset of cel-spec: the operators, <c>has()</c>, <c>size</c>, <c>contains</c>,
/// <c>startsWith</c>, <c>endsWith</c>, <c>matches</c> (a literal RE2 pattern, searched), the conversions
/// <c>int</c>, <c>uint</c>, <c>double</c>, <c>string</c> and <c>duration</c>, list literals and <c>in</c>. Anything
/// else (comprehension macros, map literals, timestamps, bytes) is a compile error naming it, never a silent false.
/// The only .NET CEL library served here allocates about 10 KB and takes about 12 µs per evaluation (a dictionary
/// per variable and a boxed value per step), too much for a per-request filter; the grammar is small enough to parse
/// and check here, with cel-spec's semantics for errors (absorbed by <c>&amp;&amp;</c>, <c>||</c>).
/// </remarks>
internal sealed class CelProgram
{
    private readonly CelNode _root;

    private CelProgram(string text, CelNode root)
    {
        Text = text;
        _root = root;
    }

    /// <summary>Gets the expression as written.</summary>
    public string Text { get; }

    /// <summary>Gets the type the expression evaluates to.</summary>
    public CelType Type => _root.Type;

    /// <summary>Parses and checks <paramref name="text"/>; throws <see cref="CelException"/> with the column of the problem.</summary>
    public static CelProgram Compile(string text, IReadOnlyList<CelAttribute> attributes)
    {
        ArgumentNullException.ThrowIfNull(text);
        var syntax = CelParser.Parse(text);
        var root = new CelCompiler(attributes).Compile(syntax);
        return new CelProgram(text, root);
    }

    /// <summary>Evaluates the expression.</summary>
    public CelValue Evaluate(ICelContext context) => _root.Eval(context);

    /// <summary>Whether the expression is <c>true</c> for this request (an error or a non-bool is not: a filter fails closed).</summary>
    public bool IsTrue(ICelContext context)
    {
        var value = _root.Eval(context);
        return !value.IsError && value.Type == CelType.Bool && value.Bool;
    }
}

/// <summary>Checks a syntax tree against the attributes (names, types, overloads) and builds its evaluation nodes.</summary>
internal sealed class CelCompiler(IReadOnlyList<CelAttribute> attributes)
{
    private static readonly string[] Functions = ["size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "duration", "has"];

    private readonly Dictionary<string, CelAttribute> _byName = attributes.ToDictionary(a => a.Name, StringComparer.Ordinal);

    public CelNode Compile(CelSyntax syntax) => syntax switch
    {
        CelLiteral literal => new ConstNode(literal.Value),
        CelIdent or CelSelect => CompileName(syntax),
        CelIndex index => CompileIndex(index),
        CelList list => CompileList(list),
        CelUnary unary => CompileUnary(unary),
        CelBinary binary => CompileBinary(binary),
        CelConditional c => CompileConditional(c),
        CelCall call => CompileCall(call),
        _ => throw new CelException("unsupported expression", syntax.Column),
    };

    private static string? DottedName(CelSyntax syntax) => syntax switch
    {
        CelIdent ident => ident.Name,
        CelSelect select when DottedName(select.Operand) is { } prefix => prefix + "." + select.Field,
        _ => null,
    };

    private static int StartColumn(CelSyntax syntax) => syntax is CelSelect select ? StartColumn(select.Operand) : syntax.Column;

    private CelNode CompileName(CelSyntax syntax)
    {
        if (DottedName(syntax) is { } name)
        {
            if (_byName.TryGetValue(name, out var attribute))
            {
                return new AttributeNode(attribute);
            }

            // a.b.key: a field of a map attribute is its entry under that key.
            if (syntax is CelSelect select && DottedName(select.Operand) is { } prefix && _byName.TryGetValue(prefix, out var map))
            {
                if (map.Type != CelType.StringMap)
                {
                    throw new CelException($"'{prefix}' is {Article(map.Type)}, which has no field '{select.Field}'", select.Column);
                }

                return new EntryNode(map.Id, new ConstNode(CelValue.Of(select.Field)));
            }

            throw new CelException(UnknownAttribute(name), StartColumn(syntax));
        }

        var field = (CelSelect)syntax;
        var operand = Compile(field.Operand);
        throw new CelException($"{Article(operand.Type)} has no field '{field.Field}'", field.Column);
    }

    private string UnknownAttribute(string name)
    {
        var root = name.Split('.')[0];
        var known = _byName.Keys.Where(k => k.StartsWith(root + ".", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        return known.Count > 0
            ? $"unknown attribute '{name}'; the {root}.* attributes here are {string.Join(", ", known)}"
            : $"unknown attribute '{name}'; the attributes here are {string.Join(", ", _byName.Keys.Order(StringComparer.Ordinal))}";
    }

    private CelNode CompileIndex(CelIndex index)
    {
        var operand = Compile(index.Operand);
        var key = Compile(index.Key);
        switch (operand.Type)
        {
            case CelType.StringMap when operand is AttributeNode map:
                Require(key, CelType.String, "a header map's key", index.Key.Column);
                return new EntryNode(map.Attribute.Id, key);
            case CelType.List:
                Require(key, CelType.Int, "a list's index", index.Key.Column);
                return new ListIndexNode(operand, key);
            default:
                throw new CelException($"{Article(operand.Type)} cannot be indexed", index.Column);
        }
    }

    private CelNode CompileList(CelList list)
    {
        var items = list.Items.Select(Compile).ToArray();
        var type = items.Select(i => i.Type).Distinct().Count() == 1 ? items[0].Type : CelType.Dyn;
        return new ListNode(items, type);
    }

    private CelNode CompileUnary(CelUnary unary)
    {
        var operand = Compile(unary.Operand);
        if (unary.Operator == "!")
        {
            Require(operand, CelType.Bool, "'!'", unary.Column);
            return new NotNode(operand);
        }

        if (operand.Type is not (CelType.Int or CelType.Double or CelType.Duration or CelType.Dyn))
        {
            throw new CelException($"no overload of '-' takes {Article(operand.Type)}", unary.Column);
        }

        return new NegateNode(operand);
    }

    private CelNode CompileBinary(CelBinary binary)
    {
        var left = Compile(binary.Left);
        var right = Compile(binary.Right);
        switch (binary.Operator)
        {
            case "&&" or "||":
                Require(left, CelType.Bool, $"'{binary.Operator}'", binary.Left.Column);
                Require(right, CelType.Bool, $"'{binary.Operator}'", binary.Right.Column);
                return binary.Operator == "&&" ? new AndNode(left, right) : new OrNode(left, right);
            case "==" or "!=":
                if (!Comparable(left.Type, right.Type, equality: true))
                {
                    throw Overload(binary, left, right);
                }

                return new EqualsNode(left, right, binary.Operator == "!=");
            case "<" or "<=" or ">" or ">=":
                if (!Comparable(left.Type, right.Type, equality: false))
                {
                    throw Overload(binary, left, right);
                }

                return new OrderNode(left, right, binary.Operator);
            case "in":
                if (right.Type == CelType.StringMap)
                {
                    Require(left, CelType.String, "a header map's key", binary.Left.Column);
                    return new HasEntryNode(((AttributeNode)right).Attribute.Id, left);
                }

                if (right.Type is not (CelType.List or CelType.Dyn))
                {
                    throw new CelException($"'in' needs a list or a map on its right, not {Article(right.Type)}", binary.Right.Column);
                }

                return new InListNode(left, right);
            default:
                if (!Arithmetic(binary.Operator, left.Type, right.Type))
                {
                    throw Overload(binary, left, right);
                }

                return new ArithmeticNode(binary.Operator, left, right, left.Type == CelType.Dyn ? right.Type : left.Type);
        }
    }

    private CelNode CompileConditional(CelConditional conditional)
    {
        var condition = Compile(conditional.Condition);
        Require(condition, CelType.Bool, "a condition", conditional.Condition.Column);
        var then = Compile(conditional.Then);
        var otherwise = Compile(conditional.Else);
        var type = then.Type == otherwise.Type ? then.Type : CelType.Dyn;
        return new ConditionalNode(condition, then, otherwise, type);
    }

    private CelNode CompileCall(CelCall call)
    {
        if (call.Function == "has" && call.Target is null)
        {
            return CompileHas(call);
        }

        if (!Functions.Contains(call.Function))
        {
            var what = call.Function is "all" or "exists" or "exists_one" or "map" or "filter" ? "the comprehension macro" : "the function";
            throw new CelException($"{what} '{call.Function}' is not supported by MeshKit's CEL (supported: {string.Join(", ", Functions.Where(f => f != "has"))}, has())", call.Column);
        }

        var args = new List<CelNode>();
        if (call.Target is not null)
        {
            args.Add(Compile(call.Target));
        }

        args.AddRange(call.Args.Select(Compile));
        var receiver = call.Target is not null;
        switch (call.Function)
        {
            case "size" when args.Count == 1:
                if (args[0].Type is not (CelType.String or CelType.List or CelType.Dyn))
                {
                    throw new CelException($"size() takes a string or a list, not {Article(args[0].Type)}", call.Column);
                }

                return new SizeNode(args[0]);
            case "contains" or "startsWith" or "endsWith" when receiver && args.Count == 2:
                Require(args[0], CelType.String, $"{call.Function}()'s receiver", call.Column);
                Require(args[1], CelType.String, $"{call.Function}()'s argument", call.Column);
                return new StringTestNode(call.Function, args[0], args[1]);
            case "matches" when args.Count == 2:
                Require(args[0], CelType.String, "matches()'s text", call.Column);
                if (args[1] is not ConstNode { Value.Type: CelType.String } pattern)
                {
                    throw new CelException("matches() needs a string literal as its pattern (compiled once, with the config)", call.Column);
                }

                var regex = Patterns.TryCompile(pattern.Value.String, ignoreCase: false, out var error)
                    ?? throw new CelException($"invalid pattern for matches(): {error}", call.Args[^1].Column);
                return new MatchesNode(args[0], regex);
            case "int" or "uint" or "double" or "string" when !receiver && args.Count == 1:
                return new ConvertNode(call.Function, args[0]);
            case "duration" when !receiver && args.Count == 1:
                Require(args[0], CelType.String, "duration()'s argument", call.Column);
                if (args[0] is ConstNode { Value.Type: CelType.String } text)
                {
                    var parsed = ConvertNode.ParseDuration(text.Value.String);
                    return parsed.IsError
                        ? throw new CelException($"'{text.Value.String}' is not a duration (for example 1.5s, 300ms, 1h2m)", call.Args[0].Column)
                        : new ConstNode(parsed);
                }

                return new ConvertNode("duration", args[0]);
            default:
                throw new CelException($"no overload of {call.Function}() takes {(receiver ? "a receiver and " : string.Empty)}{call.Args.Count} argument(s) of these types", call.Column);
        }
    }

    private CelNode CompileHas(CelCall call)
    {
        if (call.Args.Count != 1 || call.Args[0] is not CelSelect select)
        {
            throw new CelException("has() takes one field selection, as in has(request.headers.x_user)", call.Column);
        }

        if (DottedName(select) is { } name && _byName.TryGetValue(name, out var attribute))
        {
            return new PresentNode(attribute.Id);
        }

        var operand = Compile(select.Operand);
        if (operand is AttributeNode { Type: CelType.StringMap } map)
        {
            return new HasEntryNode(map.Attribute.Id, new ConstNode(CelValue.Of(select.Field)));
        }

        throw new CelException($"has() needs a map's field or an attribute; {Article(operand.Type)} has no field '{select.Field}'", select.Column);
    }

    private static bool Numeric(CelType type) => type is CelType.Int or CelType.UInt or CelType.Double;

    private static bool Comparable(CelType left, CelType right, bool equality)
    {
        if (left == CelType.Dyn || right == CelType.Dyn)
        {
            return true;
        }

        if (Numeric(left) && Numeric(right))
        {
            return true;
        }

        if (equality && (left == CelType.Null || right == CelType.Null))
        {
            return true;
        }

        if (left != right)
        {
            return false;
        }

        return equality ? left != CelType.StringMap : left is CelType.String or CelType.Bool or CelType.Duration;
    }

    private static bool Arithmetic(string op, CelType left, CelType right)
    {
        if (left == CelType.Dyn || right == CelType.Dyn)
        {
            return true;
        }

        if (left != right)
        {
            return false;
        }

        return op switch
        {
            "+" => left is CelType.Int or CelType.UInt or CelType.Double or CelType.String or CelType.Duration or CelType.List,
            "-" => left is CelType.Int or CelType.UInt or CelType.Double or CelType.Duration,
            "*" or "/" => Numeric(left),
            "%" => left is CelType.Int or CelType.UInt,
            _ => false,
        };
    }

    private static void Require(CelNode node, CelType type, string what, int column)
    {
        if (node.Type != type && node.Type != CelType.Dyn)
        {
            throw new CelException($"{what} must be {Article(type)}, not {Article(node.Type)}", column);
        }
    }

    private static CelException Overload(CelBinary binary, CelNode left, CelNode right) =>
        new($"no overload of '{binary.Operator}' takes {Article(left.Type)} and {Article(right.Type)}", binary.Column);

    internal static string Article(CelType type) => (type is CelType.Int or CelType.UInt ? "an " : "a ") + TypeName(type);

    internal static string TypeName(CelType type) => type switch
    {
        CelType.StringMap => "map(string, string)",
        CelType.Dyn => "dyn",
        _ => type.ToString().ToLowerInvariant(),
    };
}

/// <summary>One node of a compiled expression.</summary>
internal abstract class CelNode(CelType type)
{
    public CelType Type { get; } = type;

    public abstract CelValue Eval(ICelContext context);
}

internal sealed class ConstNode(CelValue value) : CelNode(value.Type)
{
    public CelValue Value { get; } = value;

    public override CelValue Eval(ICelContext context) => Value;
}

internal sealed class AttributeNode(CelAttribute attribute) : CelNode(attribute.Type)
{
    public CelAttribute Attribute { get; } = attribute;

    public override CelValue Eval(ICelContext context) => Attribute.Type == CelType.StringMap ? CelValue.Map(Attribute.Id) : context.Get(Attribute.Id);
}

internal sealed class PresentNode(int attribute) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context) => CelValue.Of(!context.Get(attribute).IsError);
}

internal sealed class EntryNode(int map, CelNode key) : CelNode(CelType.String)
{
    public override CelValue Eval(ICelContext context)
    {
        var k = key.Eval(context);
        return !k.IsError && k.Type == CelType.String && context.TryGetEntry(map, k.String, out var value) ? CelValue.Of(value) : CelValue.Error;
    }
}

internal sealed class HasEntryNode(int map, CelNode key) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var k = key.Eval(context);
        return k.IsError || k.Type != CelType.String ? CelValue.Error : CelValue.Of(context.TryGetEntry(map, k.String, out _));
    }
}

internal sealed class ListNode(CelNode[] items, CelType element) : CelNode(CelType.List)
{
    private readonly CelValue[]? _constant = items.All(i => i is ConstNode) ? items.Select(i => ((ConstNode)i).Value).ToArray() : null;

    public CelType Element { get; } = element;

    public override CelValue Eval(ICelContext context)
    {
        if (_constant is not null)
        {
            return CelValue.Of(_constant);
        }

        var values = new CelValue[items.Length];
        for (var i = 0; i < items.Length; i++)
        {
            values[i] = items[i].Eval(context);
            if (values[i].IsError)
            {
                return CelValue.Error;
            }
        }

        return CelValue.Of(values);
    }
}

internal sealed class ListIndexNode(CelNode list, CelNode index) : CelNode(list is ListNode l ? l.Element : CelType.Dyn)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = list.Eval(context);
        var i = index.Eval(context);
        return l.IsError || i.IsError || l.Type != CelType.List || i.Type != CelType.Int || i.Number < 0 || i.Number >= l.List.Length
            ? CelValue.Error
            : l.List[i.Number];
    }
}

internal sealed class NotNode(CelNode operand) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var v = operand.Eval(context);
        return v.IsError || v.Type != CelType.Bool ? CelValue.Error : CelValue.Of(!v.Bool);
    }
}

internal sealed class NegateNode(CelNode operand) : CelNode(operand.Type)
{
    public override CelValue Eval(ICelContext context)
    {
        var v = operand.Eval(context);
        return v.IsError ? v : v.Type switch
        {
            CelType.Int when v.Number != long.MinValue => CelValue.Of(-v.Number),
            CelType.Double => CelValue.Of(-v.Real),
            CelType.Duration when v.Number != long.MinValue => CelValue.Of(TimeSpan.FromTicks(-v.Number)),
            _ => CelValue.Error,
        };
    }
}

// cel-spec's logical operators are commutative over errors: a false (for &&) or a true (for ||) on either side decides.
internal sealed class AndNode(CelNode left, CelNode right) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = left.Eval(context);
        if (!l.IsError && l.Type == CelType.Bool && !l.Bool)
        {
            return CelValue.False;
        }

        var r = right.Eval(context);
        if (!r.IsError && r.Type == CelType.Bool && !r.Bool)
        {
            return CelValue.False;
        }

        return l.IsError || r.IsError || l.Type != CelType.Bool || r.Type != CelType.Bool ? CelValue.Error : CelValue.True;
    }
}

internal sealed class OrNode(CelNode left, CelNode right) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = left.Eval(context);
        if (!l.IsError && l.Type == CelType.Bool && l.Bool)
        {
            return CelValue.True;
        }

        var r = right.Eval(context);
        if (!r.IsError && r.Type == CelType.Bool && r.Bool)
        {
            return CelValue.True;
        }

        return l.IsError || r.IsError || l.Type != CelType.Bool || r.Type != CelType.Bool ? CelValue.Error : CelValue.False;
    }
}

internal sealed class ConditionalNode(CelNode condition, CelNode then, CelNode otherwise, CelType type) : CelNode(type)
{
    public override CelValue Eval(ICelContext context)
    {
        var c = condition.Eval(context);
        return c.IsError || c.Type != CelType.Bool ? CelValue.Error : c.Bool ? then.Eval(context) : otherwise.Eval(context);
    }
}

internal sealed class EqualsNode(CelNode left, CelNode right, bool negate) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = left.Eval(context);
        var r = right.Eval(context);
        if (l.IsError || r.IsError)
        {
            return CelValue.Error;
        }

        var equal = CelOps.Equal(l, r);
        return equal is null ? CelValue.Error : CelValue.Of(equal.Value != negate);
    }
}

internal sealed class OrderNode(CelNode left, CelNode right, string op) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = left.Eval(context);
        var r = right.Eval(context);
        if (l.IsError || r.IsError || CelOps.Compare(l, r) is not { } order)
        {
            return CelValue.Error;
        }

        return CelValue.Of(op switch
        {
            "<" => order < 0,
            "<=" => order <= 0,
            ">" => order > 0,
            _ => order >= 0,
        });
    }
}

internal sealed class InListNode(CelNode item, CelNode list) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var x = item.Eval(context);
        var l = list.Eval(context);
        if (x.IsError || l.IsError || l.Type != CelType.List)
        {
            return CelValue.Error;
        }

        foreach (var element in l.List)
        {
            if (CelOps.Equal(x, element) == true)
            {
                return CelValue.True;
            }
        }

        return CelValue.False;
    }
}

internal sealed class ArithmeticNode(string op, CelNode left, CelNode right, CelType type) : CelNode(type)
{
    public override CelValue Eval(ICelContext context)
    {
        var l = left.Eval(context);
        var r = right.Eval(context);
        return l.IsError || r.IsError || l.Type != r.Type ? CelValue.Error : CelOps.Arithmetic(op, l, r);
    }
}

internal sealed class SizeNode(CelNode operand) : CelNode(CelType.Int)
{
    public override CelValue Eval(ICelContext context)
    {
        var v = operand.Eval(context);
        return v.IsError ? v : v.Type switch
        {
            CelType.String => CelValue.Of(CodePoints(v.String)),
            CelType.List => CelValue.Of((long)v.List.Length),
            _ => CelValue.Error,
        };
    }

    // CEL counts code points, not UTF-16 units.
    private static long CodePoints(string text)
    {
        long count = 0;
        foreach (var _ in text.EnumerateRunes())
        {
            count++;
        }

        return count;
    }
}

internal sealed class StringTestNode(string function, CelNode text, CelNode argument) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var t = text.Eval(context);
        var a = argument.Eval(context);
        if (t.IsError || a.IsError || t.Type != CelType.String || a.Type != CelType.String)
        {
            return CelValue.Error;
        }

        return CelValue.Of(function switch
        {
            "contains" => t.String.Contains(a.String, StringComparison.Ordinal),
            "startsWith" => t.String.StartsWith(a.String, StringComparison.Ordinal),
            _ => t.String.EndsWith(a.String, StringComparison.Ordinal),
        });
    }
}

internal sealed class MatchesNode(CelNode text, Regex pattern) : CelNode(CelType.Bool)
{
    public override CelValue Eval(ICelContext context)
    {
        var t = text.Eval(context);
        return t.IsError || t.Type != CelType.String ? CelValue.Error : CelValue.Of(pattern.IsMatch(t.String));
    }
}

internal sealed class ConvertNode(string function, CelNode operand) : CelNode(function switch
{
    "int" => CelType.Int,
    "uint" => CelType.UInt,
    "double" => CelType.Double,
    "duration" => CelType.Duration,
    _ => CelType.String,
})
{
    public override CelValue Eval(ICelContext context)
    {
        var v = operand.Eval(context);
        return v.IsError ? v : function switch
        {
            "int" => CelOps.ToInt(v),
            "uint" => CelOps.ToUInt(v),
            "double" => CelOps.ToDouble(v),
            "duration" => v.Type == CelType.String ? ParseDuration(v.String) : v.Type == CelType.Duration ? v : CelValue.Error,
            _ => CelOps.ToText(v),
        };
    }

    public static CelValue ParseDuration(string text)
    {
        var negative = text.StartsWith('-');
        return Durations.TryParse(negative ? text[1..] : text, out var value) ? CelValue.Of(negative ? -value : value) : CelValue.Error;
    }
}

/// <summary>cel-spec's equality, ordering, arithmetic and conversions on <see cref="CelValue"/>s.</summary>
internal static class CelOps
{
    // Numbers compare across int, uint and double by value (cel-spec's heterogeneous equality).
    public static bool? Equal(CelValue l, CelValue r)
    {
        if (IsNumber(l) && IsNumber(r))
        {
            return CompareNumbers(l, r) == 0;
        }

        if (l.Type != r.Type)
        {
            return false;
        }

        return l.Type switch
        {
            CelType.Null => true,
            CelType.Bool or CelType.Duration => l.Number == r.Number,
            CelType.String => string.Equals(l.String, r.String, StringComparison.Ordinal),
            CelType.List => ListsEqual(l.List, r.List),
            _ => null,
        };
    }

    public static int? Compare(CelValue l, CelValue r)
    {
        if (IsNumber(l) && IsNumber(r))
        {
            return CompareNumbers(l, r);
        }

        if (l.Type != r.Type)
        {
            return null;
        }

        return l.Type switch
        {
            CelType.String => Math.Sign(string.CompareOrdinal(l.String, r.String)),
            CelType.Bool or CelType.Duration => l.Number.CompareTo(r.Number),
            _ => null,
        };
    }

    public static CelValue Arithmetic(string op, CelValue l, CelValue r)
    {
        try
        {
            checked
            {
                return (l.Type, op) switch
                {
                    (CelType.Int, "+") => CelValue.Of(l.Number + r.Number),
                    (CelType.Int, "-") => CelValue.Of(l.Number - r.Number),
                    (CelType.Int, "*") => CelValue.Of(l.Number * r.Number),
                    (CelType.Int, "/") when r.Number != 0 => CelValue.Of(l.Number / r.Number),
                    (CelType.Int, "%") when r.Number != 0 => CelValue.Of(l.Number % r.Number),
                    (CelType.UInt, "+") => CelValue.OfUInt((ulong)l.Number + (ulong)r.Number),
                    (CelType.UInt, "-") => CelValue.OfUInt((ulong)l.Number - (ulong)r.Number),
                    (CelType.UInt, "*") => CelValue.OfUInt((ulong)l.Number * (ulong)r.Number),
                    (CelType.UInt, "/") when r.Number != 0 => CelValue.OfUInt((ulong)l.Number / (ulong)r.Number),
                    (CelType.UInt, "%") when r.Number != 0 => CelValue.OfUInt((ulong)l.Number % (ulong)r.Number),
                    (CelType.Double, "+") => CelValue.Of(l.Real + r.Real),
                    (CelType.Double, "-") => CelValue.Of(l.Real - r.Real),
                    (CelType.Double, "*") => CelValue.Of(l.Real * r.Real),
                    (CelType.Double, "/") => CelValue.Of(l.Real / r.Real),
                    (CelType.String, "+") => CelValue.Of(l.String + r.String),
                    (CelType.Duration, "+") => CelValue.Of(TimeSpan.FromTicks(l.Number + r.Number)),
                    (CelType.Duration, "-") => CelValue.Of(TimeSpan.FromTicks(l.Number - r.Number)),
                    (CelType.List, "+") => CelValue.Of([.. l.List, .. r.List]),
                    _ => CelValue.Error, // division by zero, or no overload
                };
            }
        }
        catch (OverflowException)
        {
            return CelValue.Error;
        }
    }

    public static CelValue ToInt(CelValue v) => v.Type switch
    {
        CelType.Int => v,
        CelType.UInt => (ulong)v.Number <= long.MaxValue ? CelValue.Of(v.Number) : CelValue.Error,
        CelType.Double => double.IsFinite(v.Real) && v.Real > -9.2233720368547758E18 && v.Real < 9.2233720368547758E18 ? CelValue.Of((long)Math.Truncate(v.Real)) : CelValue.Error,
        CelType.String => long.TryParse(v.String, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n) ? CelValue.Of(n) : CelValue.Error,
        _ => CelValue.Error,
    };

    public static CelValue ToUInt(CelValue v) => v.Type switch
    {
        CelType.UInt => v,
        CelType.Int => v.Number >= 0 ? CelValue.OfUInt((ulong)v.Number) : CelValue.Error,
        CelType.Double => double.IsFinite(v.Real) && v.Real > -1 && v.Real < 1.8446744073709552E19 ? CelValue.OfUInt((ulong)Math.Truncate(v.Real)) : CelValue.Error,
        CelType.String => ulong.TryParse(v.String, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) ? CelValue.OfUInt(n) : CelValue.Error,
        _ => CelValue.Error,
    };

    public static CelValue ToDouble(CelValue v) => v.Type switch
    {
        CelType.Double => v,
        CelType.Int => CelValue.Of((double)v.Number),
        CelType.UInt => CelValue.Of((double)(ulong)v.Number),
        CelType.String => double.TryParse(v.String, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) ? CelValue.Of(d) : CelValue.Error,
        _ => CelValue.Error,
    };

    public static CelValue ToText(CelValue v) => v.Type switch
    {
        CelType.String => v,
        CelType.Int or CelType.UInt or CelType.Double or CelType.Bool => CelValue.Of(v.ToString().TrimEnd('u')),
        CelType.Duration => CelValue.Of(TimeSpan.FromTicks(v.Number).TotalSeconds.ToString("R", System.Globalization.CultureInfo.InvariantCulture) + "s"),
        _ => CelValue.Error,
    };

    private static bool IsNumber(CelValue v) => v.Type is CelType.Int or CelType.UInt or CelType.Double;

    private static int CompareNumbers(CelValue l, CelValue r)
    {
        if (l.Type == r.Type)
        {
            return l.Type switch
            {
                CelType.Int => l.Number.CompareTo(r.Number),
                CelType.UInt => ((ulong)l.Number).CompareTo((ulong)r.Number),
                _ => l.Real.CompareTo(r.Real),
            };
        }

        if (l.Type == CelType.Double || r.Type == CelType.Double)
        {
            return AsDouble(l).CompareTo(AsDouble(r));
        }

        // int against uint: a negative int is below every uint.
        return l.Type == CelType.Int
            ? (l.Number < 0 ? -1 : ((ulong)l.Number).CompareTo((ulong)r.Number))
            : (r.Number < 0 ? 1 : ((ulong)l.Number).CompareTo((ulong)r.Number));
    }

    private static double AsDouble(CelValue v) => v.Type switch
    {
        CelType.Int => v.Number,
        CelType.UInt => (ulong)v.Number,
        _ => v.Real,
    };

    private static bool ListsEqual(CelValue[] l, CelValue[] r)
    {
        if (l.Length != r.Length)
        {
            return false;
        }

        for (var i = 0; i < l.Length; i++)
        {
            if (CelOps.Equal(l[i], r[i]) != true)
            {
                return false;
            }
        }

        return true;
    }
}
