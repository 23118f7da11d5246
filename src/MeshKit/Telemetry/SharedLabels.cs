using System.Collections.Concurrent;

namespace MeshKit.Telemetry;

/// <summary>
/// One object per distinct text for what peers tell about themselves (their metadata, their principal), shared by
/// every connection and endpoint that sees the same text. The values become metric labels: a label lookup in the
/// metrics SDK compares equal strings by reference before comparing characters, and the report queue batches
/// consecutive reports whose labels are the same objects, so a text parsed per connection (32 connections from one
/// caller: 32 copies) costs a character comparison per label per measurement and breaks every batch. Bounded because
/// the texts come from peers: past <see cref="Capacity"/> entries a value is used as it is, never stored.
/// </summary>
/// <typeparam name="T">What a text stands for.</typeparam>
internal static class SharedLabels<T>
    where T : class
{
    /// <summary>The most distinct texts kept (a mesh's workloads and identities, with room to spare).</summary>
    public const int Capacity = 4096;

    private static readonly ConcurrentDictionary<string, T> Shared = new(StringComparer.Ordinal);

    /// <summary>Gets the object shared for <paramref name="text"/>, if one is.</summary>
    public static bool TryGet(string text, out T value) => Shared.TryGetValue(text, out value!);

    /// <summary>Returns the object shared for <paramref name="text"/>: <paramref name="value"/> if none was (and there is room).</summary>
    public static T Share(string text, T value) =>
        Shared.TryGetValue(text, out var shared) ? shared : Shared.Count < Capacity ? Shared.GetOrAdd(text, value) : value;

    /// <summary>Gets how many texts are kept (tests).</summary>
    internal static int Count => Shared.Count;
}
