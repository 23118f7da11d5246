using Bookinfo;

// One command runs the whole mesh (the launcher); the launcher runs each service as its own process with --role.
var role = Args.Get(args, "--role");
return role switch
{
    null => await Launcher.RunAsync(args),
    "controlplane" => await Services.RunControlPlaneAsync(args),
    _ => await Services.RunServiceAsync(role, args),
};
