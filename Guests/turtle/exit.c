/*
 * exit.c - turtle's VM-exit handlers (SDM Vol. 3C chapter 28 for the exit
 * information, Appendix C for the basic exit reasons).
 *
 * entry.S saves L2's GPRs into l2_gprs and calls turtle_handle_exit(), which
 * returns 0 to VMRESUME L2 or 1 to stop the run.
 */
#include "turtle.h"
#include "decode.h"

#define RFLAGS_IF	(1ull << 9)
#define AR_L		(1ull << 13)

#define COM1		0x3f8
#define COM1_LSR	(COM1 + 5)
#define DEBUG_EXIT	0xf4
#define POST_PORT	0x80

uint64_t exit_counts[EXIT_REASON_MAX + 1];
uint64_t exit_other;
bool l2_finished;
uint32_t l2_status;

const char *stop_why = "";
static uint64_t hc_print, hc_nop, hc_unknown, port80_outs, mmio_reads, mmio_writes, preempt_exits;
static uint64_t timer_exits, bad_interrupts, exception_exits, halted_wakeups, vectored_exits;
static uint64_t hlt_sleeps, window_polls, vmx_insns;
static uint64_t mtf_exits;		/* since HC_MTF set the monitor trap flag */
static uint64_t l2_cr8, l2_tsc_aux, l2_xcr0;	/* L2's CR8 (intercept=cr8), IA32_TSC_AUX (intercept=rdtsc), XCR0 */
static bool rip_advanced;		/* this exit's handler moved L2 past an instruction */
static bool polling;			/* the preemption timer looks for an interrupt window */
static uint64_t mmio_last_gpa, mmio_last_value;
static bool l2_line_start = true;

static const char *const reason_names[EXIT_REASON_MAX + 1] = {
	[0] = "exception or NMI", [1] = "external interrupt", [2] = "triple fault",
	[3] = "INIT signal", [4] = "start-up IPI", [5] = "I/O SMI", [6] = "other SMI",
	[7] = "interrupt window", [8] = "NMI window", [9] = "task switch", [10] = "CPUID",
	[11] = "GETSEC", [12] = "HLT", [13] = "INVD", [14] = "INVLPG", [15] = "RDPMC",
	[16] = "RDTSC", [17] = "RSM", [18] = "VMCALL", [19] = "VMCLEAR", [20] = "VMLAUNCH",
	[21] = "VMPTRLD", [22] = "VMPTRST", [23] = "VMREAD", [24] = "VMRESUME",
	[25] = "VMWRITE", [26] = "VMXOFF", [27] = "VMXON", [28] = "control-register access",
	[29] = "MOV DR", [30] = "I/O instruction", [31] = "RDMSR", [32] = "WRMSR",
	[33] = "VM-entry failure: invalid guest state", [34] = "VM-entry failure: MSR loading",
	[36] = "MWAIT", [37] = "monitor trap flag", [39] = "MONITOR", [40] = "PAUSE",
	[41] = "VM-entry failure: machine-check event", [43] = "TPR below threshold",
	[44] = "APIC access", [45] = "virtualized EOI", [46] = "GDTR/IDTR access",
	[47] = "LDTR/TR access", [48] = "EPT violation", [49] = "EPT misconfiguration",
	[50] = "INVEPT", [51] = "RDTSCP", [52] = "VMX-preemption timer expired",
	[53] = "INVVPID", [54] = "WBINVD", [55] = "XSETBV", [56] = "APIC write",
	[57] = "RDRAND", [58] = "INVPCID", [59] = "VMFUNC", [60] = "ENCLS", [61] = "RDSEED",
	[62] = "page-modification log full", [63] = "XSAVES", [64] = "XRSTORS",
	[66] = "SPP-related event", [67] = "UMWAIT", [68] = "TPAUSE", [69] = "LOADIWKEY",
};

const char *exit_reason_name(uint32_t reason)
{
	if (reason <= EXIT_REASON_MAX && reason_names[reason])
		return reason_names[reason];
	return "unknown";
}

static int stop(const char *why)
{
	stop_why = why;
	return 1;
}

/* ---- L2 state helpers ---- */

static void set_rip(uint64_t rip)
{
	VMW(GUEST_RIP, rip);
	rip_advanced = true;
}

static void skip_instruction(uint64_t len)
{
	set_rip(vmr(GUEST_RIP) + len);
}

/* VM-exit instruction length (SDM 28.2.5), for exits that set it. */
static uint64_t exit_insn_len(uint64_t fallback)
{
	uint64_t len = vmr(EXIT_INSTRUCTION_LEN);
	return (len >= 1 && len <= 15) ? len : fallback;
}

static uint64_t get_reg(int r)
{
	return r == R_RSP ? vmr(GUEST_RSP) : l2_gprs[r];
}

static void set_reg(int r, uint64_t v)
{
	if (r == R_RSP)
		VMW(GUEST_RSP, v);
	else
		l2_gprs[r] = v;
}

/* Writes `size` bytes of v into register r as a MOV would: 8/16-bit writes
 * merge, 32-bit writes zero-extend (SDM Vol. 1 3.4.1.1), high8 = AH..BH. */
static void write_reg_sized(int r, int size, bool high8, uint64_t v)
{
	uint64_t old = get_reg(r);

	switch (size) {
	case 1:
		if (high8)
			set_reg(r, (old & ~0xff00ull) | ((v & 0xff) << 8));
		else
			set_reg(r, (old & ~0xffull) | (v & 0xff));
		break;
	case 2: set_reg(r, (old & ~0xffffull) | (v & 0xffff)); break;
	case 4: set_reg(r, v & 0xffffffffull); break;
	default: set_reg(r, v); break;
	}
}

static uint64_t size_mask(int size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

/* ---- L2 output ---- */

static void l2_putc(char c)
{
	if (cfg.prefix && l2_line_start)
		serial_write("[L2] ", 5);
	serial_putc(c);
	l2_line_start = (c == '\n');
}

/* ---- 30: I/O instruction (qualification: SDM Table 28-5) ---- */

static int handle_io(void)
{
	uint64_t q = vmr(EXIT_QUALIFICATION);
	int size = (int)(q & 7) + 1;
	bool in = (q >> 3) & 1, string = (q >> 4) & 1, rep = (q >> 5) & 1;
	uint16_t port = (uint16_t)(q >> 16);
	uint64_t value = l2_gprs[R_RAX] & size_mask(size);

	if (string) {
		printf("turtle: L2 string I/O (%s%s, port 0x%x, size %d) is not supported\n",
		       rep ? "REP " : "", in ? "INS" : "OUTS", port, size);
		return stop("string I/O");
	}
	if (in) {
		uint64_t result = size_mask(size);	/* unclaimed ports read all ones */
		if (port == COM1_LSR)
			result = 0x60;			/* THR empty, transmitter empty */
		else if (port >= COM1 && port <= COM1 + 7)
			result = 0;
		write_reg_sized(R_RAX, size, false, result);
	} else if (port == COM1) {
		l2_putc((char)value);
	} else if (port >= DEBUG_EXIT && port <= DEBUG_EXIT + 3) {
		skip_instruction(exit_insn_len(1));
		l2_finished = true;
		l2_status = (uint32_t)value;
		return stop("L2 wrote to the debug-exit port");
	} else if (port == POST_PORT) {
		port80_outs++;
	} else if (port >= WORK_REPORT_PORT && port <= WORK_REPORT_HIGH + 3) {
		/* L2's unit-of-work report (guest.h) goes on to L0, which records
		 * it in the trace. Only io=all gets here: the I/O bitmaps leave
		 * these ports to L0 (vmcs.c). */
		if (size == 4)
			outl(port, (uint32_t)value);
	}
	skip_instruction(exit_insn_len(1));
	return 0;
}

/* ---- 31/32: RDMSR/WRMSR ---- */

/* VM-entry interruption information (SDM 25.8.3): valid, type 3. */
static void inject_ud(void)
{
	VMW(ENTRY_INTR_INFO, (1u << 31) | (3u << 8) | 6);
}

static void inject_gp(void)
{
	/* VM-entry interruption information (SDM 25.8.3): valid, deliver
	 * error code, type 3 (hardware exception), vector 13. */
	VMW(ENTRY_INTR_INFO, (1u << 31) | (1u << 11) | (3u << 8) | 13);
	VMW(ENTRY_EXCEPTION_ERRCODE, 0);
}

static int handle_msr(bool write)
{
	uint32_t msr = (uint32_t)l2_gprs[R_RCX];

	if (msr == MSR_IA32_TSC_AUX) {
		/* intercept=rdtsc: RDTSCP reads it from turtle (bits 31:0). */
		if (write)
			l2_tsc_aux = (uint32_t)l2_gprs[R_RAX];
		else {
			l2_gprs[R_RAX] = l2_tsc_aux;
			l2_gprs[R_RDX] = 0;
		}
		skip_instruction(exit_insn_len(2));
		return 0;
	}
	if (msr != MSR_IA32_APIC_BASE) {
		printf("turtle: L2 %s of MSR 0x%x: not emulated, injecting #GP\n",
		       write ? "WRMSR" : "RDMSR", msr);
		inject_gp();
		return 0;	/* a fault: RIP stays at the instruction */
	}
	if (!write) {
		/* xAPIC at 0xfee00000, enabled (bit 11), BSP (bit 8). */
		l2_gprs[R_RAX] = 0xfee00900u;
		l2_gprs[R_RDX] = 0;
	}
	skip_instruction(exit_insn_len(2));
	return 0;
}

/* ---- 18: VMCALL hypercalls ---- */

static void print_l2_string(uint64_t gpa)
{
	for (unsigned i = 0; i < 4096; i++) {
		const char *p = l2_ptr(gpa + i, 1);
		if (!p) {
			printf("\nturtle: print hypercall: string at 0x%llx runs out of L2 memory\n",
			       (unsigned long long)gpa);
			return;
		}
		if (!*p)
			return;
		l2_putc(*p);
	}
}

static int handle_vmcall(void)
{
	uint64_t nr = l2_gprs[R_RAX], arg = l2_gprs[R_RBX];
	int ret = 0;

	switch (nr) {
	case HC_PRINT:
		hc_print++;
		print_l2_string(arg);
		l2_gprs[R_RAX] = 0;
		break;
	case HC_DONE:
		l2_finished = true;
		l2_status = (uint32_t)arg;
		ret = stop("L2 made the \"done\" hypercall");
		break;
	case HC_NOP:
		hc_nop++;
		l2_gprs[R_RAX] = 0;
		break;
	case HC_MTF: {
		/* The monitor trap flag (SDM 26.5.2) for a stretch of L2's code:
		 * every instruction there that does not exit itself gives exit 37. */
		if (arg && !primary_control_allowed(PROC_MONITOR_TRAP_FLAG)) {
			l2_gprs[R_RAX] = ~0ull;
			break;
		}
		proc_ctl = arg ? proc_ctl | PROC_MONITOR_TRAP_FLAG : proc_ctl & ~PROC_MONITOR_TRAP_FLAG;
		VMW(PROC_BASED_CONTROLS, proc_ctl | (cfg.evmcs && polling ? PROC_MONITOR_TRAP_FLAG : 0));
		l2_gprs[R_RAX] = arg ? 0 : mtf_exits;
		mtf_exits = 0;
		break;
	}
	default:
		if (hc_unknown++ == 0)
			printf("turtle: unknown hypercall %llu (returning -1)\n", (unsigned long long)nr);
		l2_gprs[R_RAX] = ~0ull;
		break;
	}
	skip_instruction(exit_insn_len(3));
	return ret;
}

/* ---- L2 linear -> L2 physical, for instruction fetches ---- */

struct l2_paging {
	uint64_t cr0, cr3, cr4;
	bool lma, mode64;
	uint64_t cs_base;
};

static void read_paging(struct l2_paging *pg)
{
	pg->cr0 = vmr(GUEST_CR0);
	pg->cr3 = pg->cr4 = 0;
	pg->lma = false;
	if (pg->cr0 & CR0_PG) {
		/* paging=shadow: GUEST_CR3 is the shadow root; L2's CR3 is turtle's. */
		pg->cr3 = l2mem->cr3_read(vmr(GUEST_CR3));
		pg->cr4 = vmr(GUEST_CR4);
		/* "IA-32e mode guest" is updated with EFER.LMA on every exit
		 * (SDM 28.2 / 28.3.1); EFER itself only if "save EFER". */
		if (exit_ctl & EXIT_SAVE_EFER)
			pg->lma = (vmr(GUEST_IA32_EFER) & EFER_LMA) != 0;
		else
			pg->lma = (vmr(ENTRY_CONTROLS) & ENTRY_IA32E_GUEST) != 0;
	}
	pg->mode64 = pg->lma && (vmr(GUEST_CS_AR) & AR_L);
	pg->cs_base = pg->mode64 ? 0 : vmr(GUEST_CS_BASE);
}

static bool read_pte(uint64_t gpa, int size, uint64_t *out)
{
	const void *p = l2_ptr(gpa, size);
	if (!p)
		return false;
	*out = size == 8 ? *(const uint64_t *)p : *(const uint32_t *)p;
	return true;
}

#define PTE_P	1ull
#define PTE_PS	(1ull << 7)
#define ADDR52	0x000ffffffffff000ull

/* SDM Vol. 3A chapter 4: 32-bit, PAE and 4-level paging (no permission
 * checks: turtle only reads what L2 is executing). */
static bool l2_translate(const struct l2_paging *pg, uint64_t lin, uint64_t *gpa)
{
	uint64_t e;

	if (!(pg->cr0 & CR0_PG)) {
		*gpa = lin & 0xffffffffull;
		return true;
	}
	if (!(pg->cr4 & CR4_PAE)) {
		uint32_t l = (uint32_t)lin;
		if (!read_pte((pg->cr3 & 0xfffff000u) + ((l >> 22) << 2), 4, &e) || !(e & PTE_P))
			return false;
		if ((e & PTE_PS) && (pg->cr4 & CR4_PSE)) {
			*gpa = (e & 0xffc00000u) | (l & 0x3fffff);
			return true;
		}
		if (!read_pte((e & 0xfffff000u) + (((l >> 12) & 0x3ff) << 2), 4, &e) || !(e & PTE_P))
			return false;
		*gpa = (e & 0xfffff000u) | (l & 0xfff);
		return true;
	}
	uint64_t table;
	int level;
	if (pg->lma) {
		table = pg->cr3 & ADDR52;
		level = 4;
	} else {
		if (!read_pte((pg->cr3 & 0xffffffe0u) + ((lin >> 30) & 3) * 8, 8, &e) || !(e & PTE_P))
			return false;
		table = e & ADDR52;
		level = 2;
	}
	for (; level >= 1; level--) {
		int shift = 12 + 9 * (level - 1);
		if (!read_pte(table + ((lin >> shift) & 511) * 8, 8, &e) || !(e & PTE_P))
			return false;
		if (level == 1 || ((level == 2 || level == 3) && (e & PTE_PS))) {
			uint64_t page = (e & ADDR52) & ~((1ull << shift) - 1);
			*gpa = page | (lin & ((1ull << shift) - 1));
			return true;
		}
		table = e & ADDR52;
	}
	return false;
}

/* Copies up to n bytes between L2's linear memory at `lin` and buf (into
 * L2's memory when `write`); returns how many. */
static int l2_linear_copy(const struct l2_paging *pg, uint64_t lin, uint8_t *buf, int n, bool write)
{
	int got = 0;

	while (got < n) {
		uint64_t gpa;
		if (!l2_translate(pg, lin + got, &gpa))
			break;
		int chunk = (int)(4096 - ((lin + got) & 0xfff));
		if (chunk > n - got)
			chunk = n - got;
		uint8_t *p = l2_ptr(gpa, chunk);
		if (!p)
			break;
		for (int i = 0; i < chunk; i++) {
			if (write)
				p[i] = buf[got + i];
			else
				buf[got + i] = p[i];
		}
		got += chunk;
	}
	return got;
}

/* Copies up to n bytes of L2's code at linear `lin`; returns how many. */
static int fetch_code(const struct l2_paging *pg, uint64_t lin, uint8_t *buf, int n)
{
	return l2_linear_copy(pg, lin, buf, n, false);
}

/* ---- 48: EPT violation (qualification: SDM Table 28-7) ---- */

static int mmio_access(uint64_t gpa, bool write);

static int handle_ept_violation(void)
{
	uint64_t q = vmr(EXIT_QUALIFICATION);
	uint64_t gpa = vmr(GUEST_PHYSICAL_ADDRESS);
	uint64_t idt_vec = vmr(IDT_VECTORING_INFO);

	if (idt_vec & (1u << 31)) {
		printf("turtle: EPT violation at L2-physical 0x%llx during event delivery (IDT-vectoring info 0x%llx): not supported\n",
		       (unsigned long long)gpa, (unsigned long long)idt_vec);
		return stop("EPT violation during event delivery");
	}
	if (q & 4) {
		printf("turtle: L2 fetched an instruction from L2-physical 0x%llx, which is not RAM (RIP 0x%llx, qualification 0x%llx)\n",
		       (unsigned long long)gpa, (unsigned long long)vmr(GUEST_RIP), (unsigned long long)q);
		return stop("instruction fetch from unbacked memory");
	}
	return mmio_access(gpa, (q & 2) != 0);
}

/* An access of L2's at RIP to L2-physical `gpa` outside its RAM: turtle's
 * APIC for L2, or the toy device. The instruction is decoded at RIP;
 * `write` is the direction the exit reported. */
static int mmio_access(uint64_t gpa, bool write)
{
	uint64_t rip = vmr(GUEST_RIP);
	struct l2_paging pg;
	uint8_t code[15];
	struct mmio_insn d;
	read_paging(&pg);
	int n = fetch_code(&pg, pg.cs_base + rip, code, 15);
	const char *err = n ? decode_mov(code, n, pg.mode64, &d) : "cannot read the instruction";
	if (!err && d.write != write)
		err = "decoded direction disagrees with the exit";
	if (err) {
		printf("turtle: L2 access to L2-physical 0x%llx outside its RAM (RIP 0x%llx): %s; bytes",
		       (unsigned long long)gpa, (unsigned long long)rip, err);
		for (int i = 0; i < n; i++)
			printf(" %02x", code[i]);
		printf("\n");
		return stop("an access outside L2 RAM that the MMIO device cannot decode");
	}

	if (vapic_claims(gpa)) {
		/* 32-bit accesses at 16-byte boundaries (SDM Vol. 3A 11.4.1); any
		 * other access, model-specific there, reads 0 and writes nothing. */
		uint32_t offset = (uint32_t)(gpa - VAPIC_BASE);
		bool whole = d.size == 4 && !(offset & 0xf);
		if (d.write && whole) {
			const char *why = vapic_write(offset, (uint32_t)(d.reg < 0 ? d.imm : get_reg(d.reg) >> (d.high8 ? 8 : 0)));
			if (why) {
				printf("turtle: %s\n", why);
				return stop(why);
			}
		} else if (!d.write) {
			write_reg_sized(d.reg, d.dst_size, d.high8, whole ? vapic_read(offset) : 0);
		}
		set_rip(rip + d.len);
		return 0;
	}

	/* The toy device: every other address outside L2 RAM reads all ones
	 * and swallows writes, which it counts and remembers. */
	if (d.write) {
		uint64_t v = d.reg < 0 ? d.imm : get_reg(d.reg) >> (d.high8 ? 8 : 0);
		mmio_writes++;
		mmio_last_gpa = gpa;
		mmio_last_value = v & size_mask(d.size);
	} else {
		mmio_reads++;
		write_reg_sized(d.reg, d.dst_size, d.high8, size_mask(d.size));
	}
	set_rip(rip + d.len);
	return 0;
}

/* ---- paging=shadow: #PF exits (turtle/shadow.c, docs/SHADOW.md) ---- */

/* A #PF exit the paging strategy asked for (paging=shadow): the
 * qualification is the linear address, the error code the access (SDM
 * 27.2.1). A hidden fault is fixed and L2 retries; L2's own fault is
 * injected with CR2, which VMX does not switch, so turtle loads it; an
 * access its tables map outside its RAM goes to the MMIO device. */
static int handle_paging_fault(void)
{
	uint64_t lin = vmr(EXIT_QUALIFICATION);
	uint32_t code = (uint32_t)vmr(EXIT_INTR_ERRCODE);
	struct l2mem_fault_info f;
	bool nxe = (exit_ctl & EXIT_SAVE_EFER) && (vmr(GUEST_IA32_EFER) & EFER_NXE);
	switch (l2mem->page_fault(lin, code, nxe, &f)) {
	case L2MEM_FIXED:
		return 0;
	case L2MEM_INJECT:
		__asm__ volatile("mov %0, %%cr2" : : "r"(lin));
		VMW(ENTRY_INTR_INFO, (1u << 31) | (1u << 11) | (3u << 8) | 14);
		VMW(ENTRY_EXCEPTION_ERRCODE, f.error_code);
		return 0;
	case L2MEM_OUTSIDE:
		if (code & PF_I) {
			printf("turtle: L2 fetched from L2-physical 0x%llx, outside its RAM (RIP 0x%llx)\n",
			       (unsigned long long)f.gpa, (unsigned long long)vmr(GUEST_RIP));
			return stop("instruction fetch from unbacked memory");
		}
		return mmio_access(f.gpa, (code & PF_W) != 0);
	default:
		return stop("paging: a #PF the strategy cannot handle (no active shadow root)");
	}
}

/* ---- 12: HLT (SDM Vol. 2A "HLT") ---- */

/* ept=off: can turtle's APIC, which L2 programs itself, still interrupt?
 * Its timer counts down unmasked, or a vector waits in its IRR. */
static bool own_apic_can_interrupt(void)
{
	if (apic_read(APIC_TIMER_CURRENT) && !(apic_read(APIC_LVT_TIMER) & APIC_LVT_MASKED))
		return true;
	for (uint32_t reg = 0x200; reg < 0x280; reg += 0x10)	/* IRR (SDM Vol. 3A 11.8.4) */
		if (apic_read(reg))
			return true;
	return false;
}

static int halted_forever(uint64_t rip)
{
	printf("turtle: L2 halted at RIP 0x%llx with no deliverable interrupt and no APIC timer armed: "
	       "it can never wake\n", (unsigned long long)rip);
	return stop("L2 halted with nothing to wake it");
}

/* L2 sleeps until its APIC has an interrupt for it. turtle sleeps in its
 * place: its own timer, which runs L2's, wakes it. */
/* A control-register access (SDM 28.2.1, Table 28-3: CR in 3:0, access
 * type in 5:4, GPR in 11:8). CR3 moves exit under intercept=cr3; a CR0 or
 * CR4 write that changes a bit turtle owns (cr0mask, cr4mask) updates L2's
 * view, the read shadow, and leaves the owned bits of the real register as
 * they were; CLTS clears TS in the shadow. */
static int handle_cr_access(void)
{
	uint64_t q = vmr(EXIT_QUALIFICATION);
	int cr = (int)(q & 0xf), type = (int)((q >> 4) & 3), gpr = (int)((q >> 8) & 0xf);
	uint32_t guest = cr == 0 ? GUEST_CR0 : GUEST_CR4, shadow = cr == 0 ? CR0_READ_SHADOW : CR4_READ_SHADOW;
	uint64_t mask = cr == 0 ? cfg.cr0_mask : cfg.cr4_mask;

	if (cr == 3 && type == 0) {
		/* The paging strategy decides GUEST_CR3 (paging=shadow: the
		 * shadow root of L2's CR3, which turtle keeps). */
		VMW(GUEST_CR3, l2mem->cr3_load(get_reg(gpr)));
	} else if (cr == 3 && type == 1) {
		set_reg(gpr, l2mem->cr3_read(vmr(GUEST_CR3)));
	} else if (cr == 8 && type == 0) {
		/* intercept=cr8: bits 63:4 set are #GP(0) (Vol. 3A 2.5). */
		if (get_reg(gpr) > 0xf) {
			inject_gp();
			return 0;
		}
		l2_cr8 = get_reg(gpr);
	} else if (cr == 8 && type == 1)
		set_reg(gpr, l2_cr8);
	else if ((cr == 0 || cr == 4) && type == 0) {
		uint64_t v = get_reg(gpr), live = 0;
		VMW(shadow, v);
		if (cr == 0 && l2mem->cr0_write) {
			/* Owned bits the strategy lets through (paging=shadow: WP). */
			const char *why = l2mem->cr0_write(v, &live);
			if (why)
				return stop(why);
		}
		VMW(guest, (vmr(guest) & mask & ~live) | (v & (~mask | live)));
	} else if (cr == 0 && type == 2) {
		VMW(CR0_READ_SHADOW, vmr(CR0_READ_SHADOW) & ~(uint64_t)CR0_TS);
	} else if (cr == 0 && type == 3) {
		/* LMSW: bits 3:0 from the source data (31:16), PE never cleared. */
		uint64_t src = (q >> 16) & 0xf, sh = vmr(CR0_READ_SHADOW), g = vmr(GUEST_CR0);
		VMW(CR0_READ_SHADOW, (sh & ~0xfull) | src | (sh & 1));
		VMW(GUEST_CR0, (g & ~(0xfull & ~mask)) | ((src | (g & 1)) & 0xf & ~mask));
	}
	else {
		printf("turtle: CR access exit with qualification 0x%llx it did not ask for\n", (unsigned long long)q);
		return stop("unexpected CR access");
	}
	skip_instruction(exit_insn_len(3));
	return 0;
}

/* CPUID exits unconditionally (SDM 26.1.2): turtle answers with its own
 * CPUID, minus VMX (CPUID.1:ECX bit 5), which it does not offer L2. */
static int handle_cpuid(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
			 : "a"((uint32_t)l2_gprs[R_RAX]), "c"((uint32_t)l2_gprs[R_RCX]));
	if ((uint32_t)l2_gprs[R_RAX] == 1)
		c &= ~(1u << 5);
	l2_gprs[R_RAX] = a;
	l2_gprs[R_RBX] = b;
	l2_gprs[R_RCX] = c;
	l2_gprs[R_RDX] = d;
	skip_instruction(exit_insn_len(2));
	return 0;
}

static int handle_hlt(void)
{
	uint64_t rip = vmr(GUEST_RIP);

	if (!(vmr(GUEST_RFLAGS) & RFLAGS_IF)) {
		printf("turtle: L2 halted with interrupts off at RIP 0x%llx: it can never wake\n",
		       (unsigned long long)rip);
		return stop("L2 halted with interrupts off");
	}
	set_rip(rip + exit_insn_len(1));
	if (l2_uses_turtles_apic()) {
		/* L2 uses turtle's APIC: it waits in the HLT activity state (SDM
		 * 25.4.2) for an interrupt, which then exits to turtle. */
		if (vapic_deliverable() >= 0)
			return 0;
		if (!own_apic_can_interrupt())
			return halted_forever(rip);
		VMW(GUEST_ACTIVITY_STATE, 1);
		return 0;
	}
	while (vapic_deliverable() < 0) {
		if (!vapic_timer_armed())
			return halted_forever(rip);
		hlt_sleeps++;
		safe_halt();		/* sti; hlt: a pending timer interrupt still wakes it */
		cli();
	}
	return 0;
}

/* turtle's timer interrupt while turtle itself runs with interrupts on. */
void turtle_timer_interrupt(struct regs *r)
{
	(void)r;
	vapic_timer_fired();
	apic_eoi();
}

/* ---- interrupts into L2 ---- */

/*
 * There is no interrupt-window exiting on this platform (README), so while
 * an interrupt waits for L2 to enable interrupts, the VMX-preemption timer
 * brings L2 back every WINDOW_POLL_TICKS to look again (unless preempt=N
 * already does).
 */
#define WINDOW_POLL_TICKS	10000

/* L2's next instruction is a HLT (F4). */
static bool l2_at_hlt(void)
{
	struct l2_paging pg;
	uint8_t b = 0;
	read_paging(&pg);
	return fetch_code(&pg, pg.cs_base + vmr(GUEST_RIP), &b, 1) == 1 && b == 0xf4;
}

static void poll_for_window(bool on)
{
	if (cfg.evmcs) {
		/* eVMCS v1 has no preemption-timer value (TLFS
		 * HV_VMX_ENLIGHTENED_VMCS): the monitor trap flag polls instead,
		 * an exit after each of L2's instructions while the interrupt
		 * waits (SDM 26.5.2). Not over a HLT (that of "sti; hlt"), which
		 * exits by itself: Terrapin's MTF cannot step over a HLT
		 * (docs/EVMCS.md). */
		if (on && l2_at_hlt())
			on = false;
		if (on == polling || cfg.preempt || !primary_control_allowed(PROC_MONITOR_TRAP_FLAG))
			return;
		polling = on;
		VMW(PROC_BASED_CONTROLS, on ? proc_ctl | PROC_MONITOR_TRAP_FLAG : proc_ctl);
		return;
	}
	if (on == polling || cfg.preempt || !preempt_allowed)
		return;
	polling = on;
	VMW(PIN_BASED_CONTROLS, on ? pin_ctl | PIN_PREEMPTION_TIMER : pin_ctl);
	if (on)
		VMW(PREEMPTION_TIMER_VALUE, WINDOW_POLL_TICKS);
}

/*
 * Before VM entry: inject L2's highest-priority APIC interrupt as an
 * external interrupt (SDM 26.6) when L2 can take it: RFLAGS.IF = 1, no
 * blocking by STI or MOV SS (SDM 26.3.1.5) and no other event to inject.
 * An instruction that turtle emulated or skipped ends that blocking.
 */
static void inject_l2_interrupt(void)
{
	bool waiting = false;

	if (vapic_deliverable() >= 0) {
		uint64_t blocking = vmr(GUEST_INTERRUPTIBILITY);
		if (rip_advanced && (blocking & 3)) {
			blocking &= ~3ull;
			VMW(GUEST_INTERRUPTIBILITY, blocking);
		}
		if ((vmr(ENTRY_INTR_INFO) & (1u << 31)) || !(vmr(GUEST_RFLAGS) & RFLAGS_IF) || (blocking & 3))
			waiting = true;
		else
			VMW(ENTRY_INTR_INFO, (1u << 31) | (uint32_t)vapic_ack());	/* type 0 */
	}
	poll_for_window(waiting);
}

/* ---- the dispatcher ---- */

/* ---- The sensitive instructions of intercept=cr8,pause,rdpmc,mwait,rdrand,desc, XSETBV and INVPCID ---- */

static const uint32_t segment_base[6] = { GUEST_ES_BASE, GUEST_CS_BASE, GUEST_SS_BASE,
					  GUEST_DS_BASE, GUEST_FS_BASE, GUEST_GS_BASE };

/* The linear address of the memory operand that an exit's instruction
 * information describes (SDM Tables 28-10, 28-11, 28-13: scaling 1:0,
 * address size 9:7, segment 17:15, index 21:18 and its invalid bit 22,
 * base 26:23 and its invalid bit 27), plus the displacement, which is the
 * exit qualification (28.2.1). In 64-bit mode only FS and GS have a base. */
static uint64_t operand_linear(const struct l2_paging *pg, uint32_t info)
{
	uint64_t lin = vmr(EXIT_QUALIFICATION);
	int size = (info >> 7) & 7, segment = (info >> 15) & 7;

	if (!(info & (1u << 27)))
		lin += get_reg((info >> 23) & 0xf);
	if (!(info & (1u << 22)))
		lin += get_reg((info >> 18) & 0xf) << (info & 3);
	lin &= size == 0 ? 0xffffull : size == 1 ? 0xffffffffull : ~0ull;
	if (segment < 6 && (!pg->mode64 || segment >= 4))
		lin += vmr(segment_base[segment]);
	return pg->mode64 ? lin : lin & 0xffffffffull;
}

/* Reads or writes an operand of L2's; false (and turtle stops) when it is not mapped. */
static bool operand_copy(const struct l2_paging *pg, uint64_t lin, void *buf, int n, bool write)
{
	if (l2_linear_copy(pg, lin, buf, n, write) == n)
		return true;
	printf("turtle: L2's operand at linear 0x%llx is not mapped\n", (unsigned long long)lin);
	return false;
}

/* Exits 46 and 47 (intercept=desc): LGDT, LIDT, SGDT, SIDT on the
 * guest-state GDTR and IDTR; SLDT and STR from the selectors; LLDT of the
 * null selector makes LDTR unusable. The instruction identity is bits
 * 29:28 (SGDT, SIDT, LGDT, LIDT or SLDT, STR, LLDT, LTR). */
static int handle_descriptor_table(uint32_t reason)
{
	uint32_t info = (uint32_t)vmr(EXIT_INSTRUCTION_INFO);
	int identity = (info >> 28) & 3;
	bool second = identity & 1, load = identity & 2, reg = info & (1u << 10);
	struct l2_paging pg;
	read_paging(&pg);

	if (reason == EXIT_REASON_GDTR_IDTR) {
		uint32_t base = second ? GUEST_IDTR_BASE : GUEST_GDTR_BASE, limit = second ? GUEST_IDTR_LIMIT : GUEST_GDTR_LIMIT;
		uint8_t m[10] = { 0 };
		int n = pg.mode64 ? 10 : 6;
		uint64_t lin = operand_linear(&pg, info);
		if (load) {
			if (!operand_copy(&pg, lin, m, n, false))
				return stop("descriptor-table operand not mapped");
			uint64_t b = 0;
			for (int i = n - 1; i >= 2; i--)
				b = b << 8 | m[i];
			if (!pg.mode64 && !(info & (1u << 11)))
				b &= 0xffffff;		/* a 16-bit operand loads 24 bits of base */
			VMW(limit, m[0] | (uint32_t)m[1] << 8);
			VMW(base, b);
		} else {
			uint64_t l = vmr(limit), b = vmr(base);
			for (int i = 0; i < n; i++)
				m[i] = (uint8_t)(i < 2 ? l >> (8 * i) : b >> (8 * (i - 2)));
			if (!operand_copy(&pg, lin, m, n, true))
				return stop("descriptor-table operand not mapped");
		}
	} else if (!load) {
		uint16_t selector = (uint16_t)vmr(second ? GUEST_TR_SEL : GUEST_LDTR_SEL);
		if (reg)
			set_reg((info >> 3) & 0xf, selector);
		else if (!operand_copy(&pg, operand_linear(&pg, info), &selector, 2, true))
			return stop("descriptor-table operand not mapped");
	} else {
		uint16_t selector = 0;
		if (reg)
			selector = (uint16_t)get_reg((info >> 3) & 0xf);
		else if (!operand_copy(&pg, operand_linear(&pg, info), &selector, 2, false))
			return stop("descriptor-table operand not mapped");
		if (second || (selector & ~3u)) {
			printf("turtle: L2's %s of selector 0x%x is not emulated\n", second ? "LTR" : "LLDT", selector);
			return stop("LLDT or LTR not emulated");
		}
		VMW(GUEST_LDTR_SEL, selector);
		VMW(GUEST_LDTR_AR, 1u << 16);		/* unusable (SDM 25.4.1) */
	}
	skip_instruction(exit_insn_len(3));
	return 0;
}

/* XSETBV exits unconditionally (SDM 26.1.2). turtle checks the value as
 * the instruction would (Vol. 2 "XSETBV": XCR0 only, x87 set, AVX only
 * with SSE, nothing CPUID.(EAX=0DH):EDX:EAX does not offer) and keeps it;
 * it does not load it: XCR0 is not part of the VMCS, and L0 gives L2 its
 * own (docs/PATCHING.md). */
static int handle_xsetbv(void)
{
	uint64_t value = (uint32_t)l2_gprs[R_RAX] | l2_gprs[R_RDX] << 32;
	uint32_t a, b, c, d;
	cpuid(0xd, 0, &a, &b, &c, &d);
	uint64_t offered = a | (uint64_t)d << 32;

	if ((uint32_t)l2_gprs[R_RCX] != 0 || !(value & 1) || (value & ~offered) || ((value & 4) && !(value & 2))) {
		inject_gp();
		return 0;
	}
	l2_xcr0 = value;
	skip_instruction(exit_insn_len(3));
	return 0;
}

/* RDPMC (intercept=rdpmc): turtle's own general-purpose counters; an index
 * beyond them is #GP (Vol. 2 "RDPMC"). */
static int handle_rdpmc(void)
{
	uint32_t a, b, c, d, counters = 0, index = (uint32_t)l2_gprs[R_RCX];
	cpuid(0, 0, &a, &b, &c, &d);
	if (a >= 0xa) {
		cpuid(0xa, 0, &a, &b, &c, &d);
		counters = (a >> 8) & 0xff;
	}
	if (index >= counters) {
		inject_gp();
		return 0;
	}
	uint32_t lo, hi;
	__asm__ volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(index));
	l2_gprs[R_RAX] = lo;
	l2_gprs[R_RDX] = hi;
	skip_instruction(exit_insn_len(2));
	return 0;
}

/* RDRAND and RDSEED (intercept=rdrand): turtle's own, into the register and
 * size of the instruction information (Table 28-12: register 6:3, operand
 * size 12:11), with CF as the instruction sets it and OF, SF, ZF, AF, PF clear. */
static int handle_random(bool seed)
{
	uint32_t info = (uint32_t)vmr(EXIT_INSTRUCTION_INFO);
	uint64_t v;
	uint8_t ok;
	if (seed)
		__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok));
	else
		__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
	int size = 2 << ((info >> 11) & 3);
	write_reg_sized((info >> 3) & 0xf, size, false, ok ? v : 0);
	uint64_t flags = vmr(GUEST_RFLAGS) & ~0x8d5ull;		/* OF SF ZF AF PF CF */
	VMW(GUEST_RFLAGS, flags | (ok ? 1 : 0));
	skip_instruction(exit_insn_len(3));
	return 0;
}

/* INVPCID (intercept=invlpg, SDM 26.1.3): the type in the register of bits
 * 31:28 of the instruction information. Types above 3, and for types 0
 * and 1 a PCID above 4095 in the descriptor, are #GP (Vol. 2 "INVPCID").
 * With EPT and no VPID there is nothing for turtle to invalidate. */
static int handle_invpcid(void)
{
	uint32_t info = (uint32_t)vmr(EXIT_INSTRUCTION_INFO);
	uint64_t type = get_reg((info >> 28) & 0xf), desc[2];
	struct l2_paging pg;
	read_paging(&pg);
	if (type <= 1 && !operand_copy(&pg, operand_linear(&pg, info), desc, sizeof(desc), false))
		return stop("INVPCID descriptor not mapped");
	if (type > 3 || (type <= 1 && desc[0] > 0xfff)) {
		inject_gp();
		return 0;
	}
	skip_instruction(exit_insn_len(5));
	return 0;
}

/* turtle's own DR6 or DR7: written with v, or read; returns the value. */
static uint64_t own_debug_register(int dr, bool write, uint64_t v)
{
	if (dr == 6 && write)
		__asm__ volatile("mov %0, %%dr6" : : "r"(v));
	else if (dr == 6)
		__asm__ volatile("mov %%dr6, %0" : "=r"(v));
	else if (write)
		__asm__ volatile("mov %0, %%dr7" : : "r"(v));
	else
		__asm__ volatile("mov %%dr7, %0" : "=r"(v));
	return v;
}

static int dispatch(void);

int turtle_handle_exit(void)
{
	if (cfg.evmcs)
		evmcs_exit();
	rip_advanced = false;
	int rc = dispatch();
	if (rc == 0)
		inject_l2_interrupt();
	return rc;
}

static int dispatch(void)
{
	uint32_t reason = (uint32_t)vmr(EXIT_REASON);
	uint32_t basic = reason & 0xffff;

	if (basic <= EXIT_REASON_MAX)
		exit_counts[basic]++;
	else
		exit_other++;

	if (reason & (1u << 31)) {
		uint64_t q = vmr(EXIT_QUALIFICATION);
		printf("turtle: VM-entry failure, exit reason %u (%s), qualification 0x%llx\n",
		       basic, exit_reason_name(basic), (unsigned long long)q);
		return stop("VM-entry failure");
	}

	/* An exit during event delivery (SDM 28.2.4): the event was not
	 * delivered, so inject it again at the next entry, as KVM does. A
	 * handler below that injects its own event replaces it. */
	uint64_t vectoring = vmr(IDT_VECTORING_INFO);
	if ((vectoring & (1u << 31)) && basic != EXIT_REASON_EPT_VIOLATION) {
		uint32_t type = (vectoring >> 8) & 7;
		vectored_exits++;
		VMW(ENTRY_INTR_INFO, vectoring & INTR_INFO_INJECTABLE);
		if (vectoring & (1u << 11))
			VMW(ENTRY_EXCEPTION_ERRCODE, vmr(IDT_VECTORING_ERRCODE));
		if (type == 4 || type == 5 || type == 6)
			VMW(ENTRY_INSTRUCTION_LEN, vmr(EXIT_INSTRUCTION_LEN));
	}

	switch (basic) {
	case EXIT_REASON_IO:
		return handle_io();
	case EXIT_REASON_VMCALL:
		return handle_vmcall();
	case EXIT_REASON_RDMSR:
		return handle_msr(false);
	case EXIT_REASON_WRMSR:
		return handle_msr(true);
	case EXIT_REASON_EPT_VIOLATION:
		return handle_ept_violation();
	case EXIT_REASON_EXCEPTION: {
		if (l2mem->page_fault && (vmr(EXIT_INTR_INFO) & 0xff) == 14 && !(cfg.exceptions & (1u << 14)))
			return handle_paging_fault();
		/* An intercepted exception (SDM 27.2.2): log it and deliver it to L2
		 * after all, through VM-entry event injection (SDM 26.6). */
		uint64_t info = vmr(EXIT_INTR_INFO), code = vmr(EXIT_INTR_ERRCODE);
		exception_exits++;
		printf("turtle: L2 exception %llu (error code 0x%llx, qualification 0x%llx) at RIP 0x%llx: re-injected\n",
		       (unsigned long long)(info & 0xff), (unsigned long long)code,
		       (unsigned long long)vmr(EXIT_QUALIFICATION), (unsigned long long)vmr(GUEST_RIP));
		VMW(ENTRY_INTR_INFO, info & INTR_INFO_INJECTABLE);
		VMW(ENTRY_EXCEPTION_ERRCODE, code);
		/* INT3, INTO, INT1 (types 5 and 6) need their length (SDM 27.2.1.3). */
		uint32_t type = (info >> 8) & 7;
		if (type == 5 || type == 6)
			VMW(ENTRY_INSTRUCTION_LEN, vmr(EXIT_INSTRUCTION_LEN));
		return 0;
	}
	case EXIT_REASON_EXTERNAL_INTERRUPT: {
		/* Acknowledged on exit: the vector is in the interruption information. */
		uint64_t info = vmr(EXIT_INTR_INFO);
		if ((info & (1u << 31)) && l2_uses_turtles_apic() && !cfg.timer) {
			/* ept=off: L2 uses turtle's APIC, and writes the EOI itself. */
			vapic_pass_through((uint8_t)info);
			return 0;
		}
		if ((info & (1u << 31)) && (info & 0xff) == TURTLE_TIMER_VECTOR) {
			timer_exits++;
			vapic_timer_fired();
		} else {
			bad_interrupts++;
		}
		apic_eoi();
		if (vmr(GUEST_ACTIVITY_STATE) == 1 && vapic_deliverable() < 0 && !vapic_timer_armed() &&
		    ++halted_wakeups == 5) {
			/* SDM 25.4.2: L2 sleeps in the HLT state; turtle has nothing to inject. */
			printf("turtle: L2 is in the HLT activity state at RIP 0x%llx; %llu timer exits reached it there\n",
			       (unsigned long long)vmr(GUEST_RIP), (unsigned long long)halted_wakeups);
			return stop("L2 halted and turtle has no interrupt for it");
		}
		return 0;
	}
	case EXIT_REASON_VMCLEAR ... EXIT_REASON_VMXON:
	case EXIT_REASON_INVEPT:
	case EXIT_REASON_INVVPID:
		/* VMX instructions exit unconditionally (SDM 26.1.2). turtle offers
		 * L2 no VMX (CPUID.1:ECX.VMX is clear, so CR4.VMXE cannot be set):
		 * they are #UD, as outside VMX operation (SDM 31.3). */
		vmx_insns++;
		inject_ud();
		return 0;
	case EXIT_REASON_PREEMPTION_TIMER:
		if (polling) {
			window_polls++;
			return 0;
		}
		preempt_exits++;
		VMW(PREEMPTION_TIMER_VALUE, cfg.preempt);	/* re-arm */
		return 0;
	case EXIT_REASON_CPUID:
		return handle_cpuid();
	case EXIT_REASON_CR_ACCESS:
		return handle_cr_access();
	case EXIT_REASON_INVLPG:
		if (l2mem->invlpg)
			l2mem->invlpg(vmr(EXIT_QUALIFICATION));
		skip_instruction(exit_insn_len(3));
		return 0;
	case EXIT_REASON_INVD:		/* unconditional (SDM 26.1.2): caches stay */
	case EXIT_REASON_WBINVD:
		skip_instruction(exit_insn_len(2));
		return 0;
	case EXIT_REASON_DR_ACCESS: {
		/* Table 28-4: DR in 2:0, 1 = MOV from DR in bit 4, GPR in 11:8.
		 * turtle keeps L2's DR0-DR3. DR7 is the guest-state field under
		 * "load/save debug controls" (SDM 27.3.2.1, 28.3.1), else turtle's
		 * own, which L2 runs with; DR6 is not switched by VMX
		 * (27.3), so L2's DR6 is turtle's own, as its #DB left it. DR4 and
		 * DR5 alias DR6 and DR7 (CR4.DE is clear). */
		static uint64_t l2_dr[4];
		uint64_t q = vmr(EXIT_QUALIFICATION);
		int dr = (int)(q & 7), gpr = (int)((q >> 8) & 0xf);
		bool from = q & (1u << 4);
		if (dr < 4) {
			if (from)
				set_reg(gpr, l2_dr[dr]);
			else
				l2_dr[dr] = get_reg(gpr);
		} else if ((dr == 7 || dr == 5) && (entry_ctl & ENTRY_LOAD_DEBUG)) {
			if (from)
				set_reg(gpr, vmr(GUEST_DR7));
			else
				VMW(GUEST_DR7, get_reg(gpr));
		} else {
			/* DR6, or DR7 without "load debug controls": turtle's own. */
			uint64_t v = own_debug_register(dr == 4 || dr == 6 ? 6 : 7, !from, get_reg(gpr));
			if (from)
				set_reg(gpr, v);
		}
		skip_instruction(exit_insn_len(3));
		return 0;
	}
	case EXIT_REASON_RDTSC:
	case EXIT_REASON_RDTSCP: {
		/* intercept=rdtsc: turtle's TSC, offset as L2 would read it;
		 * RDTSCP's ECX is L2's IA32_TSC_AUX, which turtle keeps. */
		uint64_t tsc = rdtsc() + cfg.tsc_offset;
		l2_gprs[R_RAX] = (uint32_t)tsc;
		l2_gprs[R_RDX] = tsc >> 32;
		if (basic == EXIT_REASON_RDTSCP)
			l2_gprs[R_RCX] = l2_tsc_aux;
		skip_instruction(exit_insn_len(basic == EXIT_REASON_RDTSCP ? 3 : 2));
		return 0;
	}
	case EXIT_REASON_MONITOR_TRAP_FLAG:
		/* HC_MTF: L2 completed an instruction; it goes on from the next.
		 * Or, with vmcs=enlightened, a window poll (poll_for_window). */
		if (cfg.evmcs && polling && !(proc_ctl & PROC_MONITOR_TRAP_FLAG)) {
			window_polls++;
			return 0;
		}
		mtf_exits++;
		return 0;
	case EXIT_REASON_PAUSE_INSTRUCTION:
		skip_instruction(exit_insn_len(2));
		return 0;
	case EXIT_REASON_MONITOR_INSTRUCTION:
	case EXIT_REASON_MWAIT_INSTRUCTION: {
		/* intercept=mwait: #UD unless CPUID offers MONITOR/MWAIT; else no-ops. */
		uint32_t a, b, c, d;
		cpuid(1, 0, &a, &b, &c, &d);
		if (!(c & (1u << 3)))
			inject_ud();
		else
			skip_instruction(exit_insn_len(3));
		return 0;
	}
	case EXIT_REASON_RDPMC:
		return handle_rdpmc();
	case EXIT_REASON_RDRAND:
	case EXIT_REASON_RDSEED:
		return handle_random(basic == EXIT_REASON_RDSEED);
	case EXIT_REASON_XSETBV:
		return handle_xsetbv();
	case EXIT_REASON_INVPCID:
		return handle_invpcid();
	case EXIT_REASON_GDTR_IDTR:
	case EXIT_REASON_LDTR_TR:
		return handle_descriptor_table(basic);
	case EXIT_REASON_HLT:
		return handle_hlt();
	case EXIT_REASON_TRIPLE_FAULT:
		printf("turtle: L2 triple-faulted at RIP 0x%llx\n", (unsigned long long)vmr(GUEST_RIP));
		return stop("L2 triple fault");
	case EXIT_REASON_EPT_MISCONFIG:
		printf("turtle: EPT misconfiguration at L2-physical 0x%llx: turtle's EPT is broken\n",
		       (unsigned long long)vmr(GUEST_PHYSICAL_ADDRESS));
		return stop("EPT misconfiguration");
	default:
		printf("turtle: unhandled exit reason %u (%s), qualification 0x%llx, RIP 0x%llx\n",
		       basic, exit_reason_name(basic), (unsigned long long)vmr(EXIT_QUALIFICATION),
		       (unsigned long long)vmr(GUEST_RIP));
		return stop("unhandled exit");
	}
}

void exit_report(void)
{
	uint64_t total = exit_other;

	if (!l2_line_start)
		serial_putc('\n');
	printf("turtle: run stopped: %s\n", stop_why);
	printf("turtle: exits by reason:\n");
	for (int r = 0; r <= EXIT_REASON_MAX; r++) {
		if (!exit_counts[r])
			continue;
		total += exit_counts[r];
		printf("turtle:   %3d %-40s %llu\n", r, exit_reason_name((uint32_t)r),
		       (unsigned long long)exit_counts[r]);
	}
	if (exit_other)
		printf("turtle:   ??? %-40s %llu\n", "reason above 70", (unsigned long long)exit_other);
	printf("turtle:   total %llu\n", (unsigned long long)total);
	printf("turtle: hypercalls: print %llu, nop %llu, unknown %llu; port 0x80 writes %llu; "
	       "MMIO reads %llu, writes %llu",
	       (unsigned long long)hc_print, (unsigned long long)hc_nop, (unsigned long long)hc_unknown,
	       (unsigned long long)port80_outs, (unsigned long long)mmio_reads,
	       (unsigned long long)mmio_writes);
	if (mmio_writes)
		printf(" (last 0x%llx to 0x%llx)", (unsigned long long)mmio_last_value,
		       (unsigned long long)mmio_last_gpa);
	printf("; preemption-timer exits %llu; timer interrupts %llu (unexpected %llu); exceptions %llu\n",
	       (unsigned long long)preempt_exits, (unsigned long long)timer_exits,
	       (unsigned long long)bad_interrupts, (unsigned long long)exception_exits);
	if (hlt_sleeps || window_polls)
		printf("turtle: turtle slept %llu times for halted L2; interrupt-window polls %llu\n",
		       (unsigned long long)hlt_sleeps, (unsigned long long)window_polls);
	if (vmx_insns)
		printf("turtle: L2's VMX instructions, answered with #UD: %llu\n", (unsigned long long)vmx_insns);
	vapic_report();
	if (l2mem->report)
		l2mem->report();
	if (vectored_exits)
		printf("turtle: exits during event delivery, event re-injected: %llu\n",
		       (unsigned long long)vectored_exits);
}
