/*
 * apic-timer - the local APIC as a guest sees it: the timer interrupting a
 * busy loop (no HLT, so the monitor must kick the vCPU out of KVM_RUN when
 * the deadline passes), the current-count register, periodic mode, a
 * masked LVT, self-IPIs through the ICR and TPR masking (SDM Vol. 3A 11.5.4,
 * 11.6.1 and 11.8.3).
 *
 * usage: apic-timer [window]
 *   window  also checks that a pending interrupt is taken in the
 *           one-instruction window after STI (an L1 check)
 *
 * Every wait is bounded by TSC cycles, so a missing interrupt is a FAIL
 * line, never a hang.
 */
#include "guest.h"

#define TIMER_VECTOR	0x40
#define IPI_VECTOR	0x50
#define SPURIOUS_VECTOR	0xff
#define APIC_ICR_LOW	0x300
#define ICR_SELF	(1u << 18)	/* destination shorthand: self */
#define WAIT_CYCLES	(20ull * 1000 * 1000 * 1000)	/* ~8 s at 2.5 GHz */
#define QUIET_CYCLES	(50ull * 1000 * 1000)		/* ~20 ms: 10000 ticks x 2000 */

static volatile uint64_t timer_irqs, ipi_irqs;

static void timer_handler(struct regs *r) { (void)r; timer_irqs++; apic_eoi(); }
static void ipi_handler(struct regs *r) { (void)r; ipi_irqs++; apic_eoi(); }
static void spurious_handler(struct regs *r) { (void)r; }

/* Spins with interrupts enabled until *counter reaches target or `cycles` pass. */
static bool spin_for(volatile uint64_t *counter, uint64_t target, uint64_t cycles)
{
	uint64_t start = rdtsc();
	sti();
	while (*counter < target && rdtsc() - start < cycles)
		__asm__ volatile("pause");
	cli();
	return *counter >= target;
}

static bool spin_until(volatile uint64_t *counter, uint64_t target)
{
	return spin_for(counter, target, WAIT_CYCLES);
}

int main(int argc, char **argv)
{
	cli();
	pic_mask_all();
	set_irq_handler(TIMER_VECTOR, timer_handler);
	set_irq_handler(IPI_VECTOR, ipi_handler);
	set_irq_handler(SPURIOUS_VECTOR, spurious_handler);
	apic_enable(SPURIOUS_VECTOR);
	apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIV_1);

	/* The current count, on a one-shot about 4 s ahead: no delay between
	 * the reads (each a nested exit, on a loaded host) lets it expire. */
	apic_write(APIC_LVT_TIMER, APIC_TIMER_ONESHOT | TIMER_VECTOR);
	apic_write(APIC_TIMER_INITIAL, 4000000000u);
	uint32_t c1 = apic_read(APIC_TIMER_CURRENT);
	uint32_t c2 = apic_read(APIC_TIMER_CURRENT);
	report(c1 > 0 && c2 < c1, "current count counts down (%u then %u)", c1, c2);

	/* One-shot, 20 ms ahead (writing the initial count restarts it), while
	 * the guest spins without exiting. */
	apic_write(APIC_TIMER_INITIAL, 20000000);
	report(spin_until(&timer_irqs, 1), "one-shot timer interrupts a busy loop");
	report(apic_read(APIC_TIMER_CURRENT) == 0, "current count is 0 after a one-shot expires");

	/* A masked LVT never interrupts: arm 1 tick, wait, see nothing. */
	timer_irqs = 0;
	apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | TIMER_VECTOR);
	apic_write(APIC_TIMER_INITIAL, 1);
	report(!spin_for(&timer_irqs, 1, QUIET_CYCLES), "masked timer raises no interrupt");
	apic_write(APIC_TIMER_INITIAL, 0);

	/* Periodic: several interrupts from one arming. */
	timer_irqs = 0;
	apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | TIMER_VECTOR);
	apic_write(APIC_TIMER_INITIAL, 500000);
	bool periodic = spin_until(&timer_irqs, 3);
	apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED | TIMER_VECTOR);
	apic_write(APIC_TIMER_INITIAL, 0);
	report(periodic, "periodic timer fires repeatedly (%llu interrupts)",
	       (unsigned long long)timer_irqs);

	/* Self-IPI through the ICR. */
	apic_write(APIC_ICR_LOW, ICR_SELF | IPI_VECTOR);
	report(spin_until(&ipi_irqs, 1), "self-IPI with vector 0x%x delivered", IPI_VECTOR);

	/* TPR class 6 holds back vector 0x50 (class 5) until TPR drops. */
	ipi_irqs = 0;
	apic_write(APIC_TPR, 0x60);
	apic_write(APIC_ICR_LOW, ICR_SELF | IPI_VECTOR);
	sti();
	__asm__ volatile("nop; nop; nop");
	cli();
	report(ipi_irqs == 0, "TPR 0x60 blocks vector 0x%x", IPI_VECTOR);
	apic_write(APIC_TPR, 0);
	report(spin_until(&ipi_irqs, 1), "lowering TPR delivers the held vector");

	/* The one-instruction window (SDM Vol. 3A 6.8.3, STI): an interrupt
	 * pending while IF is clear is taken after the instruction that
	 * follows STI, here between the NOP and the CLI. Only at level 1:
	 * turtle has no interrupt-window exiting to offer L2 (usage). */
	if (argc > 1 && !strcmp(argv[1], "window")) {
		ipi_irqs = 0;
		apic_write(APIC_ICR_LOW, ICR_SELF | IPI_VECTOR);
		__asm__ volatile("sti; nop; cli");
		report(ipi_irqs == 1, "a pending self-IPI is taken in the one-instruction window of sti; nop; cli (%llu)",
		       (unsigned long long)ipi_irqs);
	}

	return report_summary();
}
