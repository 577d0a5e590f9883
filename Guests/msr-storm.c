/*
 * msr-storm - N reads of IA32_APIC_BASE (MSR 0x1b). The monitor traps
 * this MSR through the KVM MSR filter, so every RDMSR is a VM exit
 * (KVM_EXIT_X86_RDMSR). Each value must describe the boot processor's
 * enabled xAPIC at the default base (SDM Vol. 3A 11.4.4).
 *
 * It also writes IA32_SYSENTER_EIP (MSR 0x176) once and reads it back: as
 * L2, that write goes through L0, which keeps L2's guest-state MSRs.
 *
 * usage: msr-storm [N]    (default N=100000)
 */
#include "guest.h"

#define USAGE	"msr-storm [N]"
#define MSR_SYSENTER_EIP_STORM	0x176u		/* IA32_SYSENTER_EIP */
#define SYSENTER_EIP_VALUE	0xc0de000u

static bool apic_base_ok(uint64_t v)
{
	return (v & APIC_BASE_ENABLE) && (v & APIC_BASE_BSP) &&
	       (v & ~0xfffull) == APIC_DEFAULT_BASE;
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, bad = 0, first = 0, first_bad = 0;

	if (argc > 2 || (argc == 2 && !parse_u64(argv[1], &n)))
		return usage(USAGE);

	printf("msr-storm: %llu reads of MSR 0x%x\n",
	       (unsigned long long)n, MSR_IA32_APIC_BASE);

	wrmsr(MSR_SYSENTER_EIP_STORM, SYSENTER_EIP_VALUE);
	uint64_t eip = rdmsr(MSR_SYSENTER_EIP_STORM);
	report(eip == SYSENTER_EIP_VALUE, "wrmsr(0x176, 0x%x) reads back 0x%llx", SYSENTER_EIP_VALUE,
	       (unsigned long long)eip);

	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = rdmsr(MSR_IA32_APIC_BASE);

		if (i == 0)
			first = v;
		if (!apic_base_ok(v) && bad++ == 0)
			first_bad = v;
	}
	uint64_t cycles = rdtsc() - t0;

	printf("msr-storm: IA32_APIC_BASE = 0x%llx, %llu TSC cycles, %llu per exit\n",
	       (unsigned long long)first, (unsigned long long)cycles,
	       (unsigned long long)(n ? cycles / n : 0));
	if (bad)
		printf("msr-storm: first bad value 0x%llx\n", (unsigned long long)first_bad);
	report(bad == 0,
	       "%llu rdmsr(0x1b): base 0xfee00000, enabled, BSP (%llu bad)",
	       (unsigned long long)n, (unsigned long long)bad);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
