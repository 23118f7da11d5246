using System.Buffers;
using System.Buffers.Binary;
using MeshKit.Http;

namespace MeshKit.Tests.Http;

/// <summary>Counting gRPC messages in a body, whatever pieces it comes in.</summary>
public sealed class GrpcFramesTests
{
    // Messages of 0, 1, 3, 300 and 70,000 bytes (lengths that need one, two and three bytes of the prefix), the third compressed.
    private static readonly byte[] Body = Frames(0, 1, 3, 300, 70_000);

    private static byte[] Frames(params int[] lengths)
    {
        var body = new List<byte>();
        for (var i = 0; i < lengths.Length; i++)
        {
            var prefix = new byte[5];
            prefix[0] = (byte)(i == 2 ? 1 : 0);
            BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)lengths[i]);
            body.AddRange(prefix);
            body.AddRange(Enumerable.Repeat((byte)0xFF, lengths[i])); // payload bytes that would read as prefixes
        }

        return [.. body];
    }

    [Theory]
    [InlineData(int.MaxValue)] // at once
    [InlineData(1)]            // byte by byte
    [InlineData(3)]            // across every prefix
    [InlineData(4096)]
    public void EveryMessage_IsCountedOnce_WhateverThePieces(int piece)
    {
        var frames = new GrpcFrames();
        for (var at = 0; at < Body.Length; at += piece)
        {
            frames.Add(Body.AsSpan(at, Math.Min(piece, Body.Length - at)));
        }

        Assert.Equal(5, frames.Count);
    }

    [Fact]
    public void AMessageCounts_FromItsFirstByte_AndASequenceIsReadSegmentBySegment()
    {
        var frames = new GrpcFrames();
        frames.Add(Body.AsSpan(0, 1));
        Assert.Equal(1, frames.Count); // its prefix has begun

        var rest = new ReadOnlySequence<byte>(Body.AsMemory(1));
        frames.Add(rest);
        Assert.Equal(5, frames.Count);
        frames.Add(ReadOnlySpan<byte>.Empty);
        Assert.Equal(5, frames.Count);
    }
}
