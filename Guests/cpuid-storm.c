/*
 * cpuid-storm - N CPUIDs in a tight loop (Turtles' nested-exit
 * microbenchmark). CPUID exits unconditionally in VMX non-root operation
 * (SDM Vol. 3C 26.1.2), so as L2 each one is an exit to L1; at level 1 KVM
 * answers it in the kernel.
 *
 * usage: cpuid-storm [N] [leaf=0xNN]    (default N=100000, leaf 0)
 */
#include "guest.h"
#include "usermode.h"

#define USAGE	"cpuid-storm [N] [leaf=0xNN]"

static void cpuid4(uint32_t leaf, uint32_t r[4])
{
	cpuid(leaf, 0, &r[0], &r[1], &r[2], &r[3]);
}

static volatile uint32_t user_vendor;

static int cpuid_in_user_mode(void)
{
	uint32_t r[4];
	cpuid4(0, r);
	user_vendor = r[1];
	return current_cpl();
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, leaf = 0;
	const char *val;

	for (int i = 1; i < argc; i++) {
		if ((val = arg_value(argv[i], "leaf"))) {
			if (!parse_u64(val, &leaf) || leaf > 0xffffffffull)
				return usage(USAGE " (bad leaf \"%s\")", val);
		} else if (!parse_u64(argv[i], &n)) {
			return usage(USAGE " (bad argument \"%s\")", argv[i]);
		}
	}

	uint32_t r[4];
	cpuid4(0, r);
	char vendor[13];
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = 0;
	report(r[0] >= 1 && (!strcmp(vendor, "GenuineIntel") || !strcmp(vendor, "AuthenticAMD")),
	       "CPUID.0: vendor \"%s\", maximum leaf 0x%x", vendor, r[0]);
	uint32_t vendor_ebx = r[1];
	cpuid4(1, r);
	report(r[3] & (1u << 0), "CPUID.1:EDX.FPU is set (0x%x)", r[3]);
	int cpl = run_in_user_mode(cpuid_in_user_mode);
	report(cpl == 3 && user_vendor == vendor_ebx, "CPUID at CPL 3 gives the same vendor (CPL %d)", cpl);

	printf("cpuid-storm: %llu CPUIDs of leaf 0x%llx\n", (unsigned long long)n, (unsigned long long)leaf);
	uint32_t first[4], each[4];
	cpuid4((uint32_t)leaf, first);
	uint64_t same = 0, t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		cpuid4((uint32_t)leaf, each);
		same += !memcmp(each, first, sizeof(each));
	}
	uint64_t cycles = rdtsc() - t0;

	printf("cpuid-storm: %llu TSC cycles, %llu per CPUID\n",
	       (unsigned long long)cycles, (unsigned long long)(n ? cycles / n : 0));
	report(same == n, "%llu of %llu CPUIDs of leaf 0x%llx agree", (unsigned long long)same,
	       (unsigned long long)n, (unsigned long long)leaf);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
