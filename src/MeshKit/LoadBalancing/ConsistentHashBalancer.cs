using System.IO.Hashing;
using System.Text;

namespace MeshKit.LoadBalancing;

/// <summary>
/// Consistent hashing over one endpoint group: a ring (Ketama-style, as Envoy's ring hash) or a Maglev table, built once
/// per snapshot. The same key reaches the same endpoint from every caller, and moves as little as possible when the
/// endpoints change. Requests without a key are spread at random.
/// </summary>
internal sealed class ConsistentHashBalancer : LoadBalancer
{
    private readonly ulong[] _ringHashes = [];
    private readonly int[] _ringOwners = [];
    private readonly int[] _maglev = [];

    public ConsistentHashBalancer(EndpointView[] endpoints, ulong minimumRingSize, ulong maglevTableSize)
    {
        if (endpoints.Length == 0)
        {
            return;
        }

        if (maglevTableSize > 0)
        {
            _maglev = BuildMaglev(endpoints, (int)maglevTableSize);
        }
        else
        {
            (_ringHashes, _ringOwners) = BuildRing(endpoints, Math.Max(minimumRingSize, (ulong)endpoints.Length));
        }
    }

    public override EndpointView? Pick(EndpointView[] endpoints) => endpoints[Random.Shared.Next(endpoints.Length)];

    public EndpointView PickByHash(EndpointView[] endpoints, ulong hash)
    {
        if (_maglev.Length > 0)
        {
            return endpoints[_maglev[(int)(hash % (ulong)_maglev.Length)]];
        }

        var index = Array.BinarySearch(_ringHashes, hash);
        if (index < 0)
        {
            index = ~index;
        }

        return endpoints[_ringOwners[index == _ringHashes.Length ? 0 : index]];
    }

    /// <summary>The stable 64-bit hash of a key (xxHash64 of its UTF-8 bytes): the same in every process.</summary>
    public static ulong Hash(string key)
    {
        Span<byte> buffer = stackalloc byte[256];
        var bytes = Encoding.UTF8.GetMaxByteCount(key.Length) <= buffer.Length ? buffer[..Encoding.UTF8.GetBytes(key, buffer)] : Encoding.UTF8.GetBytes(key);
        return XxHash64.HashToUInt64(bytes);
    }

    private static (ulong[] Hashes, int[] Owners) BuildRing(EndpointView[] endpoints, ulong ringSize)
    {
        var perEndpoint = (int)Math.Ceiling(ringSize / (double)endpoints.Length);
        var entries = new (ulong Hash, int Owner)[perEndpoint * endpoints.Length];
        var n = 0;
        for (var e = 0; e < endpoints.Length; e++)
        {
            for (var i = 0; i < perEndpoint; i++)
            {
                entries[n++] = (Hash($"{endpoints[e].Key}_{i}"), e);
            }
        }

        Array.Sort(entries, (a, b) => a.Hash.CompareTo(b.Hash));
        return (entries.Select(x => x.Hash).ToArray(), entries.Select(x => x.Owner).ToArray());
    }

    // Maglev (Eisenbud et al., NSDI 2016): each endpoint fills table slots in its own permutation order, in turns.
    private static int[] BuildMaglev(EndpointView[] endpoints, int size)
    {
        var offsets = new long[endpoints.Length];
        var skips = new long[endpoints.Length];
        var next = new long[endpoints.Length];
        for (var e = 0; e < endpoints.Length; e++)
        {
            var bytes = Encoding.UTF8.GetBytes(endpoints[e].Key);
            offsets[e] = (long)(XxHash64.HashToUInt64(bytes, seed: 0) % (ulong)size);
            skips[e] = (long)(XxHash64.HashToUInt64(bytes, seed: 1) % (ulong)(size - 1)) + 1;
        }

        var table = new int[size];
        Array.Fill(table, -1);
        var filled = 0;
        while (true)
        {
            for (var e = 0; e < endpoints.Length; e++)
            {
                long slot;
                do
                {
                    slot = (offsets[e] + (next[e] * skips[e])) % size;
                    next[e]++;
                }
                while (table[slot] >= 0);

                table[slot] = e;
                if (++filled == size)
                {
                    return table;
                }
            }
        }
    }
}
