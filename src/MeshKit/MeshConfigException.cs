namespace MeshKit;

/// <summary>Configuration received by a workload could not be applied; the workload keeps its previous configuration.</summary>
public sealed class MeshConfigException : Exception
{
    /// <summary>Initializes a new instance of the <see cref="MeshConfigException"/> class.</summary>
    public MeshConfigException()
    {
    }

    /// <summary>Initializes a new instance of the <see cref="MeshConfigException"/> class.</summary>
    /// <param name="message">What could not be applied.</param>
    public MeshConfigException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new instance of the <see cref="MeshConfigException"/> class.</summary>
    /// <param name="message">What could not be applied.</param>
    /// <param name="innerException">The cause.</param>
    public MeshConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
