/*
 * page-touch - touches N fresh 4 KiB pages starting at 4 MiB: writes a
 * pattern derived from each page's address into three words of the page
 * (first, middle, last), then reads them all back. As L2 under turtle with
 * EPT, every first touch of a page is new work for L0's EPT-on-EPT.
 * Works anywhere (as L1 too).
 *
 * usage: page-touch [N]    (default N=1024, i.e. 4 MiB-8 MiB)
 */
#include "guest.h"

#define USAGE	"page-touch [N]"
#define START	0x400000ull
#define PAGE	4096ull

static uint64_t pattern(uint64_t addr, unsigned word)
{
	return (addr * 0x9e3779b97f4a7c15ull) ^ (0x5a5a5a5a00000000ull | word);
}

extern char __image_start[], __image_end[];

int main(int argc, char **argv)
{
	static const unsigned offsets[3] = { 0, 2048, 4088 };
	uint64_t n = 1024, bad = 0;

	if (argc > 2 || (argc == 2 && (!parse_u64(argv[1], &n) || n == 0)))
		return usage(USAGE);
	uint64_t end = START + n * PAGE;
	if (n > (1ull << 20) || !mb_is_ram(START, end))
		return usage("%s: [0x%llx, 0x%llx) is not all RAM", USAGE, START, (unsigned long long)end);
	if (end > (uintptr_t)__image_start && START < (uintptr_t)__image_end)
		return usage("%s: [0x%llx, 0x%llx) overlaps page-touch itself", USAGE, START,
			     (unsigned long long)end);

	printf("page-touch: %llu pages at 0x%llx-0x%llx\n", (unsigned long long)n, START,
	       (unsigned long long)end);
	uint64_t t0 = rdtsc();
	for (uint64_t a = START; a < end; a += PAGE)
		for (unsigned w = 0; w < 3; w++)
			*(volatile uint64_t *)(uintptr_t)(a + offsets[w]) = pattern(a, w);
	uint64_t t1 = rdtsc();
	for (uint64_t a = START; a < end; a += PAGE)
		for (unsigned w = 0; w < 3; w++)
			if (*(volatile uint64_t *)(uintptr_t)(a + offsets[w]) != pattern(a, w))
				bad++;
	uint64_t t2 = rdtsc();
	printf("page-touch: first touch %llu TSC cycles (%llu per page), read back %llu\n",
	       (unsigned long long)(t1 - t0), (unsigned long long)((t1 - t0) / n),
	       (unsigned long long)(t2 - t1));
	report(bad == 0, "%llu pages written and read back, %llu mismatched words", (unsigned long long)n,
	       (unsigned long long)bad);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
