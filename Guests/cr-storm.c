/*
 * cr-storm - N rounds of CR3 switches between two address spaces and an
 * INVLPG: each round loads CR3 with a copy of the boot PML4, reads it back,
 * touches a page, invalidates it, and loads the boot PML4 again. Every
 * MOV to or from CR3 and every INVLPG is sensitive (SDM Vol. 3C 26.1.3): as
 * L2 they reach L0 through its patched code page (docs/PATCHING.md), which
 * exits to L1 under CR3-load/store or INVLPG exiting, and otherwise runs
 * the original instruction in KVM.
 *
 * Then CR0.TS: set with MOV to CR0, read back, cleared with CLTS, read
 * back. Under turtle cr0mask=0x8 L1 owns TS: the writes exit and the reads
 * see the read shadow (26.3). Last, clearing CR0.NE must raise #GP(0):
 * NE is fixed to 1 in VMX operation (IA32_VMX_CR0_FIXED0), and only as L2
 * is the guest in VMX non-root operation; at level 1 the clear works.
 *
 * usage: cr-storm [N] [l2]    (default N=10000; l2: expect VMX non-root)
 */
#include "guest.h"
#include "trap.h"
#include "vmx.h"

#define USAGE	"cr-storm [N]"

static uint64_t other_pml4[512] __attribute__((aligned(4096)));
static volatile uint64_t touched;

static void invlpg(volatile void *p)
{
	__asm__ volatile("invlpg (%0)" : : "r"(p) : "memory");
}

int main(int argc, char **argv)
{
	uint64_t n = 10000;
	bool l2 = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "l2"))
			l2 = true;
		else if (!parse_u64(argv[i], &n) || n == 0)
			return usage(USAGE " (bad argument \"%s\")", argv[i]);
	}
	trap_init();

	uint64_t boot = read_cr3(), other = (uint64_t)(uintptr_t)other_pml4;
	memcpy(other_pml4, (void *)(uintptr_t)(boot & ~0xfffull), sizeof(other_pml4));
	printf("cr-storm: %llu rounds between CR3 0x%llx and 0x%llx\n", (unsigned long long)n,
	       (unsigned long long)boot, (unsigned long long)other);

	uint64_t mismatches = 0, t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		write_cr3(other);
		mismatches += read_cr3() != other;
		touched++;
		invlpg(&touched);
		write_cr3(boot);
		mismatches += read_cr3() != boot;
	}
	uint64_t cycles = rdtsc() - t0;

	printf("cr-storm: %llu TSC cycles, %llu per round\n", (unsigned long long)cycles, (unsigned long long)(cycles / n));
	report(mismatches == 0, "MOV from CR3 reads back every value loaded (%llu mismatches in %llu rounds)",
	       (unsigned long long)mismatches, (unsigned long long)n);
	report(touched == n, "a page touched and invalidated every round still holds its count (%llu)", (unsigned long long)touched);

	uint64_t cr0 = read_cr0();
	write_cr0(cr0 | CR0_TS);
	bool set = read_cr0() & CR0_TS;
	__asm__ volatile("clts");
	bool cleared = !(read_cr0() & CR0_TS);
	report(set && cleared, "CR0.TS reads set after MOV to CR0 and clear after CLTS");

	/* The same with LMSW and SMSW, the machine status word (CR0's low bits). */
	uint16_t msw;
	__asm__ volatile("smsw %0" : "=r"(msw));
	__asm__ volatile("lmsw %0" : : "r"((uint16_t)(msw | CR0_TS)));
	uint16_t with_ts;
	__asm__ volatile("smsw %0" : "=r"(with_ts));
	__asm__ volatile("clts");
	report((with_ts & CR0_TS) && (read_cr0() & 0xffff) == msw, "LMSW sets CR0.TS, SMSW reads it (0x%x), CLTS clears it",
	       with_ts);

	/* Clearing CR0.NE: #GP(0) in VMX non-root operation, allowed otherwise. */
	trap_reset();
	__asm__ volatile(TRAP_BEGIN "mov %0, %%cr0" TRAP_END : : "r"(cr0 & ~CR0_NE) : "r11", "memory");
	if (l2)
		report(fault.vector == 13 && fault.error_code == 0, "clearing CR0.NE as L2 raises #GP(0) (vector %d)", fault.vector);
	else
		report(fault.vector == NO_FAULT && !(read_cr0() & CR0_NE), "clearing CR0.NE at level 1 works");
	write_cr0(cr0);

	/* MOV to and from a debug register, WBINVD and INVD (26.1.2-26.1.3). */
	uint64_t dr0 = 0x1234000, back;
	__asm__ volatile("mov %1, %%db0\n\tmov %%db0, %0" : "=r"(back) : "r"(dr0));
	__asm__ volatile("wbinvd; invd" ::: "memory");
	report(back == dr0, "DR0 reads back 0x%llx; WBINVD and INVD complete", (unsigned long long)back);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
