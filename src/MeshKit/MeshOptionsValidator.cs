using MeshKit.Config;
using Microsoft.Extensions.Options;

namespace MeshKit;

/// <summary>Validates <see cref="MeshOptions"/> when the host starts, reporting every problem at once.</summary>
internal sealed class MeshOptionsValidator : IValidateOptions<MeshOptions>
{
    public ValidateOptionsResult Validate(string? name, MeshOptions options)
    {
        var errors = new List<string>(options.PodInfoErrors);
        if (string.IsNullOrEmpty(options.ServiceName) || !Names.IsDnsLabel(options.ServiceName))
        {
            errors.Add($"Mesh:ServiceName '{options.ServiceName}' must be set to a lower-case DNS-1123 label (e.g. 'reviews').");
        }

        if (string.IsNullOrEmpty(options.Namespace) || !Names.IsDnsLabel(options.Namespace))
        {
            errors.Add($"Mesh:Namespace '{options.Namespace}' must be a lower-case DNS-1123 label.");
        }

        if (string.IsNullOrEmpty(options.ServiceAccount) || !Names.IsDnsSubdomain(options.ServiceAccount))
        {
            errors.Add($"Mesh:ServiceAccount '{options.ServiceAccount}' must be a lower-case DNS-1123 name.");
        }

        foreach (var (key, value) in options.Labels)
        {
            if (string.IsNullOrEmpty(key) || key.Length > 253 || value is null || value.Length > 63)
            {
                errors.Add($"Mesh:Labels '{key}' is not a valid label (non-empty key, value of at most 63 characters).");
            }
        }

        if (options.Locality is { Length: > 0 } locality && locality.Split('/').Length > 3)
        {
            errors.Add($"Mesh:Locality '{locality}' must be region/zone/subzone (at most three parts).");
        }

        if (options.ControlPlaneAddress is null && string.IsNullOrEmpty(options.ConfigFile))
        {
            errors.Add("Set Mesh:ControlPlaneAddress (e.g. http://127.0.0.1:15010), Mesh:ConfigFile (static mode), or both.");
        }

        if (options.ControlPlaneAddress is { } address
            && (!address.IsAbsoluteUri || (address.Scheme != Uri.UriSchemeHttp && address.Scheme != Uri.UriSchemeHttps)))
        {
            errors.Add($"Mesh:ControlPlaneAddress '{address}' must be an absolute http:// or https:// URL.");
        }

        for (var i = 0; i < options.ControlPlaneAddresses.Count; i++)
        {
            var replica = options.ControlPlaneAddresses[i];
            if (options.ControlPlaneAddress is null)
            {
                errors.Add($"Mesh:ControlPlaneAddresses:{i} is set without Mesh:ControlPlaneAddress; set the first replica there.");
                break;
            }

            if (replica is null || !replica.IsAbsoluteUri || replica.Scheme != options.ControlPlaneAddress.Scheme)
            {
                errors.Add($"Mesh:ControlPlaneAddresses:{i} '{replica}' must be an absolute {options.ControlPlaneAddress.Scheme}:// URL, like Mesh:ControlPlaneAddress.");
            }
        }

        if (options.IsSecure && string.IsNullOrWhiteSpace(options.JoinToken) && string.IsNullOrWhiteSpace(options.JoinTokenFile) && string.IsNullOrWhiteSpace(options.ServiceAccountTokenFile))
        {
            errors.Add("Mesh:ControlPlaneAddress is https://, so the workload needs a certificate: set Mesh:JoinToken or Mesh:JoinTokenFile (meshctl token create), or, on Kubernetes, Mesh:ServiceAccountTokenFile.");
        }

        if (!string.IsNullOrWhiteSpace(options.ServiceAccountTokenFile))
        {
            if (!File.Exists(options.ServiceAccountTokenFile))
            {
                errors.Add($"Mesh:ServiceAccountTokenFile '{options.ServiceAccountTokenFile}' does not exist.");
            }

            if (string.IsNullOrWhiteSpace(options.RootCertificateFile))
            {
                errors.Add("Mesh:ServiceAccountTokenFile needs Mesh:RootCertificateFile, the mesh's root the control plane must show before the token is sent.");
            }
        }

        if (!string.IsNullOrWhiteSpace(options.RootCertificateFile) && !File.Exists(options.RootCertificateFile))
        {
            errors.Add($"Mesh:RootCertificateFile '{options.RootCertificateFile}' does not exist.");
        }

        if (!string.IsNullOrWhiteSpace(options.JoinTokenFile) && !File.Exists(options.JoinTokenFile))
        {
            errors.Add($"Mesh:JoinTokenFile '{options.JoinTokenFile}' does not exist.");
        }

        if (options.AccessLogSampling is < 0 or > 1 || double.IsNaN(options.AccessLogSampling))
        {
            errors.Add($"Mesh:AccessLogSampling {options.AccessLogSampling} must be between 0 and 1.");
        }

        if (options.NumTrustedProxies < 0)
        {
            errors.Add($"Mesh:NumTrustedProxies {options.NumTrustedProxies} must be 0 or more.");
        }

        for (var i = 0; i < options.ProxyProtocolFrom.Count; i++)
        {
            if (!Addresses.TryParseNetwork(options.ProxyProtocolFrom[i] ?? string.Empty, out _))
            {
                errors.Add($"Mesh:ProxyProtocolFrom:{i} '{options.ProxyProtocolFrom[i]}' is neither an IP address nor a CIDR range (10.0.0.0/8).");
            }
        }

        if (options.CertificateLifetime is { } lifetime && lifetime < TimeSpan.FromMinutes(2))
        {
            errors.Add($"Mesh:CertificateLifetime {lifetime} is too short; at least 2 minutes.");
        }

        if (!string.IsNullOrEmpty(options.ConfigFile) && !File.Exists(options.ConfigFile))
        {
            errors.Add($"Mesh:ConfigFile '{options.ConfigFile}' does not exist.");
        }

        if (options.ServicePort is < 1 or > 65535)
        {
            errors.Add($"Mesh:ServicePort {options.ServicePort} must be between 1 and 65535.");
        }

        if (options.InitialFetchTimeout < TimeSpan.Zero || options.DrainDuration < TimeSpan.Zero)
        {
            errors.Add("Mesh:InitialFetchTimeout and Mesh:DrainDuration must not be negative.");
        }

        if (options.ReconnectBaseDelay <= TimeSpan.Zero || options.ReconnectMaxDelay < options.ReconnectBaseDelay)
        {
            errors.Add("Mesh:ReconnectBaseDelay must be positive and not above Mesh:ReconnectMaxDelay.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
