/*
 * shadow.c - shadow paging for L2 (turtle paging=shadow): shadow-on-EPT in
 * Turtles' terms, since L0 runs turtle itself on KVM's memory. turtle
 * virtualizes L2's MMU as a hypervisor without EPT does (docs/SHADOW.md).
 *
 * - The p2m (p2m.c, l2mem.h): L2-physical [0, l2mem) is L1 memory, flat
 *   or scattered; nothing else is L2 memory.
 * - Shadow page tables, 4-level (SDM Vol. 3A 4.5), map L2-linear to
 *   L1-physical with 4 KiB leaves; GUEST_CR3 holds the shadow root of L2's
 *   current address space, and turtle keeps L2's own CR3.
 * - A root is built whole when L2 loads its CR3: a leaf for every page its
 *   tables map into its RAM, with the rights of every level. Not lazily:
 *   on this backend an L2 #PF reaches turtle only through L2's own IDT
 *   (L0 catches the delivery at L2's handler), so an L2 with no IDT yet, or
 *   a delivery whose IDT, handler or stack page had no shadow, would
 *   triple-fault. After that, a #PF at a page L2 mapped since (a hidden
 *   fault) is filled from a walk of L2's tables, which sets L2's accessed
 *   and dirty flags as the processor would; a fault L2's own tables cause
 *   (a true fault) goes back to turtle to inject.
 * - Sync: the shadows may go out of sync with L2's tables, as a TLB may
 *   (Vol. 3A 4.10.4). INVLPG refreshes the translations of its page (all
 *   of a large guest page); a MOV to CR3 re-checks every leaf of the root
 *   it selects and builds what is missing.
 * - A cache of SHADOW_ROOTS roots by L2's CR3, so that switching between
 *   address spaces reuses their tables. Pages come from a fixed pool; when
 *   it runs out, every shadow is dropped and rebuilt.
 *
 * Only 4-level paging of a 64-bit L2 (CR4.PAE, EFER.LMA). This file uses
 * nothing of VMX: turtle passes the guest's paging state, and the host
 * test (shadow-test.c) runs it against a fake L2 memory. Its end is the
 * paging=shadow strategy (l2mem.h) that turtle's exits call.
 */
#include "shadow.h"

int printf(const char *fmt, ...);

#define PTE_P		(1ull << 0)
#define PTE_RW		(1ull << 1)
#define PTE_US		(1ull << 2)
#define PTE_A		(1ull << 5)
#define PTE_D		(1ull << 6)
#define PTE_PS		(1ull << 7)
#define PTE_NX		(1ull << 63)
#define PTE_FROM_LARGE	(1ull << 9)	/* software bit: the guest maps this range with one large page */
#define ADDR_MASK	0x000ffffffffff000ull

/* A copy of one of L2's page-table pages as a root was built from it. */
struct snapshot {
	uint64_t gpa;
	uint64_t *copy;
};

struct shadow_root {
	uint64_t guest_cr3;		/* L2's CR3, 0 for a free slot */
	uint64_t *pml4;
	uint64_t last_used;
	struct snapshot snaps[SHADOW_SNAPSHOTS];
	unsigned nsnaps;
	bool unsnapped;			/* more tables than snapshots: check leaf by leaf */
};

static uint64_t pool[SHADOW_POOL_PAGES][512] __attribute__((aligned(4096)));
static unsigned pool_used;
static struct shadow_root roots[SHADOW_ROOTS];
static struct shadow_root *current;
static uint64_t clock_ticks;

struct shadow_stats shadow_stats;
struct shadow_mode shadow_mode;

static void resnap(uint64_t lin);

/* 4 KiB copies and comparisons with string instructions: turtle's code
 * after a VM exit is expensive per instruction on this backend. */
static void copy_page(uint64_t *dst, const uint64_t *src)
{
	uint64_t n = 512;
	__asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static bool same_page(const uint64_t *a, const uint64_t *b)
{
	uint64_t n = 512;
	bool equal;
	__asm__ volatile("repe cmpsq" : "+D"(a), "+S"(b), "+c"(n), "=@cce"(equal) : : "memory");
	return equal;
}

static uint64_t *alloc_page(void)
{
	if (pool_used == SHADOW_POOL_PAGES)
		return 0;
	uint64_t *p = pool[pool_used++];
	for (int i = 0; i < 512; i++)
		p[i] = 0;
	return p;
}

static void drop_all(void)
{
	pool_used = 0;
	for (int i = 0; i < SHADOW_ROOTS; i++)
		roots[i] = (struct shadow_root){ 0 };
	current = 0;
	shadow_stats.pool_flushes++;
}

void shadow_reset(void)
{
	drop_all();
	shadow_stats = (struct shadow_stats){ 0 };
}

/* One walk of L2's tables for `lin` (Vol. 3A 4.5.4): the leaf's L2-physical
 * address and the rights that every level grants. Sets accessed flags, and
 * the dirty flag for a write that is allowed, when `update` is set. */
struct walk {
	bool present;
	uint64_t gpa;
	bool rw, us, nx;
	int leaf_level;			/* 1 for 4 KiB, 2 for 2 MiB, 3 for 1 GiB */
};

static uint64_t *guest_entry(uint64_t table, uint64_t lin, int level)
{
	int shift = 12 + 9 * (level - 1);
	return l2_ptr((table & ADDR_MASK) + ((lin >> shift) & 511) * 8, 8);
}

static bool allowed(const struct walk *w, uint32_t access)
{
	bool write = access & PF_W, user = access & PF_U, fetch = access & PF_I;
	if (write && !w->rw && (user || shadow_mode.wp))
		return false;
	if (user && !w->us)
		return false;
	return !(fetch && w->nx && shadow_mode.nxe);
}

static void walk(uint64_t cr3, uint64_t lin, uint32_t access, bool update, struct walk *w)
{
	uint64_t *entries[4];
	uint64_t table = cr3;
	*w = (struct walk){ .rw = true, .us = true };
	for (int level = 4; level >= 1; level--) {
		uint64_t *e = guest_entry(table, lin, level);
		if (!e || !(*e & PTE_P))
			return;
		entries[4 - level] = e;
		w->rw &= (*e & PTE_RW) != 0;
		w->us &= (*e & PTE_US) != 0;
		w->nx |= (*e & PTE_NX) != 0;
		if (level == 1 || ((level == 2 || level == 3) && (*e & PTE_PS))) {
			uint64_t size = 1ull << (12 + 9 * (level - 1));
			w->present = true;
			w->leaf_level = level;
			w->gpa = (*e & ADDR_MASK & ~(size - 1)) | (lin & (size - 1));
			if (update && allowed(w, access)) {
				for (int i = 0; i <= 4 - level; i++)
					*entries[i] |= PTE_A;
				if (access & PF_W)
					*e |= PTE_D;
			}
			return;
		}
		table = *e;
	}
}

/* The entry of `table` for `lin` at `level`, with the next table made when
 * `make`; 0 when the pool is out. */
static uint64_t *next_table(uint64_t *table, uint64_t lin, int level, bool make)
{
	uint64_t *e = &table[(lin >> (12 + 9 * (level - 1))) & 511];
	if (!(*e & PTE_P)) {
		if (!make)
			return 0;
		uint64_t *page = alloc_page();
		if (!page)
			return 0;
		*e = (uint64_t)(uintptr_t)page | PTE_P | PTE_RW | PTE_US;
	}
	return (uint64_t *)(uintptr_t)(*e & ADDR_MASK);
}

/* The shadow leaf for `lin` in `root`, or 0. */
static uint64_t *leaf_of(uint64_t *root, uint64_t lin, bool make)
{
	uint64_t *t = root;
	for (int level = 4; level >= 2 && t; level--)
		t = next_table(t, lin, level, make);
	return t ? &t[(lin >> 12) & 511] : 0;
}

static uint64_t shadow_leaf(const struct walk *w)
{
	uint64_t e = l2_to_l1(w->gpa & ADDR_MASK) | PTE_P | PTE_A | PTE_D;
	if (w->rw)
		e |= PTE_RW;
	if (w->us)
		e |= PTE_US;
	if (w->nx && shadow_mode.nxe)
		e |= PTE_NX;
	return e;
}

static struct shadow_root *new_root(uint64_t guest_cr3)
{
	struct shadow_root *slot = 0;
	for (int i = 0; i < SHADOW_ROOTS; i++) {
		if (!roots[i].guest_cr3) {
			slot = &roots[i];
			break;
		}
		if (&roots[i] != current && (!slot || roots[i].last_used < slot->last_used))
			slot = &roots[i];
	}
	uint64_t *pml4 = alloc_page();
	if (!pml4) {
		drop_all();
		slot = &roots[0];
		pml4 = alloc_page();
	}
	shadow_stats.roots_built++;
	*slot = (struct shadow_root){ .guest_cr3 = guest_cr3, .pml4 = pml4 };
	return slot;
}

/* Re-checks every leaf of `r` against L2's tables as they are now: one that
 * no longer matches goes, and comes back at its next hidden fault. */
static void resync(struct shadow_root *r)
{
	shadow_stats.resyncs++;
	for (uint64_t i4 = 0; i4 < 512; i4++) {
		if (!(r->pml4[i4] & PTE_P))
			continue;
		uint64_t *pdpt = (uint64_t *)(uintptr_t)(r->pml4[i4] & ADDR_MASK);
		for (uint64_t i3 = 0; i3 < 512; i3++) {
			if (!(pdpt[i3] & PTE_P))
				continue;
			uint64_t *pd = (uint64_t *)(uintptr_t)(pdpt[i3] & ADDR_MASK);
			for (uint64_t i2 = 0; i2 < 512; i2++) {
				if (!(pd[i2] & PTE_P))
					continue;
				uint64_t *pt = (uint64_t *)(uintptr_t)(pd[i2] & ADDR_MASK);
				for (uint64_t i1 = 0; i1 < 512; i1++) {
					if (!(pt[i1] & PTE_P))
						continue;
					uint64_t lin = i4 << 39 | i3 << 30 | i2 << 21 | i1 << 12;
					if (lin & (1ull << 47))
						lin |= 0xffff000000000000ull;
					struct walk w;
					walk(r->guest_cr3, lin, 0, false, &w);
					if (!w.present || w.gpa >= p2m.size || shadow_leaf(&w) != pt[i1]) {
						pt[i1] = 0;
						shadow_stats.resync_drops++;
					}
				}
			}
		}
	}
}

/* Every page that L2's tables under r->guest_cr3 map into L2 RAM gets its
 * leaf, with the rights of every level. False when the pool ran out. The
 * level-`level` table at L2-physical `table` covers linear `base`. */
static bool populate_table(struct shadow_root *r, uint64_t table, int level, uint64_t base, struct walk rights)
{
	uint64_t *t = l2_ptr(table & ADDR_MASK, 4096);
	if (!t)
		return true;
	if (r->nsnaps < SHADOW_SNAPSHOTS) {
		uint64_t *copy = alloc_page();
		if (!copy)
			return false;
		copy_page(copy, t);
		r->snaps[r->nsnaps++] = (struct snapshot){ .gpa = table & ADDR_MASK, .copy = copy };
	} else {
		r->unsnapped = true;
	}
	for (uint64_t i = 0; i < 512; i++) {
		uint64_t e = t[i];
		if (!(e & PTE_P))
			continue;
		int shift = 12 + 9 * (level - 1);
		uint64_t lin = base | i << shift;
		if (level == 4 && (lin & (1ull << 47)))
			lin |= 0xffff000000000000ull;
		struct walk w = rights;
		w.rw &= (e & PTE_RW) != 0;
		w.us &= (e & PTE_US) != 0;
		w.nx |= (e & PTE_NX) != 0;
		if (level == 1 || ((level == 2 || level == 3) && (e & PTE_PS))) {
			uint64_t size = 1ull << shift, frame = e & ADDR_MASK & ~(size - 1);
			/* 512 leaves at a time: one shadow PT per 2 MiB. */
			for (uint64_t off = 0; off < size && frame + off < p2m.size; off += 512 * 4096) {
				uint64_t *leaf = leaf_of(r->pml4, lin + off, true);
				if (!leaf)
					return false;
				w.present = true;
				w.gpa = frame + off;
				/* The same rights for each page; the frame of each from
				 * the p2m, which need not be contiguous (p2m=scatter). */
				uint64_t rights_bits = shadow_leaf(&w) & ~ADDR_MASK;
				uint64_t pages = size == 4096 ? 1 : 512;
				for (uint64_t k = 0; k < pages && frame + off + k * 4096 < p2m.size; k++)
					leaf[k] = rights_bits | l2_to_l1(frame + off + k * 4096);
			}
			if (level > 1 && frame < p2m.size) {
				uint64_t *pdpt = (uint64_t *)(uintptr_t)(r->pml4[(lin >> 39) & 511] & ADDR_MASK);
				uint64_t *up = level == 3 ? &pdpt[(lin >> 30) & 511]
					: &((uint64_t *)(uintptr_t)(pdpt[(lin >> 30) & 511] & ADDR_MASK))[(lin >> 21) & 511];
				*up |= PTE_FROM_LARGE;
			}
		} else if (!populate_table(r, e, level - 1, lin, w)) {
			return false;
		}
	}
	return true;
}

/* Builds r's leaves for all of L2's mappings into its RAM: a new root
 * starts complete, and a cached one is brought up to date. */
static void populate(struct shadow_root *r)
{
	shadow_stats.populations++;
	if (populate_table(r, r->guest_cr3, 4, 0, (struct walk){ .rw = true, .us = true }))
		return;
	uint64_t cr3 = r->guest_cr3;
	drop_all();
	r = new_root(cr3);
	current = r;
	populate_table(r, cr3, 4, 0, (struct walk){ .rw = true, .us = true });
}

uint64_t shadow_activate(uint64_t guest_cr3)
{
	guest_cr3 &= ADDR_MASK;
	struct shadow_root *r = 0;
	for (int i = 0; i < SHADOW_ROOTS; i++)
		if (roots[i].guest_cr3 == guest_cr3 && roots[i].pml4)
			r = &roots[i];
	if (r && !r->unsnapped) {
		/* Unchanged tables: the root is good as it is (the common case of a
		 * context switch). A changed one: build the root again. */
		bool same = true;
		for (unsigned i = 0; i < r->nsnaps && same; i++) {
			const uint64_t *now = l2_ptr(r->snaps[i].gpa, 4096);
			same = now && same_page(now, r->snaps[i].copy);
		}
		shadow_stats.root_hits++;
		if (same) {
			r->last_used = ++clock_ticks;
			current = r;
			return (uint64_t)(uintptr_t)r->pml4;
		}
		shadow_stats.rebuilds++;
		r->guest_cr3 = 0;
		r = 0;
	}
	if (r) {
		shadow_stats.root_hits++;
		resync(r);
	} else {
		r = new_root(guest_cr3);
	}
	r->last_used = ++clock_ticks;
	current = r;
	populate(r);
	current->last_used = clock_ticks;
	return (uint64_t)(uintptr_t)current->pml4;
}

uint64_t shadow_root_now(void)
{
	return current ? (uint64_t)(uintptr_t)current->pml4 : 0;
}

enum shadow_result shadow_fault(uint64_t lin, uint32_t access, struct shadow_fault_info *out)
{
	struct walk w;
	if (!current)
		return SHADOW_NO_ROOT;
	walk(current->guest_cr3, lin, access, true, &w);
	out->gpa = w.gpa;
	out->error_code = access & (PF_W | PF_U | (shadow_mode.nxe ? PF_I : 0));
	if (!w.present) {
		shadow_stats.guest_faults++;
		return SHADOW_GUEST_FAULT;
	}
	if (!allowed(&w, access)) {
		out->error_code |= PF_P;
		shadow_stats.guest_faults++;
		return SHADOW_GUEST_FAULT;
	}
	if (w.gpa >= p2m.size) {
		shadow_stats.outside++;
		return SHADOW_OUTSIDE;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t *leaf = leaf_of(current->pml4, lin, true);
		if (leaf) {
			*leaf = shadow_leaf(&w);
			if (w.leaf_level > 1) {
				/* Mark the range so that INVLPG anywhere in the guest's
				 * large page drops all of it (Vol. 3A 4.10.4.1). */
				uint64_t *pdpt = (uint64_t *)(uintptr_t)(current->pml4[(lin >> 39) & 511] & ADDR_MASK);
				uint64_t *up = w.leaf_level == 3 ? &pdpt[(lin >> 30) & 511]
					: &((uint64_t *)(uintptr_t)(pdpt[(lin >> 30) & 511] & ADDR_MASK))[(lin >> 21) & 511];
				*up |= PTE_FROM_LARGE;
			}
			shadow_stats.hidden_faults++;
			resnap(lin);
			return SHADOW_FIXED;
		}
		/* The pool is out: start again with this root alone. */
		uint64_t cr3 = current->guest_cr3;
		drop_all();
		current = new_root(cr3);
		current->last_used = ++clock_ticks;
	}
	return SHADOW_NO_ROOT;
}

/* The snapshots of the tables on L2's walk of `lin` are retaken: turtle
 * refreshed that walk's leaves (INVLPG, a hidden fault), or set accessed
 * and dirty flags there itself. */
static void resnap(uint64_t lin)
{
	uint64_t table = current->guest_cr3;
	for (int level = 4; level >= 1; level--) {
		uint64_t gpa = table & ADDR_MASK, *t = l2_ptr(gpa, 4096);
		if (!t)
			return;
		for (unsigned i = 0; i < current->nsnaps; i++)
			if (current->snaps[i].gpa == gpa)
				copy_page(current->snaps[i].copy, t);
		uint64_t e = t[(lin >> (12 + 9 * (level - 1))) & 511];
		if (!(e & PTE_P) || (level < 4 && (e & PTE_PS)))
			return;
		table = e;
	}
}

/* The leaves of [lin, lin + size) as L2's tables have them now: built
 * where L2 maps its RAM, dropped elsewhere. */
static void refresh(uint64_t lin, uint64_t size)
{
	for (uint64_t off = 0; off < size;) {
		struct walk w;
		walk(current->guest_cr3, lin + off, 0, false, &w);
		/* One walk serves the rest of a large guest page: its leaves follow. */
		uint64_t span = w.present ? (1ull << (12 + 9 * (w.leaf_level - 1))) - ((lin + off) & ((1ull << (12 + 9 * (w.leaf_level - 1))) - 1))
					  : 4096;
		if (span > size - off)
			span = size - off;
		for (uint64_t k = 0; k < span; k += 4096) {
			bool mapped = w.present && w.gpa + k < p2m.size;
			uint64_t *leaf = leaf_of(current->pml4, lin + off + k, mapped);
			if (!leaf)
				continue;
			struct walk page = w;
			page.gpa = w.gpa + k;
			*leaf = mapped ? shadow_leaf(&page) : 0;
		}
		off += span;
	}
}

/* INVLPG (Vol. 3A 4.10.4.1): the page's translations come from L2's
 * tables again, all of a large page where L2 had one. They are refreshed
 * at once rather than dropped: a dropped leaf would fault, and on this
 * backend a #PF reaches turtle only if its delivery in L2 does not fault. */
void shadow_invlpg(uint64_t lin)
{
	shadow_stats.invlpgs++;
	if (!current)
		return;
	lin &= ~0xfffull;
	uint64_t *pml4e = &current->pml4[(lin >> 39) & 511];
	uint64_t size = 4096;
	if (*pml4e & PTE_P) {
		uint64_t *pdpte = &((uint64_t *)(uintptr_t)(*pml4e & ADDR_MASK))[(lin >> 30) & 511];
		if (*pdpte & PTE_FROM_LARGE)
			size = 1ull << 30;
		else if (*pdpte & PTE_P) {
			uint64_t *pde = &((uint64_t *)(uintptr_t)(*pdpte & ADDR_MASK))[(lin >> 21) & 511];
			if (*pde & PTE_FROM_LARGE)
				size = 1ull << 21;
		}
	}
	struct walk w;
	walk(current->guest_cr3, lin, 0, false, &w);
	if (w.present && w.leaf_level > 1 && (1ull << (12 + 9 * (w.leaf_level - 1))) > size)
		size = 1ull << (12 + 9 * (w.leaf_level - 1));
	refresh(lin & ~(size - 1), size);
	resnap(lin);
}

unsigned shadow_pool_used(void)
{
	return pool_used;
}

/* ---- paging=shadow, the strategy (l2mem.h) ---- */

static uint64_t l2_cr3;		/* L2's own CR3; GUEST_CR3 holds its shadow root */

/* L2's first page tables, at the top of its RAM: an identity map of
 * [0, 4 GiB) with 2 MiB pages (PML4, PDPT, four PDs). */
static uint64_t initial_tables(void)
{
	uint64_t top = p2m.size - 6 * 4096;
	for (uint64_t page = 0; page < 6; page++)
		if (!l2_fill(top + page * 4096, 0, 4096))
			return 0;
	*(uint64_t *)l2_ptr(top, 8) = (top + 4096) | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < 4; g++) {
		*(uint64_t *)l2_ptr(top + 4096 + g * 8, 8) = (top + (2 + g) * 4096) | PTE_P | PTE_RW;
		uint64_t *pd = l2_ptr(top + (2 + g) * 4096, 4096);
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = ((g << 30) + (i << 21)) | PTE_P | PTE_RW | PTE_PS;
	}
	return top;
}

static const char *setup(const struct l2mem_params *p, struct l2mem_needs *out)
{
	(void)p;
	if (p2m.size < 8 * 4096)
		return "paging=shadow: L2 memory too small for its first page tables";
	shadow_reset();
	l2_cr3 = initial_tables();
	*out = (struct l2mem_needs){ .cr3_exits = true, .invlpg_exits = true, .pf_exits = true,
				     .owns_paging_bits = true, .guest_cr3 = shadow_activate(l2_cr3) };
	return 0;
}

static uint64_t cr3_load(uint64_t value)
{
	l2_cr3 = value;
	return shadow_activate(value);
}

static uint64_t cr3_read(uint64_t guest_cr3)
{
	(void)guest_cr3;
	return l2_cr3;
}

/* CR0.WP is L2's in the real register too, so that the shadow's read-only
 * leaves mean what L2's entries mean; paging off is not shadowed. */
static const char *cr0_write(uint64_t value, uint64_t *live)
{
	if (!(value & (1ull << 31)))
		return "paging=shadow: L2 turned paging off, which turtle does not shadow";
	shadow_mode.wp = (value & (1ull << 16)) != 0;
	*live = 1ull << 16;
	return 0;
}

static enum l2mem_fault page_fault(uint64_t lin, uint32_t error_code, bool nxe, struct l2mem_fault_info *out)
{
	struct shadow_fault_info f;
	shadow_mode.nxe = nxe;
	switch (shadow_fault(lin, error_code & (PF_W | PF_U | PF_I), &f)) {
	case SHADOW_FIXED:
		return L2MEM_FIXED;
	case SHADOW_GUEST_FAULT:
		out->error_code = f.error_code;
		return L2MEM_INJECT;
	case SHADOW_OUTSIDE:
		out->gpa = f.gpa;
		return L2MEM_OUTSIDE;
	default:
		return L2MEM_STOP;
	}
}

static void report(void)
{
	const struct shadow_stats *st = &shadow_stats;
	printf("turtle: shadow paging: hidden faults %llu, L2's own faults %llu, outside L2 RAM %llu, INVLPG %llu; "
	       "roots built %llu, reused %llu (leaves dropped at resync %llu), pool flushes %llu, pool pages %u\n",
	       (unsigned long long)st->hidden_faults, (unsigned long long)st->guest_faults, (unsigned long long)st->outside,
	       (unsigned long long)st->invlpgs, (unsigned long long)st->roots_built, (unsigned long long)st->root_hits,
	       (unsigned long long)st->resync_drops, (unsigned long long)st->pool_flushes, shadow_pool_used());
}

const struct l2mem_strategy l2mem_shadow = {
	.name = "shadow", .own_region = true, .setup = setup, .cr3_load = cr3_load, .cr3_read = cr3_read,
	.cr0_write = cr0_write, .invlpg = shadow_invlpg, .page_fault = page_fault, .report = report,
};
