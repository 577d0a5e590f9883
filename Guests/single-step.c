/*
 * single-step - the trap flag (SDM Vol. 3A 18.3.1.4): with RFLAGS.TF set, a
 * #DB trap with DR6.BS follows every instruction. Single-stepping 2N rather
 * than N rounds of a two-instruction loop must add exactly 2N traps, however
 * often the guest is interrupted meanwhile. As L2 under turtle with a short
 * VMX-preemption timer, that means no trap is lost or doubled at a
 * preemption-timer exit (SDM 28.3.4 keeps a pending one in the VMCS).
 *
 * usage: single-step [N]    (N loop rounds, default 20000)
 */
#include "guest.h"

#define USAGE	"single-step [N]"
#define DR6_BS	(1ull << 14)

static volatile uint64_t traps, bs_missing;

static void on_db(struct regs *r)
{
	(void)r;
	uint64_t dr6;
	traps++;
	__asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
	if (!(dr6 & DR6_BS))
		bs_missing++;
	__asm__ volatile("mov %0, %%dr6" : : "r"(0xffff0ff0ull));	/* DR6 after reset */
}

/* Single-steps `rounds` (at least 1) rounds of "dec; jnz"; returns the traps. */
static uint64_t stepped_loop(uint64_t rounds)
{
	traps = 0;
	__asm__ volatile("pushfq; orq $0x100, (%%rsp); popfq\n\t"
			 "1: dec %0; jnz 1b\n\t"
			 "pushfq; andq $~0x100, (%%rsp); popfq"
			 : "+r"(rounds) : : "cc", "memory");
	return traps;
}

int main(int argc, char **argv)
{
	uint64_t n = 20000;
	if (argc > 1 && (!parse_u64(argv[1], &n) || n == 0 || n > 10000000))
		return usage("%s: N from 1 to 10000000", USAGE);
	set_irq_handler(1, on_db);

	uint64_t a = stepped_loop(n), b = stepped_loop(2 * n);
	report(a >= 2 * n && b - a == 2 * n, "TF traps after every instruction: %llu traps for %llu rounds, %llu for %llu",
	       (unsigned long long)a, (unsigned long long)n, (unsigned long long)b, (unsigned long long)(2 * n));
	report(bs_missing == 0, "DR6.BS is set at every single-step #DB (%llu without)", (unsigned long long)bs_missing);
	return report_summary();
}
