/*
 * vmcs-fuzz - an L1 that launches L2 with thousands of random guest states:
 * a valid baseline (a flat 32-bit guest with paging off, "unrestricted
 * guest", and an EPT that maps nothing) with a few fields mutated at
 * random each time. Every VMLAUNCH must end in one of the SDM's outcomes:
 * VMfailValid (7 or 8), a VM-entry failure exit (33 or 34), or a VM exit
 * (48: the first fetch of L2 hits the empty EPT; 2: triple fault; ...).
 * The monitor must never crash or hang, whatever the state. Six fixed
 * launches first check exits during and after event delivery (SDM 27.6,
 * 28.2.4).
 *
 * usage: vmcs-fuzz [N] [seed=S]    (default N=2000, seed=1)
 *
 * Host state is always valid, so each VM exit returns here, right after the
 * VMLAUNCH (HOST_RIP and HOST_RSP point back into the launching code).
 */
#include "guest.h"
#include "vmx.h"

#define USAGE	"vmcs-fuzz [N] [seed=S]"

static uint8_t vmxon_region[4096] __attribute__((aligned(4096)));
static uint8_t vmcs[4096] __attribute__((aligned(4096)));
static uint8_t ept_pml4[4096] __attribute__((aligned(4096)));	/* all not present */
/* A map of L2's first code page only, for one fixed launch. */
static uint64_t ept_pdpt[512] __attribute__((aligned(4096)));
static uint64_t ept_pd[512] __attribute__((aligned(4096)));
static uint64_t ept_pt[512] __attribute__((aligned(4096)));
static uint8_t l2_code[4096] __attribute__((aligned(4096)));
static uint64_t l2_gdt[512] __attribute__((aligned(4096)));
static uint64_t l2_idt[512] __attribute__((aligned(4096)));
static uint32_t l2_tss[1024] __attribute__((aligned(4096)));	/* L2-physical 0x2000 */
static uint8_t l2_kstack[4096] __attribute__((aligned(4096)));	/* L2-physical 0x103000 */
static uint8_t host_tss[104] __attribute__((aligned(16)));
static uint64_t host_gdt[8] __attribute__((aligned(16)));

static uint64_t rng = 1;
static volatile uint64_t l1_timer_irqs;

static void l1_timer(struct regs *r)
{
	(void)r;
	l1_timer_irqs++;
	apic_eoi();
}

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The guest-state fields mutated (SDM Appendix B). */
static const uint32_t guest_fields[] = {
	0x0800, 0x0802, 0x0804, 0x0806, 0x0808, 0x080a, 0x080c, 0x080e,	/* selectors */
	0x4800, 0x4802, 0x4804, 0x4806, 0x4808, 0x480a, 0x480c, 0x480e, 0x4810, 0x4812, /* limits */
	0x4814, 0x4816, 0x4818, 0x481a, 0x481c, 0x481e, 0x4820, 0x4822,	/* access rights */
	0x4824, 0x4826,							/* interruptibility, activity */
	0x6800, 0x6802, 0x6804, 0x6806, 0x6808, 0x680a, 0x680c, 0x680e,	/* CR0 CR3 CR4 ES..DS base */
	0x6810, 0x6812, 0x6814, 0x6816, 0x6818, 0x681a, 0x681c, 0x681e, 0x6820, 0x6822,
	0x2800, 0x2802, 0x2806,						/* link pointer, DEBUGCTL, EFER */
	0x4016, 0x4018, 0x401a,						/* entry event injection */
	0x4012, 0x4000, 0x4002, 0x401e,					/* entry, pin, primary, secondary controls */
};
#define NFIELDS (sizeof(guest_fields) / sizeof(guest_fields[0]))

static uint32_t ctl(uint32_t msr, uint32_t want)
{
	uint64_t cap = rdmsr(msr);
	return (want | (uint32_t)cap) & (uint32_t)(cap >> 32);
}

/* A TSS descriptor for the host: VM entry needs a non-null host TR (27.2.3). */
static void host_tr_init(void)
{
	struct { uint16_t limit; uint64_t base; } __attribute__((packed)) gdtr;
	__asm__ volatile("sgdt %0" : "=m"(gdtr));
	memcpy(host_gdt, (void *)gdtr.base, gdtr.limit + 1 < 48 ? gdtr.limit + 1 : 48);
	uint64_t base = (uint64_t)(uintptr_t)host_tss, limit = sizeof(host_tss) - 1;
	host_gdt[6] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 | ((base >> 24) & 0xff) << 56;
	host_gdt[7] = base >> 32;
	gdtr.base = (uint64_t)(uintptr_t)host_gdt;
	gdtr.limit = sizeof(host_gdt) - 1;
	__asm__ volatile("lgdt %0; ltr %w1" : : "m"(gdtr), "r"(0x30) : "memory");
}

static void baseline(void)
{
	uint16_t cs, ss;
	__asm__ volatile("mov %%cs, %0; mov %%ss, %1" : "=r"(cs), "=r"(ss));
	uint64_t ept = (uint64_t)(uintptr_t)ept_pml4 | 6 | 3 << 3;

	vmwrite(0x4000, ctl(MSR_IA32_VMX_TRUE_PINBASED_CTLS, 1u << 0 | 1u << 6));	/* external-interrupt exiting, preemption timer */
	vmwrite(0x4002, ctl(MSR_IA32_VMX_TRUE_PROCBASED_CTLS, 1u << 31));
	vmwrite(0x401e, ctl(MSR_IA32_VMX_PROCBASED_CTLS2, (1u << 1) | (1u << 7)));	/* EPT, unrestricted */
	vmwrite(0x400c, ctl(MSR_IA32_VMX_TRUE_EXIT_CTLS, 1u << 9));			/* 64-bit host */
	vmwrite(0x4012, ctl(MSR_IA32_VMX_TRUE_ENTRY_CTLS, 0));
	vmwrite(0x201a, ept);
	vmwrite(0x482e, 100000);							/* preemption timer */
	vmwrite(0x2800, ~0ull);								/* link pointer */
	/* Host state (SDM 25.5): this code, this stack, these segments. */
	vmwrite(0x6c00, read_cr0());
	vmwrite(0x6c02, read_cr3());
	vmwrite(0x6c04, read_cr4());
	vmwrite(0x0c02, cs);
	vmwrite(0x0c00, ss); vmwrite(0x0c04, ss); vmwrite(0x0c06, ss);
	vmwrite(0x0c08, ss); vmwrite(0x0c0a, ss);
	vmwrite(0x0c0c, 0x30);
	vmwrite(0x6c0a, (uint64_t)(uintptr_t)host_tss);
	vmwrite(0x6c0c, (uint64_t)(uintptr_t)host_gdt);
	struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr;
	__asm__ volatile("sidt %0" : "=m"(idtr));
	vmwrite(0x6c0e, idtr.base);
	vmwrite(0x2c02, rdmsr(0xc0000080));
	/* Guest state: a flat 32-bit protected-mode guest, paging off. */
	vmwrite(0x6800, 0x31); vmwrite(0x6802, 0); vmwrite(0x6804, 0);
	for (int i = 0; i < 6; i++) {
		uint32_t sel = 0x0800 + 2 * i, lim = 0x4800 + 2 * i, ar = 0x4814 + 2 * i, base = 0x6806 + 2 * i;
		vmwrite(sel, i == 1 ? 0x10 : 0x18);
		vmwrite(lim, 0xffffffff);
		vmwrite(ar, i == 1 ? 0xc09b : 0xc093);
		vmwrite(base, 0);
	}
	vmwrite(0x080c, 0); vmwrite(0x480c, 0); vmwrite(0x4820, 0x10000); vmwrite(0x6812, 0);	/* LDTR unusable */
	vmwrite(0x080e, 0); vmwrite(0x480e, 0x67); vmwrite(0x4822, 0x8b); vmwrite(0x6814, 0);	/* TR busy TSS */
	vmwrite(0x6816, 0); vmwrite(0x4810, 0xffff);						/* GDTR */
	vmwrite(0x6818, 0); vmwrite(0x4812, 0xffff);						/* IDTR */
	vmwrite(0x681a, 0x400); vmwrite(0x681c, 0); vmwrite(0x681e, 0x100000); vmwrite(0x6820, 2);
	vmwrite(0x4824, 0); vmwrite(0x4826, 0); vmwrite(0x6822, 0);
	vmwrite(0x2802, 0); vmwrite(0x2806, 0);
	vmwrite(0x4016, 0);
}

static uint64_t mutate(uint64_t old)
{
	switch (next() % 5) {
	case 0: return next();
	case 1: return old ^ (1ull << (next() % 64));
	case 2: return old ^ (1ull << (next() % 32));
	case 3: return next() & 0xffff;
	default: return 0;
	}
}

/* VMCLEAR + VMPTRLD (launch state clear), then VMLAUNCH; returns how it ended. */
static int launch(uint64_t *reason)
{
	uint64_t fl;
	vmclear((uintptr_t)vmcs);
	vmptrld((uintptr_t)vmcs);
	/* VMX switches no GPRs: after an exit they hold what L2 left, so the asm
	 * saves RBP itself and declares every other one clobbered. */
	__asm__ volatile(
		"push %%rbp\n\t"
		"mov $0x6c16, %%rdx\n\t"		/* HOST_RIP = label 1 */
		"lea 1f(%%rip), %%rax\n\t"
		"vmwrite %%rax, %%rdx\n\t"
		"mov $0x6c14, %%rdx\n\t"		/* HOST_RSP = this stack */
		"vmwrite %%rsp, %%rdx\n\t"
		"vmlaunch\n"
		"1:\tpushfq\n\t"
		"popq %%rax\n\t"
		"pop %%rbp\n\t"
		"mov %%rax, %[fl]"
		: [fl] "=m"(fl)
		:
		: "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "cc", "memory");
	if (fl & RFLAGS_CF)
		return VMX_FAIL_INVALID;
	if (fl & RFLAGS_ZF)
		return VMX_FAIL_VALID;
	vmread(VMCS_EXIT_REASON, reason);
	return VMX_SUCCEED;			/* a VM exit (maybe an entry-failure exit) */
}

int main(int argc, char **argv)
{
	uint64_t n = 2000, seed = 1, counts[4] = { 0 }, reasons[64] = { 0 }, errors[32] = { 0 }, odd = 0;
	const char *v;

	for (int i = 1; i < argc; i++) {
		if ((v = arg_value(argv[i], "seed"))) {
			if (!parse_u64(v, &seed) || seed == 0)
				return usage(USAGE);
		} else if (!parse_u64(argv[i], &n)) {
			return usage(USAGE);
		}
	}
	rng = seed;
	trap_init();
	host_tr_init();
	uint32_t revision = (uint32_t)rdmsr(MSR_IA32_VMX_BASIC) & 0x7fffffffu;
	*(uint32_t *)vmxon_region = revision;
	*(uint32_t *)vmcs = revision;
	write_cr0(read_cr0() | CR0_NE);
	write_cr4(read_cr4() | CR4_VMXE);
	report(vmxon((uintptr_t)vmxon_region).outcome == VMX_SUCCEED, "VMXON");

	/* The unmutated baseline enters L2, whose first fetch hits the empty EPT. */
	uint64_t reason = 0;
	vmclear((uintptr_t)vmcs);
	vmptrld((uintptr_t)vmcs);
	baseline();
	int first = launch(&reason);
	report(first == VMX_SUCCEED && reason == 48, "the baseline enters L2 and exits on an EPT violation (reason %llu)",
	       (unsigned long long)reason);

	/* A #GP injected at entry meets the empty EPT while it is delivered: the
	 * EPT violation carries it as IDT-vectoring information (SDM 28.2.4). */
	baseline();
	vmwrite(0x4016, (1u << 31) | (1u << 11) | (3u << 8) | 13);	/* valid, error code, hardware exception */
	vmwrite(0x4018, 0x1234);
	uint64_t vectoring = 0, vectoring_code = 0;
	first = launch(&reason);
	vmread(0x4408, &vectoring);
	vmread(0x440a, &vectoring_code);
	report(first == VMX_SUCCEED && reason == 48 && vectoring == 0x80000b0d && vectoring_code == 0x1234,
	       "an exit during delivery of an injected #GP records it: reason %llu, IDT-vectoring 0x%llx, error code 0x%llx",
	       (unsigned long long)reason, (unsigned long long)vectoring, (unsigned long long)vectoring_code);

	/* The same with L2's code page mapped, so the delivery's own read of
	 * gate 13 (IDT base 0, L2-physical 0x68) meets the EPT. The EPT is then
	 * emptied again, with INVEPT, for the random launches. */
	l2_code[0] = 0xf4;	/* hlt */
	ept_pt[0x100] = (uint64_t)(uintptr_t)l2_code | 7 | 6 << 3;
	ept_pd[0] = (uint64_t)(uintptr_t)ept_pt | 7;
	ept_pdpt[0] = (uint64_t)(uintptr_t)ept_pd | 7;
	((uint64_t *)ept_pml4)[0] = (uint64_t)(uintptr_t)ept_pdpt | 7;
	baseline();
	vmwrite(0x4016, (1u << 31) | (1u << 11) | (3u << 8) | 13);
	vmwrite(0x4018, 0x1234);
	first = launch(&reason);
	uint64_t gpa = 0;
	vmread(0x4408, &vectoring);
	vmread(0x440a, &vectoring_code);
	vmread(0x2400, &gpa);
	report(first == VMX_SUCCEED && reason == 48 && vectoring == 0x80000b0d && gpa == 0x68,
	       "the IDT read of an injected #GP exits: reason %llu, IDT-vectoring 0x%llx, L2-physical 0x%llx",
	       (unsigned long long)reason, (unsigned long long)vectoring, (unsigned long long)gpa);

	/* L2's own #UD (UD2) with a GDT at L2-physical 0 and an IDT at 0x1000
	 * that EPT12 maps but L2 never touched: the delivery reads both and
	 * pushes on the code page, and the handler's fetch at 0x200000, outside
	 * EPT12, is the exit. */
	l2_code[0] = 0x0f;
	l2_code[1] = 0x0b;
	l2_gdt[2] = 0x00cf9b000000ffffull;				/* 0x10: flat 32-bit code */
	l2_gdt[3] = 0x00cf93000000ffffull;				/* 0x18: flat data */
	l2_idt[6] = 0x00208e0000100000ull;				/* #UD: 0x10:0x200000, interrupt gate */
	ept_pt[0] = (uint64_t)(uintptr_t)l2_gdt | 7 | 6 << 3;
	ept_pt[1] = (uint64_t)(uintptr_t)l2_idt | 7 | 6 << 3;
	struct inv_descriptor all = { 0 };
	invept(2, &all);
	baseline();
	vmwrite(0x6818, 0x1000);					/* IDTR base */
	vmwrite(0x681c, 0x100800);					/* RSP, in the code page */
	first = launch(&reason);
	uint64_t q = 0;
	vmread(0x4408, &vectoring);
	vmread(0x2400, &gpa);
	vmread(0x6400, &q);
	report(first == VMX_SUCCEED && reason == 48 && gpa == 0x200000 && (q & 7) == 4 && !(vectoring & (1u << 31)),
	       "L2's #UD is delivered through untouched IDT and GDT pages: reason %llu, fetch at 0x%llx (qualification 0x%llx)",
	       (unsigned long long)reason, (unsigned long long)gpa, (unsigned long long)q);

	/* An interrupt of L1's is pending when VM entry injects external
	 * interrupt 0x30: the entry delivers it first, and the external-interrupt
	 * exit comes at the first instruction of L2's handler, with nothing in
	 * IDT-vectoring (SDM 27.6, 28.2.4). L1's own timer, with count 1 and
	 * interrupts off, makes the interrupt pending. */
	l2_idt[0x30] = 0x00108e0000100010ull;			/* 0x10:0x100010, interrupt gate */
	l2_code[0x10] = 0xf4;						/* its handler: hlt */
	set_irq_handler(0x40, l1_timer);
	pic_mask_all();
	apic_enable(0xff);
	apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIV_1);
	apic_write(APIC_LVT_TIMER, APIC_TIMER_ONESHOT | 0x40);
	apic_write(APIC_TIMER_INITIAL, 1);
	baseline();
	vmwrite(0x6818, 0x1000);					/* IDTR base */
	vmwrite(0x681c, 0x100800);					/* RSP, in the code page */
	vmwrite(0x6820, 0x202);						/* RFLAGS.IF, as injection needs */
	vmwrite(0x4016, (1u << 31) | 0x30);				/* external interrupt 0x30 */
	first = launch(&reason);
	uint64_t rip = 0, rsp = 0;
	vmread(0x4408, &vectoring);
	vmread(0x681e, &rip);
	vmread(0x681c, &rsp);
	const uint32_t *frame = (const uint32_t *)&l2_code[0x7f4];
	report(first == VMX_SUCCEED && reason == 1 && !(vectoring & (1u << 31)) && rip == 0x100010 && rsp == 0x1007f4 &&
	       frame[0] == 0x100000 && frame[1] == 0x10 && frame[2] == 0x202,
	       "an L1 interrupt pending at an injecting entry exits after the delivery: reason %llu, RIP 0x%llx, "
	       "RSP 0x%llx, frame %x:%x flags 0x%x, IDT-vectoring 0x%llx",
	       (unsigned long long)reason, (unsigned long long)rip, (unsigned long long)rsp, frame[1], frame[0],
	       frame[2], (unsigned long long)vectoring);
	safe_halt();		/* sti; hlt: the interrupt, still pending, wakes L1 */
	cli();
	report(l1_timer_irqs == 1, "L1 then takes its own timer interrupt (%llu)", (unsigned long long)l1_timer_irqs);

	/* A software interrupt (INT 0x30, 2 bytes) injected with its gate
	 * outside EPT12: the gate read exits, and the IDT-vectoring information
	 * keeps type 4 and the VM-exit instruction length the entry's 2. */
	baseline();
	vmwrite(0x6818, 0x300000);					/* IDTR base, not in EPT12 */
	vmwrite(0x681c, 0x100800);
	vmwrite(0x4016, (1u << 31) | (4u << 8) | 0x30);			/* software interrupt 0x30 */
	vmwrite(0x401a, 2);						/* VM-entry instruction length */
	first = launch(&reason);
	uint64_t length = 0;
	vmread(0x4408, &vectoring);
	vmread(0x2400, &gpa);
	vmread(0x440c, &length);
	report(first == VMX_SUCCEED && reason == 48 && vectoring == 0x80000430 && gpa == 0x300180 && length == 2,
	       "an injected INT 0x30 whose gate is outside EPT12 exits with it: reason %llu, IDT-vectoring 0x%llx, "
	       "L2-physical 0x%llx, instruction length %llu", (unsigned long long)reason, (unsigned long long)vectoring,
	       (unsigned long long)gpa, (unsigned long long)length);

	/* L2's own #UD at CPL 3: the delivery switches to SS0:ESP0 of its
	 * 32-bit TSS (SDM Vol. 3A 6.12.1), in pages EPT12 maps but L2 never
	 * touched, and the handler's fetch at 0x200000 is the exit. */
	l2_gdt[4] = 0x00cffb000000ffffull;				/* 0x20: flat 32-bit code, DPL 3 */
	l2_gdt[5] = 0x00cff3000000ffffull;				/* 0x28: flat data, DPL 3 */
	l2_tss[1] = 0x104000;						/* ESP0: top of L2-physical 0x103000 */
	l2_tss[2] = 0x18;						/* SS0 */
	ept_pt[2] = (uint64_t)(uintptr_t)l2_tss | 7 | 6 << 3;
	ept_pt[0x103] = (uint64_t)(uintptr_t)l2_kstack | 7 | 6 << 3;
	invept(2, &all);
	baseline();
	vmwrite(0x6818, 0x1000);					/* IDTR base */
	vmwrite(0x681c, 0x100800);					/* the user stack, in the code page */
	for (int i = 0; i < 6; i++) {					/* CS 0x23, the others 0x2b: CPL 3 */
		vmwrite(0x0800 + 2 * i, i == 1 ? 0x23 : 0x2b);
		vmwrite(0x4814 + 2 * i, i == 1 ? 0xc0fb : 0xc0f3);
	}
	vmwrite(0x6814, 0x2000);					/* TR base: the TSS */
	first = launch(&reason);
	uint64_t kstack_eip = 0;
	vmread(0x2400, &gpa);
	vmread(0x6400, &q);
	memcpy(&kstack_eip, &l2_kstack[4096 - 20], 4);
	report(first == VMX_SUCCEED && reason == 48 && gpa == 0x200000 && (q & 7) == 4 && kstack_eip == 0x100000,
	       "a CPL-3 #UD switches to an untouched TSS stack: reason %llu, fetch at 0x%llx, EIP 0x%llx pushed there",
	       (unsigned long long)reason, (unsigned long long)gpa, (unsigned long long)kstack_eip);

	((uint64_t *)ept_pml4)[0] = 0;
	invept(2, &all);

	printf("vmcs-fuzz: %llu launches, seed %llu\n", (unsigned long long)n, (unsigned long long)seed);
	for (uint64_t i = 0; i < n; i++) {
		baseline();
		for (uint64_t m = 1 + next() % 3; m; m--) {
			uint32_t f = guest_fields[next() % NFIELDS];
			uint64_t old = 0;
			vmread(f, &old);
			vmwrite(f, mutate(old));
		}
		int r = launch(&reason);
		counts[r]++;
		if (r == VMX_FAIL_VALID) {
			uint64_t e = 0;
			vmread(VMCS_VM_INSTRUCTION_ERROR, &e);
			errors[e < 32 ? e : 31]++;
			odd += e != 7 && e != 8;
		} else if (r == VMX_SUCCEED) {
			reasons[(reason & 0xffff) < 64 ? (reason & 0xffff) : 63]++;
		} else {
			odd++;
		}
	}
	printf("vmcs-fuzz: VMfailValid %llu (error 7: %llu, 8: %llu), VMfailInvalid %llu, VM exits %llu\n",
	       (unsigned long long)counts[VMX_FAIL_VALID], (unsigned long long)errors[7], (unsigned long long)errors[8],
	       (unsigned long long)counts[VMX_FAIL_INVALID], (unsigned long long)counts[VMX_SUCCEED]);
	for (int r = 0; r < 64; r++)
		if (reasons[r])
			printf("vmcs-fuzz:   exit reason %d: %llu\n", r, (unsigned long long)reasons[r]);
	report(odd == 0, "every launch ended in VMfailValid 7/8 or a VM exit (%llu others)", (unsigned long long)odd);
	report(reasons[33] > 0 && counts[VMX_FAIL_VALID] > 0 && reasons[48] > 0,
	       "the runs cover entry-failure exits, VMfailValid and real entries");
	vmxoff();
	return report_summary();
}
