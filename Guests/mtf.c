/*
 * mtf - the monitor trap flag (SDM Vol. 3C 26.5.2) as seen from L2: under
 * turtle, hypercall HC_MTF sets the control for a stretch of code and
 * counts its exits. Each instruction there that does not exit to L1 itself
 * gives one MTF VM exit after it completes, whoever carries it out: the
 * processor (NOPs, MOVs), L0 (MOV from CR8, through its patched code page,
 * docs/PATCHING.md), or KVM single-stepped by L0 (MOV to CR0). CPUID exits
 * to turtle and gives none.
 *
 * Runs only as L2 under turtle (it needs turtle's hypercalls).
 *
 * usage: mtf
 */
#include "guest.h"

#define HC_MTF	3

/* One stretch: MTF on, `body`, MTF off; returns the MTF exits turtle counted.
 * The two instructions that load the "off" hypercall count too. */
#define MTF_STRETCH(body, ...)                                                          \
	({                                                                              \
		uint64_t exits;                                                         \
		__asm__ volatile("mov %[hc], %%eax\n\tmov $1, %%ebx\n\tvmcall\n\t"      \
				 body                                                   \
				 "\n\tmov %[hc], %%eax\n\txor %%ebx, %%ebx\n\tvmcall"   \
				 : "=a"(exits) : [hc] "i"(HC_MTF), ##__VA_ARGS__        \
				 : "rbx", "rcx", "rdx", "memory");                      \
		exits;                                                                  \
	})

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return usage("mtf (no arguments; as L2 under turtle)");

	uint64_t nops = MTF_STRETCH("nop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop");
	report(nops == 12, "10 NOPs give 12 MTF exits, with the 2 instructions that load the hypercall (%llu)",
	       (unsigned long long)nops);

	uint64_t l0 = MTF_STRETCH("mov %%cr8, %%rcx\n\txor %%eax, %%eax\n\tcpuid\n\tnop");
	report(l0 == 5, "MOV from CR8 (done by L0), XOR, NOP: an MTF exit each; CPUID exits and has none (%llu)",
	       (unsigned long long)l0);

	uint64_t stepped = MTF_STRETCH("mov %%cr0, %%rcx\n\tmov %%rcx, %%cr0\n\tnop");
	report(stepped == 5, "MOV to CR0, which KVM runs as L0 steps it, gives its MTF exit (%llu)", (unsigned long long)stepped);
	return report_summary();
}
