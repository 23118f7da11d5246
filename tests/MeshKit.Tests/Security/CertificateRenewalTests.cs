using MeshKit.Security;

namespace MeshKit.Tests.Security;

/// <summary>When a workload renews its certificate.</summary>
public sealed class CertificateRenewalTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData(0.0, 10.8)]
    [InlineData(0.5, 12.0)]
    [InlineData(1.0, 13.2)]
    public void ADayLongCertificate_IsRenewedAtHalfItsLife_GiveOrTakeFivePercent(double jitter, double hours)
    {
        // Issued now, backdated a minute as the CA does.
        var delay = CertificateManager.RenewalDelay(Now.AddMinutes(-1), Now.AddHours(24), Now, jitter);

        Assert.Equal(TimeSpan.FromHours(hours), delay);
    }

    [Fact]
    public void AShortCertificate_IsNotRenewedAtOnce_ForItsBackdatedStart()
    {
        // Counted from NotBefore, a 10 s certificate backdated a minute was past half its life when issued: the
        // workload renewed it at once, and every certificate after it, in a loop.
        var delay = CertificateManager.RenewalDelay(Now.AddMinutes(-1), Now.AddSeconds(10), Now, 0.5);

        Assert.Equal(TimeSpan.FromSeconds(5), delay);
    }

    [Fact]
    public void ACertificateNotYetValid_IsRenewedAtHalfItsLifeFromItsStart()
    {
        var delay = CertificateManager.RenewalDelay(Now.AddMinutes(10), Now.AddMinutes(30), Now, 0.5);

        Assert.Equal(TimeSpan.FromMinutes(20), delay);
    }

    [Fact]
    public void AnExpiredCertificate_IsReplacedAtOnce()
    {
        Assert.Equal(TimeSpan.Zero, CertificateManager.RenewalDelay(Now.AddHours(-2), Now.AddHours(-1), Now, 0.5));
    }
}
