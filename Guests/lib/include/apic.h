/*
 * apic.h - local APIC (xAPIC MMIO mode) and legacy 8259 PIC helpers.
 * Register map: SDM Vol. 3A 11.4.1 table 11-1 "Local APIC Register
 * Address Map"; timer: SDM Vol. 3A 11.5.4 "APIC Timer".
 */
#ifndef GUEST_APIC_H
#define GUEST_APIC_H

#include <stdint.h>
#include "x86.h"

#define APIC_DEFAULT_BASE	0xfee00000UL

#define APIC_ID			0x020
#define APIC_VER		0x030
#define APIC_TPR		0x080
#define APIC_EOI		0x0b0
#define APIC_SVR		0x0f0
#define APIC_LVT_TIMER		0x320
#define APIC_TIMER_INITIAL	0x380
#define APIC_TIMER_CURRENT	0x390
#define APIC_TIMER_DIVIDE	0x3e0

#define APIC_SVR_ENABLE		(1u << 8)
#define APIC_LVT_MASKED		(1u << 16)
#define APIC_TIMER_ONESHOT	(0u << 17)
#define APIC_TIMER_PERIODIC	(1u << 17)
#define APIC_TIMER_DIV_1	0xb

/* IA32_APIC_BASE MSR bits (SDM Vol. 3A 11.4.4) */
#define APIC_BASE_BSP		(1ull << 8)
#define APIC_BASE_ENABLE	(1ull << 11)

static inline uint32_t apic_read(uint32_t reg)
{
	return mmio_read32(APIC_DEFAULT_BASE + reg);
}

static inline void apic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(APIC_DEFAULT_BASE + reg, v);
}

static inline void apic_eoi(void)
{
	apic_write(APIC_EOI, 0);
}

/* Globally enable the APIC (MSR), software-enable it (SVR), TPR = 0. */
void apic_enable(uint8_t spurious_vector);

/* Mask every line of both 8259s so only the local APIC can interrupt. */
void pic_mask_all(void);

#endif
