/*
 * shadow.h - turtle's shadow paging for L2 (shadow.c, docs/SHADOW.md): the
 * whole interface between it and the rest of turtle, so that it depends on
 * nothing else and compiles for the host test (shadow-test.c) as it is.
 */
#ifndef TURTLE_SHADOW_H
#define TURTLE_SHADOW_H

#include <stdbool.h>
#include <stdint.h>

#include "l2mem.h"

#define SHADOW_POOL_PAGES	2048	/* 8 MiB of shadow page tables */
#define SHADOW_ROOTS		8	/* cached address spaces */
#define SHADOW_SNAPSHOTS	16	/* L2 table pages a root keeps copies of */

/* L2's memory is the p2m's (l2mem.h, p2m.c). */

/* L2's paging state that decides rights (CR0.WP, EFER.NXE). */
struct shadow_mode {
	bool wp, nxe;
};
extern struct shadow_mode shadow_mode;

struct shadow_stats {
	uint64_t hidden_faults, guest_faults, outside, invlpgs;
	uint64_t roots_built, root_hits, rebuilds, resyncs, resync_drops, populations, pool_flushes;
};
extern struct shadow_stats shadow_stats;

enum shadow_result {
	SHADOW_FIXED,		/* a hidden fault: the shadow has the translation now */
	SHADOW_GUEST_FAULT,	/* L2's own tables fault: inject #PF with error_code */
	SHADOW_OUTSIDE,		/* L2's tables map it outside L2 RAM, at gpa */
	SHADOW_NO_ROOT,		/* no address space is active */
};
struct shadow_fault_info {
	uint64_t gpa;
	uint32_t error_code;
};

void shadow_reset(void);
/* L2 loads CR3 = guest_cr3: the L1-physical root for GUEST_CR3. */
uint64_t shadow_activate(uint64_t guest_cr3);
uint64_t shadow_root_now(void);
/* A #PF exit at `lin` with the access bits (PF_W, PF_U, PF_I) of `access`. */
enum shadow_result shadow_fault(uint64_t lin, uint32_t access, struct shadow_fault_info *out);
void shadow_invlpg(uint64_t lin);
unsigned shadow_pool_used(void);

#endif
