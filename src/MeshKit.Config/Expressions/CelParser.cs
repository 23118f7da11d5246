using System.Globalization;
using System.Text;

namespace MeshKit.Config.Expressions;

/// <summary>A CEL syntax error or a check error: the reason and the 1-based column in the expression.</summary>
internal sealed class CelException(string message, int column) : Exception(message)
{
    /// <summary>Gets the 1-based column the error was found at.</summary>
    public int Column { get; } = column;

    /// <summary>Gets the error as diagnostics write it: <c>column N: reason</c>.</summary>
    public string Detail => $"column {Column}: {Message}";
}

/// <summary>The syntax tree of a CEL expression (cel-spec's grammar), each node with its 1-based column.</summary>
internal abstract record CelSyntax(int Column);

internal sealed record CelLiteral(CelValue Value, int Column) : CelSyntax(Column);

internal sealed record CelIdent(string Name, int Column) : CelSyntax(Column);

internal sealed record CelSelect(CelSyntax Operand, string Field, int Column) : CelSyntax(Column);

internal sealed record CelIndex(CelSyntax Operand, CelSyntax Key, int Column) : CelSyntax(Column);

internal sealed record CelCall(CelSyntax? Target, string Function, IReadOnlyList<CelSyntax> Args, int Column) : CelSyntax(Column);

internal sealed record CelList(IReadOnlyList<CelSyntax> Items, int Column) : CelSyntax(Column);

internal sealed record CelUnary(string Operator, CelSyntax Operand, int Column) : CelSyntax(Column);

internal sealed record CelBinary(string Operator, CelSyntax Left, CelSyntax Right, int Column) : CelSyntax(Column);

internal sealed record CelConditional(CelSyntax Condition, CelSyntax Then, CelSyntax Else, int Column) : CelSyntax(Column);

/// <summary>
/// A recursive-descent parser for cel-spec's grammar: the conditional, logical, relational, arithmetic and unary
/// operators with CEL's precedence, member selection, indexing, calls, list literals and CEL's literals (int, uint,
/// double, string with its escapes and raw and triple-quoted forms, bool, null). Map and message literals and bytes
/// parse to a clear error: nothing MeshKit evaluates has them.
/// </summary>
internal sealed class CelParser
{
    private static readonly HashSet<string> Reserved = new(StringComparer.Ordinal)
    {
        "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package",
        "namespace", "return", "var", "void", "while",
    };

    private readonly string _text;
    private int _at;

    private CelParser(string text) => _text = text;

    /// <summary>Parses <paramref name="text"/>; throws <see cref="CelException"/> with the column of the first error.</summary>
    public static CelSyntax Parse(string text)
    {
        var parser = new CelParser(text);
        var expression = parser.Expression();
        parser.SkipSpace();
        if (parser._at < text.Length)
        {
            throw parser.Error($"unexpected '{text[parser._at]}'");
        }

        return expression;
    }

    private CelException Error(string message, int? at = null) => new(message, (at ?? _at) + 1);

    private CelSyntax Expression()
    {
        var condition = Or();
        if (!Accept("?"))
        {
            return condition;
        }

        var column = _at;
        var then = Or();
        Expect(":");
        return new CelConditional(condition, then, Expression(), column);
    }

    private CelSyntax Or()
    {
        var left = And();
        while (Peek("||"))
        {
            var column = _at + 1;
            _at += 2;
            left = new CelBinary("||", left, And(), column);
        }

        return left;
    }

    private CelSyntax And()
    {
        var left = Relation();
        while (Peek("&&"))
        {
            var column = _at + 1;
            _at += 2;
            left = new CelBinary("&&", left, Relation(), column);
        }

        return left;
    }

    private CelSyntax Relation()
    {
        var left = Addition();
        while (true)
        {
            SkipSpace();
            var column = _at + 1;
            var op = Peek("==") ? "==" : Peek("!=") ? "!=" : Peek("<=") ? "<=" : Peek(">=") ? ">=" : Peek("<") ? "<" : Peek(">") ? ">" : PeekWord("in") ? "in" : null;
            if (op is null)
            {
                return left;
            }

            _at += op.Length;
            left = new CelBinary(op, left, Addition(), column);
        }
    }

    private CelSyntax Addition()
    {
        var left = Multiplication();
        while (true)
        {
            SkipSpace();
            var column = _at + 1;
            if (_at < _text.Length && _text[_at] is '+' or '-')
            {
                var op = _text[_at++].ToString();
                left = new CelBinary(op, left, Multiplication(), column);
                continue;
            }

            return left;
        }
    }

    private CelSyntax Multiplication()
    {
        var left = Unary();
        while (true)
        {
            SkipSpace();
            var column = _at + 1;
            if (_at < _text.Length && _text[_at] is '*' or '/' or '%')
            {
                var op = _text[_at++].ToString();
                left = new CelBinary(op, left, Unary(), column);
                continue;
            }

            return left;
        }
    }

    private CelSyntax Unary()
    {
        SkipSpace();
        var column = _at + 1;
        if (Peek("!") && !Peek("!="))
        {
            _at++;
            return new CelUnary("!", Unary(), column);
        }

        if (Peek("-"))
        {
            _at++;
            SkipSpace();
            // A negative literal is one literal (so that -9223372036854775808 is an int).
            if (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
            {
                return Member(Number(negative: true, column));
            }

            return new CelUnary("-", Unary(), column);
        }

        return Member(Primary());
    }

    private CelSyntax Member(CelSyntax operand)
    {
        while (true)
        {
            SkipSpace();
            var column = _at + 1;
            if (Accept("."))
            {
                var name = Identifier("a field or method name after '.'");
                if (Accept("("))
                {
                    operand = new CelCall(operand, name, Arguments(")"), column);
                }
                else
                {
                    operand = new CelSelect(operand, name, column);
                }

                continue;
            }

            if (Accept("["))
            {
                var key = Expression();
                Expect("]");
                operand = new CelIndex(operand, key, column);
                continue;
            }

            return operand;
        }
    }

    private CelSyntax Primary()
    {
        SkipSpace();
        var column = _at + 1;
        if (_at >= _text.Length)
        {
            throw Error("the expression ends where a value was expected");
        }

        var c = _text[_at];
        if (Accept("("))
        {
            var inner = Expression();
            Expect(")");
            return inner;
        }

        if (Accept("["))
        {
            return new CelList(Arguments("]"), column);
        }

        if (c == '{')
        {
            throw Error("map literals are not supported by MeshKit's CEL");
        }

        if (char.IsAsciiDigit(c) || (c == '.' && _at + 1 < _text.Length && char.IsAsciiDigit(_text[_at + 1])))
        {
            return Number(negative: false, column);
        }

        if (c is '"' or '\'')
        {
            return new CelLiteral(CelValue.Of(StringLiteral(raw: false)), column);
        }

        if (c is 'r' or 'R' && _at + 1 < _text.Length && _text[_at + 1] is '"' or '\'')
        {
            _at++;
            return new CelLiteral(CelValue.Of(StringLiteral(raw: true)), column);
        }

        if (c is 'b' or 'B' && _at + 1 < _text.Length && _text[_at + 1] is '"' or '\'')
        {
            throw Error("bytes literals are not supported by MeshKit's CEL");
        }

        if (c == '.')
        {
            _at++; // a leading dot names the root scope: the same names here
        }

        var name = Identifier("a value");
        switch (name)
        {
            case "true":
                return new CelLiteral(CelValue.True, column);
            case "false":
                return new CelLiteral(CelValue.False, column);
            case "null":
                return new CelLiteral(CelValue.Null, column);
            case "in":
                throw Error("'in' is an operator, not a value", column - 1);
        }

        if (Reserved.Contains(name))
        {
            throw Error($"'{name}' is a reserved word", column - 1);
        }

        return Accept("(") ? new CelCall(null, name, Arguments(")"), column) : new CelIdent(name, column);
    }

    private List<CelSyntax> Arguments(string close)
    {
        var items = new List<CelSyntax>();
        if (Accept(close))
        {
            return items;
        }

        do
        {
            if (close == "]" && Peek("]"))
            {
                break; // a trailing comma
            }

            items.Add(Expression());
        }
        while (Accept(","));

        Expect(close);
        return items;
    }

    private CelLiteral Number(bool negative, int column)
    {
        var start = _at;
        if (_text.AsSpan(_at).StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            _at += 2;
            var digits = _at;
            while (_at < _text.Length && char.IsAsciiHexDigit(_text[_at]))
            {
                _at++;
            }

            var hex = _text[digits.._at];
            var unsignedHex = AcceptUnsignedSuffix();
            if (hex.Length == 0 || !ulong.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var bits))
            {
                throw Error("invalid hexadecimal literal", start);
            }

            return Integer(bits, negative, unsignedHex, column, start);
        }

        var real = false;
        while (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
        {
            _at++;
        }

        if (_at + 1 < _text.Length && _text[_at] == '.' && char.IsAsciiDigit(_text[_at + 1]))
        {
            real = true;
            _at++;
            while (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
            {
                _at++;
            }
        }

        if (_at < _text.Length && _text[_at] is 'e' or 'E')
        {
            var mark = _at++;
            if (_at < _text.Length && _text[_at] is '+' or '-')
            {
                _at++;
            }

            if (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
            {
                real = true;
                while (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
                {
                    _at++;
                }
            }
            else
            {
                _at = mark;
            }
        }

        var literal = _text[start.._at];
        if (real)
        {
            var value = double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture);
            return new CelLiteral(CelValue.Of(negative ? -value : value), column);
        }

        var unsigned = AcceptUnsignedSuffix();
        if (!ulong.TryParse(literal, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            throw Error($"integer literal {literal} is out of range", start);
        }

        return Integer(number, negative, unsigned, column, start);
    }

    private bool AcceptUnsignedSuffix()
    {
        if (_at < _text.Length && _text[_at] is 'u' or 'U')
        {
            _at++;
            return true;
        }

        return false;
    }

    private CelLiteral Integer(ulong magnitude, bool negative, bool unsigned, int column, int start)
    {
        if (unsigned)
        {
            if (negative)
            {
                throw Error("an unsigned literal cannot be negative", start);
            }

            return new CelLiteral(CelValue.OfUInt(magnitude), column);
        }

        if (negative ? magnitude > 9223372036854775808UL : magnitude > long.MaxValue)
        {
            throw Error("integer literal is out of range (use a u suffix for unsigned)", start);
        }

        return new CelLiteral(CelValue.Of(negative ? unchecked(-(long)magnitude) : (long)magnitude), column);
    }

    private string StringLiteral(bool raw)
    {
        var start = _at;
        var quote = _text[_at];
        var triple = _at + 2 < _text.Length && _text[_at + 1] == quote && _text[_at + 2] == quote;
        _at += triple ? 3 : 1;
        var value = new StringBuilder();
        while (true)
        {
            if (_at >= _text.Length)
            {
                throw Error("unterminated string literal", start);
            }

            var c = _text[_at];
            if (triple ? _text.AsSpan(_at).StartsWith(new string(quote, 3)) : c == quote)
            {
                _at += triple ? 3 : 1;
                return value.ToString();
            }

            if (!triple && c is '\n' or '\r')
            {
                throw Error("a string literal cannot span lines (use triple quotes)", start);
            }

            if (c != '\\' || raw)
            {
                value.Append(c);
                _at++;
                continue;
            }

            Escape(value);
        }
    }

    private void Escape(StringBuilder value)
    {
        var at = _at++;
        if (_at >= _text.Length)
        {
            throw Error("unterminated escape sequence", at);
        }

        var c = _text[_at++];
        switch (c)
        {
            case '\\' or '\'' or '"' or '`' or '?':
                value.Append(c);
                return;
            case 'a': value.Append('\a'); return;
            case 'b': value.Append('\b'); return;
            case 'f': value.Append('\f'); return;
            case 'n': value.Append('\n'); return;
            case 'r': value.Append('\r'); return;
            case 't': value.Append('\t'); return;
            case 'v': value.Append('\v'); return;
            case 'x' or 'X':
                value.Append((char)HexDigits(2, at));
                return;
            case 'u':
                value.Append((char)HexDigits(4, at));
                return;
            case 'U':
                var code = HexDigits(8, at);
                if (code > 0x10FFFF || code is >= 0xD800 and <= 0xDFFF)
                {
                    throw Error("invalid code point in escape sequence", at);
                }

                value.Append(char.ConvertFromUtf32(code));
                return;
            case >= '0' and <= '3':
                if (_at + 1 < _text.Length && _text[_at] is >= '0' and <= '7' && _text[_at + 1] is >= '0' and <= '7')
                {
                    value.Append((char)(((c - '0') * 64) + ((_text[_at] - '0') * 8) + (_text[_at + 1] - '0')));
                    _at += 2;
                    return;
                }

                break;
        }

        throw Error($"invalid escape sequence '\\{c}'", at);
    }

    private int HexDigits(int count, int at)
    {
        if (_at + count > _text.Length || !int.TryParse(_text.AsSpan(_at, count), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code))
        {
            throw Error("invalid escape sequence", at);
        }

        _at += count;
        return code;
    }

    private string Identifier(string what)
    {
        SkipSpace();
        var start = _at;
        if (_at < _text.Length && (char.IsAsciiLetter(_text[_at]) || _text[_at] == '_'))
        {
            _at++;
            while (_at < _text.Length && (char.IsAsciiLetterOrDigit(_text[_at]) || _text[_at] == '_'))
            {
                _at++;
            }

            return _text[start.._at];
        }

        throw Error(_at < _text.Length ? $"unexpected '{_text[_at]}' where {what} was expected" : $"the expression ends where {what} was expected");
    }

    private void SkipSpace()
    {
        while (_at < _text.Length)
        {
            if (char.IsWhiteSpace(_text[_at]))
            {
                _at++;
            }
            else if (_text.AsSpan(_at).StartsWith("//"))
            {
                while (_at < _text.Length && _text[_at] != '\n')
                {
                    _at++;
                }
            }
            else
            {
                return;
            }
        }
    }

    private bool Peek(string token)
    {
        SkipSpace();
        return _text.AsSpan(_at).StartsWith(token, StringComparison.Ordinal);
    }

    private bool PeekWord(string word) =>
        Peek(word) && (_at + word.Length >= _text.Length || !(char.IsAsciiLetterOrDigit(_text[_at + word.Length]) || _text[_at + word.Length] == '_'));

    private bool Accept(string token)
    {
        if (!Peek(token))
        {
            return false;
        }

        _at += token.Length;
        return true;
    }

    private void Expect(string token)
    {
        if (!Accept(token))
        {
            throw Error(_at < _text.Length ? $"expected '{token}' but found '{_text[_at]}'" : $"expected '{token}' but the expression ends");
        }
    }
}
