/*
 * cr-storm - N rounds of CR3 switches between two address spaces and an
 * INVLPG: each round loads CR3 with a copy of the boot PML4, reads it back,
 * touches a page, invalidates it, and loads the boot PML4 again. Every
 * MOV to or from CR3 and every INVLPG is sensitive (SDM Vol. 3C 26.1.3): as
 * L2 they reach L0 through its patched code page (docs/PATCHING.md), which
 * exits to L1 under CR3-load/store or INVLPG exiting, and otherwise runs
 * the original instruction in KVM.
 *
 * usage: cr-storm [N]    (default N=10000)
 */
#include "guest.h"

#define USAGE	"cr-storm [N]"

static uint64_t other_pml4[512] __attribute__((aligned(4096)));
static volatile uint64_t touched;

static void invlpg(volatile void *p)
{
	__asm__ volatile("invlpg (%0)" : : "r"(p) : "memory");
}

int main(int argc, char **argv)
{
	uint64_t n = 10000;
	if (argc > 1 && (!parse_u64(argv[1], &n) || n == 0))
		return usage(USAGE " (bad argument \"%s\")", argv[1]);

	uint64_t boot = read_cr3(), other = (uint64_t)(uintptr_t)other_pml4;
	memcpy(other_pml4, (void *)(uintptr_t)(boot & ~0xfffull), sizeof(other_pml4));
	printf("cr-storm: %llu rounds between CR3 0x%llx and 0x%llx\n", (unsigned long long)n,
	       (unsigned long long)boot, (unsigned long long)other);

	uint64_t mismatches = 0, t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		write_cr3(other);
		mismatches += read_cr3() != other;
		touched++;
		invlpg(&touched);
		write_cr3(boot);
		mismatches += read_cr3() != boot;
	}
	uint64_t cycles = rdtsc() - t0;

	printf("cr-storm: %llu TSC cycles, %llu per round\n", (unsigned long long)cycles, (unsigned long long)(cycles / n));
	report(mismatches == 0, "MOV from CR3 reads back every value loaded (%llu mismatches in %llu rounds)",
	       (unsigned long long)mismatches, (unsigned long long)n);
	report(touched == n, "a page touched and invalidated every round still holds its count (%llu)", (unsigned long long)touched);
	return report_summary();
}
