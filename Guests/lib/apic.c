/*
 * apic.c - local APIC enable and 8259 PIC masking.
 */
#include "guest.h"

void apic_enable(uint8_t spurious_vector)
{
	uint64_t base = rdmsr(MSR_IA32_APIC_BASE);

	/* Global enable (SDM Vol. 3A 11.4.3); the monitor boots with it set. */
	if (!(base & APIC_BASE_ENABLE))
		wrmsr(MSR_IA32_APIC_BASE, base | APIC_BASE_ENABLE);

	/* Software enable via the spurious-interrupt vector register (11.9). */
	apic_write(APIC_SVR, APIC_SVR_ENABLE | spurious_vector);
	apic_write(APIC_TPR, 0);	/* accept every priority class */
}

/* 8259A interrupt mask registers (OCW1) of the master and slave PIC. */
#define PIC1_DATA	0x21
#define PIC2_DATA	0xa1

void pic_mask_all(void)
{
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
}
