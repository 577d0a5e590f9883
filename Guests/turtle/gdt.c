/*
 * gdt.c - turtle's own GDT and 64-bit TSS.
 *
 * The host-state checks of VM entry (SDM Vol. 3C 27.2.3) require a non-null
 * host TR selector, and a VM exit loads TR from HOST_TR_SEL/HOST_TR_BASE
 * (SDM 28.5.2), so turtle needs a TSS of its own; lib/boot.S has none. The
 * code and data descriptors are the same as boot.S's, at the same
 * selectors, so nothing else changes when this GDT is loaded.
 */
#include "turtle.h"

/* 64-bit TSS (SDM Vol. 3A 9.7 "Task Management in 64-bit Mode"). */
struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

static struct tss64 tss __attribute__((aligned(16)));
static uint64_t gdt[5] __attribute__((aligned(16)));

struct __attribute__((packed)) desc_ptr {
	uint16_t limit;
	uint64_t base;
};

void turtle_gdt_init(void)
{
	uint64_t base = (uint64_t)(uintptr_t)&tss;
	uint64_t limit = sizeof(tss) - 1;	/* 0x67 */

	tss.iomap_base = sizeof(tss);		/* no I/O permission bitmap */

	gdt[0] = 0;
	gdt[1] = 0x00af9a000000ffffull;		/* 0x08: 64-bit code, DPL 0 */
	gdt[2] = 0x00cf92000000ffffull;		/* 0x10: data, read/write */
	/* 0x18: 16-byte system descriptor, type 9 (available 64-bit TSS), P. */
	gdt[3] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
		 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[4] = base >> 32;

	struct desc_ptr p = { sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt };
	__asm__ volatile(
		"lgdt %[p]\n\t"
		"pushq %[cs]\n\t"
		"leaq 1f(%%rip), %%rax\n\t"
		"pushq %%rax\n\t"
		"lretq\n"
		"1:\n\t"
		"movw %w[ds], %%ax\n\t"
		"movw %%ax, %%ds\n\t"
		"movw %%ax, %%es\n\t"
		"movw %%ax, %%ss\n\t"
		"movw %%ax, %%fs\n\t"
		"movw %%ax, %%gs\n\t"
		"movw %w[tr], %%ax\n\t"
		"ltr %%ax"
		: : [p] "m"(p), [cs] "i"(TURTLE_CS), [ds] "r"(TURTLE_DS), [tr] "r"(TURTLE_TR)
		: "rax", "memory");
}

uint64_t turtle_gdt_base(void)
{
	return (uint64_t)(uintptr_t)gdt;
}

uint64_t turtle_tss_base(void)
{
	return (uint64_t)(uintptr_t)&tss;
}
