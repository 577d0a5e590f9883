/*
 * hlt-storm - N HLTs, each woken by a local APIC timer interrupt.
 *
 * How the wakeup works: the PIC is masked and the local APIC timer is
 * programmed in one-shot mode (vector 0x40, divide by 1). For each
 * iteration, with interrupts disabled, we arm the timer with a tiny
 * initial count and then execute "sti; hlt" as one asm statement. STI
 * defers interrupt recognition until after the next instruction (SDM
 * Vol. 2B "STI"), so even if the timer has already expired the CPU first
 * enters HLT (a VM exit, KVM_EXIT_HLT or in-kernel halt) and the pending
 * interrupt then wakes it; it cannot slip in between and leave us halted
 * forever. The handler counts the interrupt and writes EOI. If HLT returns
 * for any other reason we simply halt again until the count moves.
 *
 * usage: hlt-storm [N] [ticks=T]    (default N=10000, T=1)
 *
 * ticks=T arms the timer T bus clocks ahead instead of 1, so that the HLT
 * comes well before the interrupt and the vCPU really sleeps.
 */
#include "guest.h"

#define USAGE		"hlt-storm [N] [ticks=T]"
#define TIMER_VECTOR	0x40
#define SPURIOUS_VECTOR	0xff

static volatile uint64_t timer_irqs;
static volatile uint64_t spurious_irqs;

static void timer_handler(struct regs *r)
{
	(void)r;
	timer_irqs++;
	apic_eoi();
}

/* Spurious interrupts need no EOI (SDM Vol. 3A 11.9). */
static void spurious_handler(struct regs *r)
{
	(void)r;
	spurious_irqs++;
}

int main(int argc, char **argv)
{
	uint64_t n = 10000, halts = 0, ticks = 1;	/* ticks: bus clocks until the interrupt */
	const char *v;

	for (int i = 1; i < argc; i++) {
		if ((v = arg_value(argv[i], "ticks"))) {
			if (!parse_u64(v, &ticks) || ticks == 0 || ticks > 0xffffffffull)
				return usage(USAGE);
		} else if (!parse_u64(argv[i], &n)) {
			return usage(USAGE);
		}
	}

	printf("hlt-storm: %llu HLTs woken by the APIC timer (vector 0x%x)\n",
	       (unsigned long long)n, TIMER_VECTOR);

	cli();
	pic_mask_all();
	set_irq_handler(TIMER_VECTOR, timer_handler);
	set_irq_handler(SPURIOUS_VECTOR, spurious_handler);
	apic_enable(SPURIOUS_VECTOR);
	apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIV_1);
	apic_write(APIC_LVT_TIMER, APIC_TIMER_ONESHOT | TIMER_VECTOR);

	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		apic_write(APIC_TIMER_INITIAL, (uint32_t)ticks);
		while (timer_irqs == i) {
			safe_halt();	/* sti; hlt */
			cli();
			halts++;
		}
	}
	uint64_t cycles = rdtsc() - t0;

	apic_write(APIC_LVT_TIMER, APIC_LVT_MASKED);
	apic_write(APIC_TIMER_INITIAL, 0);

	printf("hlt-storm: %llu HLTs, %llu timer and %llu spurious interrupts, "
	       "%llu TSC cycles, %llu per iteration\n",
	       (unsigned long long)halts, (unsigned long long)timer_irqs,
	       (unsigned long long)spurious_irqs, (unsigned long long)cycles,
	       (unsigned long long)(n ? cycles / n : 0));
	report(timer_irqs == n, "timer interrupt count %llu equals N=%llu",
	       (unsigned long long)timer_irqs, (unsigned long long)n);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
