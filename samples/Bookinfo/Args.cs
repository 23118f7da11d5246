namespace Bookinfo;

internal static class Args
{
    public static string? Get(string[] args, string name)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
    }

    public static int GetInt(string[] args, string name, int fallback) =>
        int.TryParse(Get(args, name), System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : fallback;
}
