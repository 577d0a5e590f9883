/*
 * sensitive - the sensitive instructions beyond CPUID, RDTSC and the CR0,
 * CR3, CR4 and debug-register moves (cr-storm has those), each checked for
 * its architectural result: MOV to and from CR8, RDTSCP, PAUSE, RDPMC,
 * MONITOR and MWAIT, XSETBV, RDRAND and RDSEED, INVPCID, and LGDT, SGDT,
 * LIDT, SIDT, LLDT and SLDT.
 *
 * As L2 each reaches L0 through its patched code page when L1's controls
 * ask for it (docs/PATCHING.md): an exit to L1 (SDM Vol. 3C 26.1.2-26.1.3,
 * reasons 28, 51, 40, 15, 39, 36, 55, 57, 61, 58, 46, 47), or what the
 * instruction does without one. The results must be the same either way,
 * and the same as at level 1. Instructions that CPUID does not advertise
 * are checked for their #UD instead.
 *
 * usage: sensitive
 */
#include "guest.h"
#include "trap.h"
#include "vmx.h"

#define CR4_OSXSAVE	(1ull << 18)

struct table_register {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* Runs `insn` with the asm operands `outputs : inputs` and returns the vector it raised, or NO_FAULT. */
#define TRAPPED(insn, ...)                                                              \
	({                                                                              \
		trap_reset();                                                           \
		__asm__ volatile(TRAP_BEGIN insn TRAP_END : __VA_ARGS__ : "r11", "memory"); \
		fault.vector;                                                           \
	})

static void check_cr8(void)
{
	uint64_t back;
	__asm__ volatile("mov %1, %%cr8\n\tmov %%cr8, %0" : "=r"(back) : "r"(5ull));
	uint64_t zero = 0;
	__asm__ volatile("mov %0, %%cr8" : : "r"(zero));
	report(back == 5, "CR8 reads back the priority class written (%llu)", (unsigned long long)back);
	int v = TRAPPED("mov %0, %%cr8", : "r"(0x10ull));
	report(v == 13 && fault.error_code == 0, "MOV to CR8 with bit 4 set raises #GP(0) (vector %d)", v);
}

static void check_rdtscp(bool present)
{
	if (!present) {
		/* Its #UD is not checked: KVM on some hosts reports an instruction
		 * its guest does not have as an emulation failure instead. */
		report_skip("RDTSCP: CPUID does not advertise it");
		return;
	}
	wrmsr(MSR_IA32_TSC_AUX, 0x2a);
	uint32_t lo, hi, aux;
	uint64_t before = rdtsc();
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	uint64_t tsc = (uint64_t)hi << 32 | lo, after = rdtsc();
	report(before <= tsc && tsc <= after && aux == 0x2a && rdmsr(MSR_IA32_TSC_AUX) == 0x2a,
	       "RDTSCP reads the TSC between two RDTSCs and IA32_TSC_AUX (0x%x)", aux);
}

static void check_rdpmc(void)
{
	uint32_t a, b, c, d;
	cpuid(0, 0, &a, &b, &c, &d);
	uint32_t counters = 0;
	if (a >= 0xa) {
		cpuid(0xa, 0, &a, &b, &c, &d);
		counters = (a >> 8) & 0xff;
	}
	uint32_t lo, hi;
	int v = TRAPPED("rdpmc", "=a"(lo), "=d"(hi) : "c"(0));
	if (counters)
		report(v == NO_FAULT, "RDPMC reads counter 0 of %u", counters);
	else
		report(v == 13, "RDPMC with no performance counters raises #GP (vector %d)", v);
}

static void check_monitor_mwait(bool present)
{
	static volatile uint64_t line __attribute__((aligned(64)));
	int m = TRAPPED("monitor", : "a"(&line), "c"(0), "d"(0));
	int w = present ? NO_FAULT : TRAPPED("mwait", : "a"(0), "c"(0));
	if (present)
		report(m == NO_FAULT, "MONITOR arms the line");
	else
		report(m == 6 && w == 6, "MONITOR and MWAIT raise #UD: CPUID does not advertise them (vectors %d, %d)", m, w);
}

static void check_xsetbv(bool present)
{
	if (!present) {
		report_skip("XSETBV: CPUID does not advertise XSAVE");
		return;
	}
	write_cr4(read_cr4() | CR4_OSXSAVE);
	uint32_t lo, hi;
	if (TRAPPED("xgetbv", "=a"(lo), "=d"(hi) : "c"(0)) != NO_FAULT) {
		/* KVM on our hosts shows CPUID.XSAVE but cannot run XGETBV or
		 * XSETBV: the monitor makes them #UD (docs/PATCHING.md). */
		report_skip("XSETBV: XGETBV raises #UD (vector %d) although CPUID advertises XSAVE", fault.vector);
		return;
	}
	int same = TRAPPED("xsetbv", : "a"(lo), "d"(hi), "c"(0));
	int no_x87 = TRAPPED("xsetbv", : "a"(lo & ~1u), "d"(hi), "c"(0));
	report(same == NO_FAULT && no_x87 == 13, "XSETBV takes XCR0 0x%x again and refuses it without x87 (#GP, vector %d)", lo,
	       no_x87);
}

static void check_random(const char *name, bool present, bool seed)
{
	if (!present) {
		uint64_t junk;
		int v = seed ? TRAPPED("rdseed %0", "=r"(junk) :) : TRAPPED("rdrand %0", "=r"(junk) :);
		report(v == 6, "%s raises #UD: CPUID does not advertise it (vector %d)", name, v);
		return;
	}
	uint64_t values[2] = { 0, 0 };
	int got = 0;
	for (int i = 0; i < 100 && got < 2; i++) {
		uint64_t v;
		uint8_t ok;
		if (seed)
			__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok));
		else
			__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
		if (ok)
			values[got++] = v;
	}
	report(got == 2 && values[0] != values[1], "%s gives two different values with CF set", name);
}

static void check_invpcid(bool present)
{
	struct { uint64_t pcid, address; } desc = { 0, 0 };
	int all = TRAPPED("invpcid %1, %0", : "r"(2ull), "m"(desc));
	if (!present) {
		report(all == 6, "INVPCID raises #UD: CPUID does not advertise it (vector %d)", all);
		return;
	}
	int bad = TRAPPED("invpcid %1, %0", : "r"(4ull), "m"(desc));
	report(all == NO_FAULT && bad == 13, "INVPCID of all contexts completes; type 4 raises #GP (vector %d)", bad);
}

static void check_descriptor_tables(void)
{
	struct table_register gdt, idt, gdt2, idt2;
	__asm__ volatile("sgdt %0; sidt %1" : "=m"(gdt), "=m"(idt));
	__asm__ volatile("lgdt %0; lidt %1" : : "m"(gdt), "m"(idt));
	__asm__ volatile("sgdt %0; sidt %1" : "=m"(gdt2), "=m"(idt2));
	report(gdt.base == gdt2.base && gdt.limit == gdt2.limit && idt.base == idt2.base && idt.limit == idt2.limit &&
	       gdt.limit >= 15 && idt.limit >= 255,
	       "SGDT and SIDT read back what LGDT and LIDT loaded (GDT 0x%llx/0x%x, IDT 0x%llx/0x%x)",
	       (unsigned long long)gdt.base, gdt.limit, (unsigned long long)idt.base, idt.limit);
	uint16_t ldt = 0xffff;
	__asm__ volatile("lldt %w1; sldt %w0" : "=r"(ldt) : "r"(0));
	report(ldt == 0, "LLDT of the null selector, and SLDT reads it (0x%x)", ldt);
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return usage("sensitive (no arguments)");
	trap_init();

	uint32_t a, b, c, d, b7 = 0, ext_d = 0;
	cpuid(1, 0, &a, &b, &c, &d);
	cpuid(7, 0, &a, &b7, &a, &a);
	cpuid(0x80000000, 0, &a, &b, &a, &a);
	if (a >= 0x80000001)
		cpuid(0x80000001, 0, &a, &b, &a, &ext_d);

	check_cr8();
	check_rdtscp(ext_d & (1u << 27));
	for (int i = 0; i < 100; i++)
		pause();
	printf("sensitive: 100 PAUSEs done\n");
	check_rdpmc();
	check_monitor_mwait(c & (1u << 3));
	check_xsetbv(c & (1u << 26));
	check_random("RDRAND", c & (1u << 30), false);
	check_random("RDSEED", b7 & (1u << 18), true);
	check_invpcid(b7 & (1u << 10));
	check_descriptor_tables();
	return report_summary();
}
