/*
 * mm-storm - work for the MMU: N pages of a window at 512 GiB that the
 * guest's own #PF handler maps on demand (SDM Vol. 3A 4.7), then unmaps
 * with INVLPG and touches again (each a fault once more), then remaps by
 * writing the page-table entries, with INVLPG, onto other frames whose
 * contents it checks. Each phase is timed with RDTSC.
 *
 * As L2 it compares paging strategies (docs/SHADOW.md): with EPT-on-EPT
 * the guest's faults stay in L2; with turtle paging=shadow each is a #PF
 * exit that turtle injects back, and the retry a hidden fault turtle fills.
 *
 * usage: mm-storm [N]    (default N=256, at most 512)
 */
#include "guest.h"
#include "idt.h"

#define USAGE	"mm-storm [N]    (N from 1 to 512)"
#define WINDOW	(1ull << 39)		/* PML4 entry 1 */
#define PAGE	4096ull
#define FRAMES	0x800000ull		/* two sets of N frames from 8 MiB */
#define P_RW	3ull

extern uint64_t boot_pml4[512];
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static uint64_t n = 256, demand_faults, stray_faults;
static unsigned frame_set;		/* which set of frames the handler maps */

static uint64_t frame(unsigned set, uint64_t i) { return FRAMES + (set * 512 + i) * PAGE; }
static volatile uint64_t *page(uint64_t i) { return (volatile uint64_t *)(uintptr_t)(WINDOW + i * PAGE); }

static void invlpg(volatile void *p) { __asm__ volatile("invlpg (%0)" : : "r"(p) : "memory"); }

/* The guest's own page-fault handler: a not-present page of the window gets
 * its frame, and the access runs again. */
static void page_fault(struct regs *r)
{
	uint64_t cr2 = read_cr2(), i = (cr2 - WINDOW) / PAGE;
	if (cr2 < WINDOW || i >= n || (r->error_code & 1)) {
		stray_faults++;
		printf("mm-storm: unexpected #PF at 0x%llx (error code 0x%llx, RIP 0x%llx)\n", (unsigned long long)cr2,
		       (unsigned long long)r->error_code, (unsigned long long)r->rip);
		exit(EXIT_FAIL);
	}
	pt[i] = frame(frame_set, i) | P_RW;
	demand_faults++;
}

int main(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && (!parse_u64(argv[1], &n) || n == 0 || n > 512)))
		return usage(USAGE);
	if (!mb_is_ram(FRAMES, frame(1, 512)))
		return usage("mm-storm needs RAM at 0x%llx-0x%llx", (unsigned long long)FRAMES, (unsigned long long)frame(1, 512));
	set_irq_handler(14, page_fault);
	for (uint64_t i = 0; i < n; i++) {
		*(volatile uint64_t *)(uintptr_t)frame(0, i) = 0;
		*(volatile uint64_t *)(uintptr_t)frame(1, i) = 0xf00d0000 + i;	/* what the remap must show */
	}
	pd[0] = (uintptr_t)pt | P_RW;
	pdpt[0] = (uintptr_t)pd | P_RW;
	boot_pml4[1] = (uintptr_t)pdpt | P_RW;	/* a new entry: no invalidation needed (4.10.4.3) */
	printf("mm-storm: %llu pages at 0x%llx\n", (unsigned long long)n, (unsigned long long)WINDOW);

	/* Demand paging: each first write faults, and the handler maps it. */
	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		*page(i) = 0xa0000000 + i;
	uint64_t t1 = rdtsc(), bad = 0;
	for (uint64_t i = 0; i < n; i++)
		bad += *page(i) != 0xa0000000 + i || *(volatile uint64_t *)(uintptr_t)frame(0, i) != 0xa0000000 + i;
	report(demand_faults == n && bad == 0, "%llu demand faults map %llu pages, each holding what was written (%llu wrong)",
	       (unsigned long long)demand_faults, (unsigned long long)n, (unsigned long long)bad);

	/* Unmap with INVLPG: the next touch faults again. */
	uint64_t t2 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		pt[i] = 0;
		invlpg(page(i));
		bad += *page(i) != 0xa0000000 + i;		/* faults, is mapped again, reads the frame */
	}
	uint64_t t3 = rdtsc();
	report(demand_faults == 2 * n && bad == 0, "%llu pages unmapped with INVLPG fault again when touched (%llu faults in all)",
	       (unsigned long long)n, (unsigned long long)demand_faults);

	/* Remap by writing the entries: the other frames show through. */
	for (uint64_t i = 0; i < n; i++) {
		pt[i] = frame(1, i) | P_RW;
		invlpg(page(i));
		bad += *page(i) != 0xf00d0000 + i;
	}
	uint64_t t4 = rdtsc();
	report(bad == 0 && demand_faults == 2 * n, "%llu entries rewritten onto other frames read those frames after INVLPG",
	       (unsigned long long)n);
	report(stray_faults == 0, "no fault outside the window");

	printf("mm-storm: demand fault %llu, unmap+refault %llu, remap %llu TSC cycles per page\n",
	       (unsigned long long)((t1 - t0) / n), (unsigned long long)((t3 - t2) / n), (unsigned long long)((t4 - t3) / n));
	boot_pml4[1] = 0;
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
