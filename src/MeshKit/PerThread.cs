namespace MeshKit;

/// <summary>
/// One reusable instance of <typeparamref name="T"/> per thread, for objects a request needs only while it runs on
/// one thread (or that the caller gives back before the next use on it): rent, use, clear, return.
/// </summary>
internal static class PerThread<T>
    where T : class, new()
{
    [ThreadStatic]
    private static T? t_item;

    /// <summary>Takes the thread's instance, or a new one when it is out (rented and not yet returned).</summary>
    public static T Rent()
    {
        var item = t_item ?? new T();
        t_item = null;
        return item;
    }

    /// <summary>Keeps a cleared instance for the next <see cref="Rent"/> on this thread.</summary>
    public static void Return(T item) => t_item = item;
}
