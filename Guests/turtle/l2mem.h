/*
 * l2mem.h - how turtle gives L2 its memory (docs/SHADOW.md, "turtle's
 * structure"). Two parts:
 *
 * - The p2m (p2m.c): L2-physical [0, size) is backed by L1-physical memory
 *   from `base`, either flat (L2-physical g at base + g) or scattered (the
 *   4 KiB pages of each 8 KiB pair swapped, so that no two neighbouring
 *   pages are contiguous in L1: a fragmented EPT12, for L0's EPT02 policies).
 * - The strategies, one per paging mode, one file each: ept.c (EPT-on-EPT),
 *   shadow.c (shadow page tables) and identity.c (L2-physical is
 *   L1-physical, no isolation). Each says what it needs of the VMCS and
 *   handles the paging exits it asked for.
 *
 * The strategy files and p2m.c depend on this header and the guest library
 * only, never on turtle's globals; turtle.c picks a strategy, vmcs.c and
 * exit.c call it. p2m.c and shadow.c also build for the host test.
 */
#ifndef TURTLE_L2MEM_H
#define TURTLE_L2MEM_H

#include <stdbool.h>
#include <stdint.h>

/* ---- the p2m ---- */

struct p2m {
	uint64_t base;		/* L1-physical address of L2-physical 0 (or of its pair) */
	uint64_t size;		/* bytes of L2-physical memory, a multiple of 8 KiB */
	bool scatter;		/* 4 KiB pages swapped pairwise */
};
extern struct p2m p2m;

/* L1-physical address of L2-physical gpa (< p2m.size). */
uint64_t l2_to_l1(uint64_t gpa);
/* Pointer to L2-physical [gpa, gpa+len), or 0 if it is not all L2 RAM or,
 * when scattered, crosses a 4 KiB page. */
void *l2_ptr(uint64_t gpa, uint64_t len);
/* Copies into, fills, or compares with L2-physical [gpa, gpa+len), page by
 * page; false if the range is not all L2 RAM (l2_equal: or differs). */
bool l2_copy_in(uint64_t gpa, const void *src, uint64_t len);
bool l2_fill(uint64_t gpa, uint8_t byte, uint64_t len);
bool l2_equal(uint64_t gpa, const void *src, uint64_t len);

/* ---- the strategies ---- */

struct l2mem_params {
	uint64_t size;		/* bytes of L2-physical memory */
	bool ad;		/* EPT accessed and dirty flags (ept only) */
};

/* What a strategy needs of the VMCS (SDM 25.6), and how L2 starts. */
struct l2mem_needs {
	bool ept;		/* "enable EPT" and "unrestricted guest", EPTP below */
	uint64_t eptp;
	bool cr3_exits;		/* CR3-load and CR3-store exiting */
	bool invlpg_exits;	/* INVLPG exiting */
	bool pf_exits;		/* #PF in the exception bitmap, every error code */
	bool owns_paging_bits;	/* CR0.PG/WP and CR4.PAE/PSE/PGE/PCIDE/SMEP/SMAP
				 * in the guest/host masks */
	uint64_t guest_cr3;	/* without EPT, L2 starts in 64-bit mode with
				 * paging on, GUEST_CR3 this */
};

/* Page-fault error code bits (SDM Vol. 3A 4.7). */
#define PF_P	(1u << 0)
#define PF_W	(1u << 1)
#define PF_U	(1u << 2)
#define PF_I	(1u << 4)

/* The outcome of a #PF exit the strategy asked for. */
enum l2mem_fault {
	L2MEM_FIXED,		/* a hidden fault, fixed: L2 retries */
	L2MEM_INJECT,		/* L2's own fault: inject #PF with error_code */
	L2MEM_OUTSIDE,		/* L2's tables map it outside its RAM, at gpa */
	L2MEM_STOP,		/* nothing to handle it with */
};
struct l2mem_fault_info {
	uint64_t gpa;
	uint32_t error_code;
};

struct l2mem_strategy {
	const char *name;	/* as in turtle's paging= */
	/* L2 gets its own region of L1's RAM (else L1-physical [0, size)). */
	bool own_region;
	/* Builds what L2 needs (the p2m is set); 0, or why it cannot. */
	const char *(*setup)(const struct l2mem_params *p, struct l2mem_needs *out);
	/* L2 loads CR3 with value: the GUEST_CR3 to run it with. */
	uint64_t (*cr3_load)(uint64_t value);
	/* L2's own CR3, given GUEST_CR3. */
	uint64_t (*cr3_read)(uint64_t guest_cr3);
	/* L2 sets CR0 to value (also at start): the owned CR0 bits that take
	 * L2's value in GUEST_CR0 as well (*live), or why turtle must stop.
	 * 0 when the strategy owns no CR0 bits. */
	const char *(*cr0_write)(uint64_t value, uint64_t *live);
	/* INVLPG of lin; 0 when there is nothing to invalidate. */
	void (*invlpg)(uint64_t lin);
	/* A #PF exit at lin (error code access bits, EFER.NXE); 0 when the
	 * strategy takes no #PF exits. */
	enum l2mem_fault (*page_fault)(uint64_t lin, uint32_t error_code, bool nxe, struct l2mem_fault_info *out);
	/* Prints the strategy's figures at the end; may be 0. */
	void (*report)(void);
};

extern const struct l2mem_strategy l2mem_ept, l2mem_shadow, l2mem_identity;

/* For strategies without a say in CR3 (ept, identity). */
uint64_t l2mem_cr3_as_is(uint64_t value);

#endif
