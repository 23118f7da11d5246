using System.Runtime.CompilerServices;
using MeshKit.Protocol.V1;

namespace MeshKit.ControlPlane.Discovery;

/// <summary>What changed from one set of resources to another: the resources to send and the names removed.</summary>
/// <param name="Changed">Gets the resources that are new or have a new version.</param>
/// <param name="Removed">Gets the names that are gone.</param>
internal sealed record ResourceDelta(Resource[] Changed, string[] Removed);

/// <summary>
/// Computes deltas between resource maps. The maps of a view are immutable and shared by every workload the view
/// serves, so a push to a fleet computes the delta between the old and the new map once and every connection reuses
/// it: the work per connection is a reference comparison, not a walk over every resource.
/// </summary>
internal static class ResourceDeltas
{
    // Keyed by the wanted map (weakly: it lives as long as its mesh state is referenced); each entry remembers the
    // deltas to it from a few earlier maps, weakly too, so no chain of old states is kept alive through the cache.
    private static readonly ConditionalWeakTable<IReadOnlyDictionary<string, Resource>, Entry> Cache = [];
    private static readonly string[] NoNames = [];

    /// <summary>Everything in <paramref name="wanted"/>, for a workload that holds nothing of the type yet.</summary>
    public static ResourceDelta Full(IReadOnlyDictionary<string, Resource> wanted) =>
        Cache.GetValue(wanted, static _ => new Entry()).Full(wanted);

    /// <summary>The delta from one shared map to another, computed once per pair.</summary>
    public static ResourceDelta Between(IReadOnlyDictionary<string, Resource> held, IReadOnlyDictionary<string, Resource> wanted) =>
        Cache.GetValue(wanted, static _ => new Entry()).From(held, wanted);

    /// <summary>The delta from versions a workload resumed with (its own, so not cached).</summary>
    public static ResourceDelta From(IReadOnlyDictionary<string, string> held, IReadOnlyDictionary<string, Resource> wanted) =>
        Compute(name => held.TryGetValue(name, out var version) ? version : null, held.Keys, wanted);

    private static ResourceDelta Compute(Func<string, string?> versionOf, IEnumerable<string> heldNames, IReadOnlyDictionary<string, Resource> wanted)
    {
        var changed = new List<Resource>();
        foreach (var (name, resource) in wanted)
        {
            if (versionOf(name) != resource.Version)
            {
                changed.Add(resource);
            }
        }

        List<string>? removed = null;
        foreach (var name in heldNames)
        {
            if (!wanted.ContainsKey(name))
            {
                (removed ??= []).Add(name);
            }
        }

        return new ResourceDelta([.. changed], removed is null ? NoNames : [.. removed]);
    }

    private sealed class Entry
    {
        private const int Remembered = 4;
        private readonly Lock _lock = new();
        private readonly (WeakReference<IReadOnlyDictionary<string, Resource>> From, ResourceDelta Delta)[] _deltas = new (WeakReference<IReadOnlyDictionary<string, Resource>>, ResourceDelta)[Remembered];
        private ResourceDelta? _full;
        private int _next;

        public ResourceDelta Full(IReadOnlyDictionary<string, Resource> wanted)
        {
            lock (_lock)
            {
                return _full ??= new ResourceDelta([.. wanted.Values], NoNames);
            }
        }

        public ResourceDelta From(IReadOnlyDictionary<string, Resource> held, IReadOnlyDictionary<string, Resource> wanted)
        {
            // Connections of a fleet ask for the same pair at once; computing it under the lock lets one of them do the
            // work and the rest wait for its result instead of each repeating it.
            lock (_lock)
            {
                foreach (var (from, delta) in _deltas)
                {
                    if (from is not null && from.TryGetTarget(out var map) && ReferenceEquals(map, held))
                    {
                        return delta;
                    }
                }

                var computed = Compute(name => held.TryGetValue(name, out var resource) ? resource.Version : null, held.Keys, wanted);
                _deltas[_next] = (new WeakReference<IReadOnlyDictionary<string, Resource>>(held), computed);
                _next = (_next + 1) % Remembered;
                return computed;
            }
        }
    }
}
