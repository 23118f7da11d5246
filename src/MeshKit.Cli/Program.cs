using MeshKit.Cli;

return MeshCtl.Run(args, Console.Out, Console.Error);
