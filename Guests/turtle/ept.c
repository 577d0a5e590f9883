/*
 * ept.c - paging=ept, the EPT that turtle gives L2 (SDM Vol. 3C 29.3 "The
 * Extended Page Table Mechanism"); a strategy of l2mem.h.
 *
 * 4-level EPT (29.3.2): PML4 -> PDPT -> page directories. L2-physical
 * [0, l2mem) maps onto its p2m (p2m.c), read/write/execute, memory type WB
 * (6) in leaf bits 5:3: with 2 MiB leaves (Table 29-4: bit 7 = 1) for a
 * flat p2m, with 4 KiB leaves in page tables for a scattered one, whose
 * neighbouring pages are never contiguous in L1 (so that L0 cannot
 * coalesce them into one EPT02 slot). Everything else, in particular
 * 0xd0000000 and the APIC page 0xfee00000, stays unmapped: an L2 access
 * there is an EPT violation (exit reason 48), which exit.c turns into a toy
 * MMIO device.
 *
 * The EPTP (25.6.11): bits 2:0 memory type of the paging structures (WB),
 * bits 5:3 page-walk length minus one (3), bit 6 A/D flags (ad=on).
 */
#include "guest.h"
#include "vmx.h"
#include "l2mem.h"

#define EPT_R		(1ull << 0)
#define EPT_W		(1ull << 1)
#define EPT_X		(1ull << 2)
#define EPT_RWX		(EPT_R | EPT_W | EPT_X)
#define EPT_MT_SHIFT	3
#define EPT_LARGE	(1ull << 7)
#define MT_UC		0
#define MT_WB		6

#define L2MEM_MAX	(1ull << 30)	/* one PDPT entry, one page directory */
#define SCATTER_MAX	(64ull << 20)	/* the page tables below */

static uint64_t ept_pml4[512] __attribute__((aligned(4096)));
static uint64_t ept_pdpt[512] __attribute__((aligned(4096)));
static uint64_t ept_pd[512] __attribute__((aligned(4096)));
static uint64_t ept_pt[SCATTER_MAX >> 21][512] __attribute__((aligned(4096)));

/* EPT/VPID capability bits (SDM Vol. 3C A.10). */
#define CAP_WALK4	(1ull << 6)
#define CAP_UC		(1ull << 8)
#define CAP_WB		(1ull << 14)
#define CAP_2M		(1ull << 16)
#define CAP_AD		(1ull << 21)

static bool ad;

static const char *setup(const struct l2mem_params *p, struct l2mem_needs *out)
{
	uint64_t cap = rdmsr(MSR_IA32_VMX_EPT_VPID_CAP);
	uint64_t mt;

	printf("turtle: IA32_VMX_EPT_VPID_CAP 0x%llx\n", (unsigned long long)cap);
	if (!(cap & CAP_WALK4))
		return "EPT: 4-level page walks are not supported (EPT_VPID_CAP bit 6)";
	if (!p2m.scatter && !(cap & CAP_2M))
		return "EPT: 2 MiB pages are not supported (EPT_VPID_CAP bit 16)";
	if (cap & CAP_WB) {
		mt = MT_WB;
	} else if (cap & CAP_UC) {
		mt = MT_UC;
		printf("turtle: EPT: WB not supported, using UC\n");
	} else {
		return "EPT: neither WB nor UC paging-structure memory type is supported";
	}
	if (p->size > L2MEM_MAX)
		return "EPT: l2mem above 1 GiB is not supported";
	if (p2m.scatter && p->size > SCATTER_MAX)
		return "EPT: p2m=scatter maps at most 64 MiB";

	/* Leaf memory type WB: L2's RAM is ordinary RAM (29.3.7; with
	 * "ignore PAT" clear it combines with L2's PAT). The EPTP's type (mt)
	 * is the one for the paging structures and must be one EPT_VPID_CAP
	 * lists. */
	for (uint64_t gpa = 0; gpa < p->size; gpa += 2ull << 20) {
		if (!p2m.scatter) {
			ept_pd[gpa >> 21] = l2_to_l1(gpa) | EPT_RWX | (MT_WB << EPT_MT_SHIFT) | EPT_LARGE;
			continue;
		}
		uint64_t *pt = ept_pt[gpa >> 21];
		for (uint64_t i = 0; i < 512; i++)
			pt[i] = l2_to_l1(gpa + (i << 12)) | EPT_RWX | (MT_WB << EPT_MT_SHIFT);
		ept_pd[gpa >> 21] = (uint64_t)(uintptr_t)pt | EPT_RWX;
	}
	ept_pdpt[0] = (uint64_t)(uintptr_t)ept_pd | EPT_RWX;
	ept_pml4[0] = (uint64_t)(uintptr_t)ept_pdpt | EPT_RWX;

	*out = (struct l2mem_needs){ .ept = true, .eptp = (uint64_t)(uintptr_t)ept_pml4 | mt | ((4 - 1) << 3) };
	ad = p->ad;
	if (ad) {
		if (!(cap & CAP_AD))
			return "EPT: accessed and dirty flags are not supported (EPT_VPID_CAP bit 21)";
		if (p2m.scatter)
			return "EPT: ad=on checks 2 MiB leaves, which p2m=scatter does not have";
		out->eptp |= 1ull << 6;		/* EPTP bit 6: keep A/D flags (25.6.11) */
	}
	printf("turtle: EPT maps L2-physical [0, 0x%llx) -> L1-physical 0x%llx with %llu %s pages, EPTP 0x%llx\n",
	       (unsigned long long)p->size, (unsigned long long)p2m.base,
	       (unsigned long long)(p2m.scatter ? p->size >> 12 : p->size >> 21),
	       p2m.scatter ? "4 KiB (scattered)" : "2 MiB", (unsigned long long)out->eptp);
	return 0;
}

/*
 * With ad=on, what the CPU recorded in the 2 MiB leaves (SDM 29.3.5):
 * bit 8 accessed, bit 9 dirty. The leaf holding L2's image at 1 MiB was
 * fetched and written; the last leaf of L2's memory was never touched.
 */
static void report_ad(void)
{
	if (!ad)
		return;
	uint64_t n = p2m.size >> 21, accessed = 0, dirty = 0;
	for (uint64_t i = 0; i < n; i++) {
		accessed += (ept_pd[i] >> 8) & 1;
		dirty += (ept_pd[i] >> 9) & 1;
	}
	printf("turtle: EPT A/D: %llu of %llu leaves accessed, %llu dirty\n",
	       (unsigned long long)accessed, (unsigned long long)n, (unsigned long long)dirty);
	report((ept_pd[0] & 0x300) == 0x300, "turtle: the leaf holding L2's image is accessed and dirty");
	report(n < 2 || !(ept_pd[n - 1] & 0x300), "turtle: L2's untouched last leaf is neither accessed nor dirty");
	report((ept_pdpt[0] & (1ull << 8)) && (ept_pml4[0] & (1ull << 8)), "turtle: the PML4E and PDPTE are accessed");
}

const struct l2mem_strategy l2mem_ept = {
	.name = "ept", .own_region = true, .setup = setup,
	.cr3_load = l2mem_cr3_as_is, .cr3_read = l2mem_cr3_as_is, .report = report_ad,
};
