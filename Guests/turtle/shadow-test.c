/*
 * shadow-test - turtle's shadow paging (shadow.c) on the host, against a
 * fake L2 memory: roots built from L2's tables, hidden and true faults,
 * accessed and dirty flags, the rights of every level, the p2m's bound,
 * INVLPG, the root cache brought up to date at CR3 loads, and the pool
 * running out. Built with the host compiler by
 * `make -C Guests build/shadow-test`; prints PASS/FAIL lines and exits 0
 * only if every check passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadow.h"

#define L2_SIZE		(4ull << 20)
#define P		1ull
#define RW		2ull
#define US		4ull
#define A		(1ull << 5)
#define D		(1ull << 6)
#define PS		(1ull << 7)
#define NX		(1ull << 63)
#define ADDR		0x000ffffffffff000ull

static uint8_t *l2;
static unsigned failures, tests;

/* The p2m (p2m.c) over the fake memory: flat, at l2. */
static uint64_t shadow_l2_base(void) { return (uint64_t)(uintptr_t)l2; }

static void check(int ok, const char *what)
{
	tests++;
	failures += !ok;
	printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
}

/* An entry of the L2 table at table_gpa, through the p2m. */
static uint64_t *entry(uint64_t table_gpa, int index) { return l2_ptr(table_gpa + 8ull * index, 8); }

/* The shadow leaf for lin in the active root, or 0. */
static uint64_t shadow_leaf(uint64_t lin)
{
	uint64_t t = shadow_root_now();
	for (int level = 4; level >= 1; level--) {
		uint64_t e = ((uint64_t *)(uintptr_t)t)[(lin >> (12 + 9 * (level - 1))) & 511];
		if (!(e & P))
			return 0;
		if (level == 1)
			return e;
		t = e & ADDR;
	}
	return 0;
}

/* Guest tables at L2-physical 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD),
 * 0x4000 (PT): lin 0x400000 + 4 KiB * i maps gpa 0x100000 + 4 KiB * i. */
enum { PML4 = 0x1000, PDPT = 0x2000, PD = 0x3000, PT = 0x4000 };

int main(void)
{
	l2 = aligned_alloc(4096, L2_SIZE);
	memset(l2, 0, L2_SIZE);
	p2m = (struct p2m){ .base = (uint64_t)(uintptr_t)l2, .size = L2_SIZE };
	shadow_reset();
	shadow_mode = (struct shadow_mode){ .wp = true, .nxe = true };

	*entry(PML4, 0) = PDPT | P | RW | US;
	*entry(PDPT, 0) = PD | P | RW | US;
	*entry(PD, 2) = PT | P | RW | US;				/* 0x400000 */
	for (int i = 0; i < 16; i++)
		*entry(PT, i) = (0x100000 + 0x1000ull * i) | P | RW | US;
	*entry(PT, 1) &= ~RW;						/* read-only */
	*entry(PT, 2) &= ~US;						/* supervisor */
	*entry(PT, 3) |= NX;
	*entry(PT, 4) = 0;						/* not present */
	*entry(PT, 5) = (L2_SIZE + 0x1000) | P | RW;			/* outside L2 RAM */
	*entry(PD, 3) = 0x200000 | P | RW | PS;				/* 0x600000: a 2 MiB page */

	check(shadow_activate(PML4) != 0, "a root for L2's first CR3");
	uint64_t leaf = shadow_leaf(0x400000);
	check((leaf & ADDR) == shadow_l2_base() + 0x100000 && (leaf & RW) && (leaf & US),
	      "the root starts with a leaf for each page L2 maps into its RAM, with its frame and rights");
	check(!(shadow_leaf(0x401000) & RW) && !(shadow_leaf(0x402000) & US) && (shadow_leaf(0x403000) & NX),
	      "read-only, supervisor and NX come through from L2's entries");
	check(!shadow_leaf(0x404000) && !shadow_leaf(0x405000), "no leaf for a page L2 does not map, or maps outside its RAM");
	check((shadow_leaf(0x7ff000) & ADDR) == shadow_l2_base() + 0x3ff000, "a 2 MiB guest page is shadowed 4 KiB at a time");
	check(!(*entry(PT, 0) & A), "building the root leaves L2's accessed flags alone");

	struct shadow_fault_info f;
	*entry(PT, 7) = 0x107000 | P | RW | US;				/* mapped after the root was built */
	check(shadow_fault(0x407010, PF_W, &f) == SHADOW_FIXED && f.gpa == 0x107010 && (shadow_leaf(0x407000) & RW),
	      "a page mapped later is a hidden fault, fixed");
	check((*entry(PT, 7) & A) && (*entry(PT, 7) & D) && (*entry(PML4, 0) & A), "the fault's walk set L2's accessed and dirty flags");

	check(shadow_fault(0x401000, PF_W, &f) == SHADOW_GUEST_FAULT && f.error_code == (PF_P | PF_W),
	      "a supervisor write to a read-only page with CR0.WP is L2's own fault (P, W)");
	shadow_mode.wp = false;
	check(shadow_fault(0x401000, PF_W, &f) == SHADOW_FIXED, "without CR0.WP the supervisor write is allowed");
	shadow_mode.wp = true;
	check(shadow_fault(0x402000, PF_U, &f) == SHADOW_GUEST_FAULT && f.error_code == (PF_P | PF_U),
	      "a user read of a supervisor page is L2's fault (P, U)");
	check(shadow_fault(0x403000, PF_I, &f) == SHADOW_GUEST_FAULT && f.error_code == (PF_P | PF_I),
	      "a fetch from an NX page is L2's fault (P, I)");
	check(shadow_fault(0x404000, 0, &f) == SHADOW_GUEST_FAULT && f.error_code == 0, "a not-present page: no P bit");
	check(shadow_fault(0x405000, 0, &f) == SHADOW_OUTSIDE && f.gpa == L2_SIZE + 0x1000 && !shadow_leaf(0x405000),
	      "a page L2 maps outside its RAM gets no shadow: the p2m holds");

	*entry(PT, 0) = 0x110000 | P | US;				/* L2 remaps page 0 read-only */
	*entry(PT, 9) = 0;						/* and unmaps page 9 */
	shadow_invlpg(0x400123);
	check((shadow_leaf(0x400000) & ADDR) == shadow_l2_base() + 0x110000 && !(shadow_leaf(0x400000) & RW) && shadow_leaf(0x409000),
	      "INVLPG refreshes its page from L2's tables, and only that page");
	shadow_invlpg(0x409000);
	check(!shadow_leaf(0x409000), "INVLPG of a page L2 unmapped drops its leaf");
	*entry(PD, 3) = 0 | P | RW | PS;				/* L2 moves its 2 MiB page */
	shadow_invlpg(0x654000);
	check((shadow_leaf(0x600000) & ADDR) == shadow_l2_base() && (shadow_leaf(0x7ff000) & ADDR) == shadow_l2_base() + 0x1ff000,
	      "INVLPG in a large guest page refreshes all of it");
	*entry(PD, 3) = 0x200000 | P | RW | PS;
	shadow_invlpg(0x600000);

	/* A second address space, whose PT entry 6 maps elsewhere. */
	enum { PML4B = 0x5000, PDPTB = 0x6000, PDB = 0x7000, PTB = 0x8000 };
	*entry(PML4B, 0) = PDPTB | P | RW;
	*entry(PDPTB, 0) = PDB | P | RW;
	*entry(PDB, 2) = PTB | P | RW;
	*entry(PTB, 6) = 0x180000 | P | RW;
	uint64_t first = shadow_root_now();
	uint64_t second = shadow_activate(PML4B);
	check(second != first && (shadow_leaf(0x406000) & ADDR) == shadow_l2_base() + 0x180000 && !shadow_leaf(0x400000),
	      "another CR3 gets its own root and its own translations");
	check(shadow_activate(PML4) == first && shadow_stats.root_hits == 1 && shadow_stats.rebuilds == 0,
	      "switching back to unchanged tables finds the cached root as it was");
	shadow_activate(PML4B);
	*entry(PT, 6) = 0x1c0000 | P | RW | US;				/* L2 remaps a page while away */
	*entry(PT, 8) = 0;						/* and unmaps one */
	shadow_activate(PML4);
	check(shadow_stats.rebuilds == 1, "tables changed while away: the root is built again");
	check((shadow_leaf(0x406000) & ADDR) == shadow_l2_base() + 0x1c0000 && !shadow_leaf(0x408000) && shadow_leaf(0x40a000),
	      "and has L2's tables as they are now: the remapped page, the unmapped one");

	/* The pool: 4 GiB of 2 MiB guest pages, each needing its own PT. */
	enum { PML4C = 0x9000, PDPTC = 0xa000, PDC = 0xb000 };
	*entry(PML4C, 0) = PDPTC | P | RW;
	for (int g = 0; g < 4; g++) {
		*entry(PDPTC, g) = (PDC + 0x1000ull * g) | P | RW;
		for (int i = 0; i < 512; i++)
			*entry(PDC + 0x1000ull * g, i) = 0x200000 | P | RW | PS;
	}
	shadow_activate(PML4C);
	check(shadow_stats.pool_flushes >= 1 && shadow_pool_used() == SHADOW_POOL_PAGES,
	      "a root larger than the pool fills it, after dropping every other shadow");
	check(shadow_fault(2047ull << 21, 0, &f) == SHADOW_FIXED && shadow_leaf(2047ull << 21),
	      "a fault beyond it is still fixed, in a pool started again");

	/* The scattered p2m: pages swapped pairwise, reached page by page. */
	p2m.scatter = true;
	memset(l2, 0, L2_SIZE);
	uint8_t pattern[3 * 4096];
	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 1);
	check(l2_copy_in(0x10800, pattern, sizeof(pattern)) && l2_equal(0x10800, pattern, sizeof(pattern)) &&
	      l2[0x11000 + 0x800] == pattern[0] && l2[0x10000] == pattern[0x800],
	      "p2m=scatter: a copy across pages lands on the swapped pages and reads back");
	check(!l2_ptr(0x10ff0, 0x20) && l2_ptr(0x10000, 4096) == l2 + 0x11000 && !l2_fill(L2_SIZE - 8, 0, 16) &&
	      !l2_ptr(L2_SIZE, 1),
	      "p2m=scatter: no pointer across a page boundary or past L2 RAM");
	struct l2mem_needs need;
	check(!l2mem_shadow.setup(&(struct l2mem_params){ .size = L2_SIZE }, &need) && need.guest_cr3 == shadow_root_now() &&
	      need.pf_exits && need.cr3_exits && need.invlpg_exits && !need.ept,
	      "paging=shadow's set-up asks for the #PF, CR3 and INVLPG exits and starts on a root");
	check((shadow_leaf(0x5000) & ADDR) == shadow_l2_base() + 0x4000 && (shadow_leaf(0x6000) & ADDR) == shadow_l2_base() + 0x7000,
	      "p2m=scatter: the shadow of L2's first identity map points at the swapped frames");
	check(l2mem_shadow.cr3_read(need.guest_cr3) == L2_SIZE - 6 * 4096,
	      "L2 reads its own CR3 (its first tables at the top of its RAM), not the shadow root");

	printf("SUMMARY: %u tests, %u failures\n", tests, failures);
	free(l2);
	return failures ? 1 : 0;
}
