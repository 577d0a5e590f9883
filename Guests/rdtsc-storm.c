/*
 * rdtsc-storm - N RDTSCs in a tight loop. Each value must be at least the
 * one before it, and the first at least MIN: with MIN set to the TSC offset
 * L1 gives (turtle tscoffset=N), that shows L2 reads its TSC with the offset
 * applied (SDM Vol. 3C 26.3). As L2 every RDTSC reaches L0 through its
 * patched code page, which exits to L1 under RDTSC exiting or adds
 * TSC_OFFSET itself (docs/PATCHING.md).
 *
 * usage: rdtsc-storm [N] [min=0xNN]    (default N=100000, MIN 0)
 */
#include "guest.h"

#define USAGE	"rdtsc-storm [N] [min=0xNN]"

int main(int argc, char **argv)
{
	uint64_t n = 100000, min = 0;
	const char *val;

	for (int i = 1; i < argc; i++) {
		if ((val = arg_value(argv[i], "min"))) {
			if (!parse_u64(val, &min))
				return usage(USAGE " (bad minimum \"%s\")", val);
		} else if (!parse_u64(argv[i], &n) || n == 0) {
			return usage(USAGE " (bad argument \"%s\")", argv[i]);
		}
	}

	printf("rdtsc-storm: %llu RDTSCs\n", (unsigned long long)n);
	uint64_t first = rdtsc(), last = first, backwards = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t = rdtsc();
		backwards += t < last;
		last = t;
	}
	printf("rdtsc-storm: %llu TSC cycles, %llu per RDTSC\n",
	       (unsigned long long)(last - first), (unsigned long long)((last - first) / n));
	report(first >= min, "the TSC reads 0x%llx, at least 0x%llx", (unsigned long long)first, (unsigned long long)min);
	report(backwards == 0, "the TSC never went backwards in %llu reads (%llu times)", (unsigned long long)n,
	       (unsigned long long)backwards);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
