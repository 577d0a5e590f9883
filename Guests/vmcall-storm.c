/*
 * vmcall-storm - N VMCALLs with turtle's "nop" hypercall (RAX = 2), each a
 * VM exit to the L1 hypervisor that counts it and returns RAX = 0. Then one
 * "print" hypercall (RAX = 0, RBX = address of a string), then one "nop"
 * hypercall from code written at run time, which no sweep of the image
 * saw, then the usual PASS/SUMMARY lines and exit through port 0xf4.
 *
 * This guest needs a hypervisor: run it as L2 under turtle
 *   terrapin run Guests/build/turtle.elf --module "Guests/build/vmcall-storm.elf 1000"
 * Run directly (as L1), its first VMCALL raises #UD (no VMX non-root
 * operation); it reports that and exits with 1.
 *
 * usage: vmcall-storm [N]    (default N=10000)
 */
#include "guest.h"
#include "trap.h"

#define USAGE	"vmcall-storm [N]"

#define HC_PRINT	0
#define HC_NOP		2

static inline uint64_t hypercall(uint64_t nr, uint64_t arg)
{
	__asm__ volatile("vmcall" : "+a"(nr) : "b"(arg) : "memory");
	return nr;
}

/* The first VMCALL, inside a trap window so that #UD is an outcome. */
static int probe_vmcall(uint64_t *ret)
{
	uint64_t rax = HC_NOP;

	trap_reset();
	__asm__ volatile(TRAP_BEGIN "vmcall" TRAP_END : "+a"(rax) : "b"(0ull) : "r11", "memory");
	*ret = rax;
	return fault.vector;
}

static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char message[128];

/*
 * VMCALL; RET, written into a data buffer at run time and called there.
 * L0's sweep of this image never saw it, and it still exits to the
 * hypervisor (SDM 26.1.2): L0 catches it at this guest's #UD handler.
 */
static uint8_t generated[16] __attribute__((aligned(16)));

static uint64_t generated_hypercall(uint64_t nr, uint64_t arg)
{
	static const uint8_t code[] = { 0x0f, 0x01, 0xc1, 0xc3 };

	for (unsigned i = 0; i < sizeof(code); i++)
		((volatile uint8_t *)generated)[i] = code[i];
	__asm__ volatile("call *%[fn]" : "+a"(nr) : "b"(arg), [fn] "r"(generated) : "memory");
	return nr;
}

int main(int argc, char **argv)
{
	uint64_t n = 10000, ret = 0, bad = 0;

	if (argc > 2 || (argc == 2 && !parse_u64(argv[1], &n)))
		return usage(USAGE);
	trap_init();
	/*
	 * Print before the first VMCALL: L0 finds this guest's #UD handler (where
	 * it catches VMCALL) when it next sees an exit after the IDT is loaded.
	 */
	printf("vmcall-storm: %llu nop hypercalls\n", (unsigned long long)n);

	int vec = probe_vmcall(&ret);
	if (vec != NO_FAULT) {
		report(false, "VMCALL raised exception %d: vmcall-storm must run as L2 under turtle", vec);
		return report_summary();
	}
	report(ret == 0, "the first nop hypercall returned 0x%llx", (unsigned long long)ret);

	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		if (hypercall(HC_NOP, i) != 0)
			bad++;
	uint64_t cycles = rdtsc() - t0;
	printf("vmcall-storm: %llu TSC cycles, %llu per exit\n", (unsigned long long)cycles,
	       (unsigned long long)(n ? cycles / n : 0));
	report(bad == 0, "%llu nop hypercalls, %llu did not return 0", (unsigned long long)n,
	       (unsigned long long)bad);

	/* "print": the hypervisor prints the string itself. */
	const char *s = "vmcall-storm: hello through the print hypercall, after ";
	char *p = message;
	while (*s)
		*p++ = *s++;
	p = put_u64(p, n);
	for (s = " nops\n"; *s;)
		*p++ = *s++;
	*p = '\0';
	report(hypercall(HC_PRINT, (uint64_t)(uintptr_t)message) == 0, "print hypercall returned 0");
	report(generated_hypercall(HC_NOP, 0) == 0, "a nop hypercall from code written at run time returned 0");
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
