/*
 * identity.c - paging=identity (ept=off), a strategy of l2mem.h: no EPT,
 * so L2-physical is L1-physical and L2 gets L1's [0, l2mem) and reaches
 * L1's devices directly, with no isolation. Without EPT there is no
 * "unrestricted guest", and VMX cannot enter a guest with CR0.PG = 0 (SDM
 * Vol. 3C 27.3.1.1), so L2 starts in 64-bit mode on turtle's identity map
 * below, until it loads its own CR3. L2's paging is its own: turtle takes
 * no paging exits.
 */
#include "l2mem.h"

/* 4-level paging (SDM Vol. 3A 4.5) mapping L2-linear [0, 4 GiB) onto the
 * same L2-physical addresses with 2 MiB pages, the top GiB (MMIO)
 * uncacheable. */
static uint64_t id_pml4[512] __attribute__((aligned(4096)));
static uint64_t id_pdpt[512] __attribute__((aligned(4096)));
static uint64_t id_pd[4][512] __attribute__((aligned(4096)));

static const char *setup(const struct l2mem_params *p, struct l2mem_needs *out)
{
	(void)p;
	if (p2m.base || p2m.scatter)
		return "paging=identity: L2-physical must be L1-physical (a flat p2m at 0)";
	for (int g = 0; g < 4; g++) {
		id_pdpt[g] = (uintptr_t)id_pd[g] | 3;				/* P, RW */
		for (int i = 0; i < 512; i++)
			id_pd[g][i] = (((uint64_t)g << 30) + ((uint64_t)i << 21)) | 0x83 | (g == 3 ? 0x18 : 0);	/* P, RW, PS [, PWT, PCD] */
	}
	id_pml4[0] = (uintptr_t)id_pdpt | 3;
	*out = (struct l2mem_needs){ .guest_cr3 = (uintptr_t)id_pml4 };
	return 0;
}

const struct l2mem_strategy l2mem_identity = {
	.name = "identity", .own_region = false, .setup = setup,
	.cr3_load = l2mem_cr3_as_is, .cr3_read = l2mem_cr3_as_is,
};
