/*
 * fault - ends the run in one of the ways the monitor must survive, so the
 * end-to-end tests can check each documented outcome.
 *
 * usage: fault MODE
 *   triple   load an empty IDT, then UD2: #UD cannot be delivered, nor
 *            the #DF, so the CPU shuts down (SDM Vol. 3A 6.15, "Double
 *            Fault Exception"). The monitor exits with status 80.
 *   halt     CLI; HLT with nothing pending: the guest can never wake.
 *            The monitor exits with status 82.
 *   idle     STI; HLT with no interrupt source armed. Status 82 as well.
 *   ud       UD2 with the runtime's IDT: the guest's own handler prints a
 *            register dump and exits with value 3 (status 7).
 *   msr      RDMSR of an MSR that does not exist (0x1234): KVM hands it to
 *            the monitor, which injects #GP; the guest catches it and
 *            reports, then exits 0 (status 1).
 */
#include "guest.h"

#define USAGE	"fault triple|halt|idle|ud|msr"
#define BOGUS_MSR	0x1234u

static volatile int gp_seen;

static void on_gp(struct regs *r)
{
	gp_seen = 1;
	r->rip += 2;			/* skip the 2-byte RDMSR */
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(USAGE);
	const char *mode = argv[1];

	if (!strcmp(mode, "triple")) {
		struct { uint16_t limit; uint64_t base; } __attribute__((packed)) empty = { 0, 0 };
		printf("fault: UD2 with an empty IDT\n");
		__asm__ volatile("lidt %0; ud2" : : "m"(empty));
	} else if (!strcmp(mode, "halt")) {
		printf("fault: CLI; HLT\n");
		__asm__ volatile("cli; hlt");
	} else if (!strcmp(mode, "idle")) {
		printf("fault: STI; HLT with nothing armed\n");
		__asm__ volatile("sti; hlt");
	} else if (!strcmp(mode, "ud")) {
		printf("fault: UD2\n");
		__asm__ volatile("ud2");
	} else if (!strcmp(mode, "msr")) {
		set_irq_handler(13, on_gp);
		uint32_t lo, hi;
		__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(BOGUS_MSR));
		report(gp_seen, "RDMSR 0x%x raised #GP", BOGUS_MSR);
		return report_summary();
	} else {
		return usage(USAGE " (unknown mode \"%s\")", mode);
	}
	printf("fault: still running after \"%s\"\n", mode);
	return EXIT_FAIL;
}
