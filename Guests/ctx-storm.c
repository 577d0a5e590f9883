/*
 * ctx-storm - context switches: N address spaces, each a copy of the boot
 * PML4 plus its own page at 512 GiB (on a frame of its own), entered in
 * turn R times by a MOV to CR3 (SDM Vol. 3A 4.10.4.1: each load flushes
 * the non-global translations), touching that page each time and checking
 * it is the space's own. Timed with RDTSC per switch.
 *
 * As L2 it compares paging strategies (docs/SHADOW.md): with EPT-on-EPT a
 * CR3 load never leaves L2; with turtle paging=shadow each is an exit, and
 * more address spaces than turtle caches roots for means rebuilding them.
 *
 * usage: ctx-storm [N] [R]    (default N=8 spaces, R=50 rounds; N at most 64)
 */
#include "guest.h"

#define USAGE	"ctx-storm [N] [R]    (N from 1 to 64, R from 1)"
#define MAX	64
#define WINDOW	(1ull << 39)		/* PML4 entry 1 */
#define FRAMES	0xc00000ull		/* one frame per space from 12 MiB */
#define P_RW	3ull

extern uint64_t boot_pml4[512];
struct space {
	uint64_t pml4[512], pdpt[512], pd[512], pt[512];
};
static struct space spaces[MAX] __attribute__((aligned(4096)));

int main(int argc, char **argv)
{
	uint64_t n = 8, rounds = 50;
	if (argc > 3 || (argc > 1 && (!parse_u64(argv[1], &n) || n == 0 || n > MAX)) ||
	    (argc > 2 && (!parse_u64(argv[2], &rounds) || rounds == 0)))
		return usage(USAGE);
	if (!mb_is_ram(FRAMES, FRAMES + MAX * 4096))
		return usage("ctx-storm needs RAM at 0x%llx", (unsigned long long)FRAMES);

	for (uint64_t i = 0; i < n; i++) {
		struct space *s = &spaces[i];
		memcpy(s->pml4, boot_pml4, sizeof(s->pml4));
		s->pml4[1] = (uintptr_t)s->pdpt | P_RW;
		s->pdpt[0] = (uintptr_t)s->pd | P_RW;
		s->pd[0] = (uintptr_t)s->pt | P_RW;
		s->pt[0] = (FRAMES + i * 4096) | P_RW;
		*(volatile uint64_t *)(uintptr_t)(FRAMES + i * 4096) = 0xc0de0000 + i;
	}
	printf("ctx-storm: %llu address spaces, %llu rounds\n", (unsigned long long)n, (unsigned long long)rounds);

	uint64_t boot = read_cr3(), wrong = 0, t0 = rdtsc();
	for (uint64_t r = 0; r < rounds; r++) {
		for (uint64_t i = 0; i < n; i++) {
			write_cr3((uintptr_t)spaces[i].pml4);
			wrong += *(volatile uint64_t *)(uintptr_t)WINDOW != 0xc0de0000 + i;
		}
	}
	uint64_t cycles = rdtsc() - t0;
	write_cr3(boot);

	printf("ctx-storm: %llu TSC cycles, %llu per switch\n", (unsigned long long)cycles,
	       (unsigned long long)(cycles / (n * rounds)));
	report(wrong == 0, "each of %llu address spaces sees its own page at every switch (%llu wrong in %llu switches)",
	       (unsigned long long)n, (unsigned long long)wrong, (unsigned long long)(n * rounds));
	report_iterations(n * rounds);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
