namespace Bookinfo;

/// <summary>Runs an action when standard input closes: how a parent process asks a child for a clean stop, on every OS.</summary>
internal static class StdinWatcher
{
    public static void OnClose(Action action) =>
        _ = Task.Run(() =>
        {
            try
            {
                while (Console.In.Read() != -1)
                {
                }
            }
            catch (IOException)
            {
            }

            action();
        });
}
