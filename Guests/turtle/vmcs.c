/*
 * vmcs.c - enabling VMX and building L2's VMCS (SDM Vol. 3C chapters 24-27).
 *
 * Every control value is (wanted | allowed0) & allowed1 from the TRUE_*
 * capability MSRs (A.3-A.5; IA32_VMX_BASIC bit 55 says they exist), and a
 * wanted bit that allowed1 does not permit is a FAIL, not a silent drop.
 * Every VMWRITE is checked (vmw_named prints the field on failure).
 */
#include "turtle.h"

struct msr_entry msr_entry_load[1], msr_exit_store[3], msr_exit_load[1];

#define MSR_IA32_PAT	0x277
#define FC_LOCK		(1ull << 0)
#define FC_VMX_OUTSIDE_SMX (1ull << 2)
#define BASIC_TRUE_CTLS	(1ull << 55)

static uint8_t vmxon_region[4096] __attribute__((aligned(4096)));
static uint8_t vmcs_region[4096] __attribute__((aligned(4096)));
static uint8_t io_bitmap_a[4096] __attribute__((aligned(4096)));
static uint8_t io_bitmap_b[4096] __attribute__((aligned(4096)));
static uint8_t msr_bitmap[4096] __attribute__((aligned(4096)));

static uint64_t vmx_basic;
uint32_t pin_ctl, proc_ctl, sec_ctl, exit_ctl, entry_ctl;
bool preempt_allowed;

static const char *const vm_errors[29] = {
	[1] = "VMCALL executed in VMX root operation",
	[2] = "VMCLEAR with invalid physical address",
	[3] = "VMCLEAR with VMXON pointer",
	[4] = "VMLAUNCH with non-clear VMCS",
	[5] = "VMRESUME with non-launched VMCS",
	[6] = "VMRESUME after VMXOFF",
	[7] = "VM entry with invalid control field(s)",
	[8] = "VM entry with invalid host-state field(s)",
	[9] = "VMPTRLD with invalid physical address",
	[10] = "VMPTRLD with VMXON pointer",
	[11] = "VMPTRLD with incorrect VMCS revision identifier",
	[12] = "VMREAD/VMWRITE from/to unsupported VMCS component",
	[13] = "VMWRITE to read-only VMCS component",
	[15] = "VMXON executed in VMX root operation",
	[16] = "VM entry with invalid executive-VMCS pointer",
	[17] = "VM entry with non-launched executive VMCS",
	[18] = "VM entry with executive-VMCS pointer not VMXON pointer",
	[19] = "VMCALL with non-clear VMCS",
	[20] = "VMCALL with invalid VM-exit control fields",
	[22] = "VMCALL with incorrect MSEG revision identifier",
	[23] = "VMXOFF under dual-monitor treatment of SMIs and SMM",
	[24] = "VMCALL with invalid SMM-monitor features",
	[25] = "VM entry with invalid VM-execution control fields in executive VMCS",
	[26] = "VM entry with events blocked by MOV SS",
	[28] = "invalid operand to INVEPT/INVVPID",
};

const char *vm_instruction_error_name(uint64_t err)
{
	if (err < 29 && vm_errors[err])
		return vm_errors[err];
	return "unknown error";
}

static const char *outcome_name(struct vmx_result r)
{
	switch (r.outcome) {
	case VMX_SUCCEED: return "VMsucceed";
	case VMX_FAIL_INVALID: return "VMfailInvalid";
	case VMX_FAIL_VALID: return "VMfailValid";
	default: return "a fault";
	}
}

/* Reports a failed VMX instruction; returns true if it succeeded. */
static bool vmx_ok(const char *what, struct vmx_result r)
{
	if (r.outcome == VMX_SUCCEED)
		return true;
	if (r.outcome == VMX_FAIL_VALID) {
		uint64_t err = vm_instruction_error();
		fail("%s: VMfailValid, VM-instruction error %llu (%s)", what,
		     (unsigned long long)err, vm_instruction_error_name(err));
	} else if (r.outcome == VMX_FAULT) {
		fail("%s: raised exception vector %d", what, r.vector);
	} else {
		fail("%s: %s", what, outcome_name(r));
	}
	return false;
}

bool vmx_enable(void)
{
	uint32_t a, b, c, d;

	cpuid(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 5))) {
		fail("CPUID.1:ECX.VMX (bit 5) is clear: no VMX");
		return false;
	}

	/* IA32_FEATURE_CONTROL (SDM Vol. 3C 24.7): lock it with VMX outside
	 * SMX if the firmware left it unlocked. */
	uint64_t fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
	if (!(fc & FC_LOCK)) {
		fc |= FC_LOCK | FC_VMX_OUTSIDE_SMX;
		wrmsr(MSR_IA32_FEATURE_CONTROL, fc);
		printf("turtle: IA32_FEATURE_CONTROL was unlocked: now 0x%llx\n", (unsigned long long)fc);
		fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
	}
	if (!(fc & FC_VMX_OUTSIDE_SMX)) {
		fail("IA32_FEATURE_CONTROL 0x%llx is locked with VMX outside SMX disabled",
		     (unsigned long long)fc);
		return false;
	}

	vmx_basic = rdmsr(MSR_IA32_VMX_BASIC);
	uint32_t revision = (uint32_t)vmx_basic & 0x7fffffffu;
	uint32_t region = (uint32_t)(vmx_basic >> 32) & 0x1fff;
	printf("turtle: IA32_VMX_BASIC 0x%llx: revision 0x%x, region %u bytes, memory type %u%s\n",
	       (unsigned long long)vmx_basic, revision, region,
	       (unsigned)((vmx_basic >> 50) & 0xf),
	       (vmx_basic & BASIC_TRUE_CTLS) ? ", TRUE controls" : "");
	if (region > 4096) {
		fail("VMX regions of %u bytes do not fit turtle's 4 KiB regions", region);
		return false;
	}
	if (vmx_basic & (1ull << 48)) {
		fail("IA32_VMX_BASIC bit 48 (32-bit physical addresses only) is not supported");
		return false;
	}
	printf("turtle: CR0_FIXED0 0x%llx CR0_FIXED1 0x%llx CR4_FIXED0 0x%llx CR4_FIXED1 0x%llx MISC 0x%llx\n",
	       (unsigned long long)rdmsr(MSR_IA32_VMX_CR0_FIXED0),
	       (unsigned long long)rdmsr(MSR_IA32_VMX_CR0_FIXED1),
	       (unsigned long long)rdmsr(MSR_IA32_VMX_CR4_FIXED0),
	       (unsigned long long)rdmsr(MSR_IA32_VMX_CR4_FIXED1),
	       (unsigned long long)rdmsr(MSR_IA32_VMX_MISC));

	/* SDM 24.8 "Restrictions on VMX Operation": CR0/CR4 fixed bits; NE and
	 * VMXE (virtualised by L0: a plain mov cr4 works) are the ones that
	 * matter for turtle, which already runs with PE and PG. */
	write_cr0(read_cr0() | CR0_NE | rdmsr(MSR_IA32_VMX_CR0_FIXED0));
	write_cr4(read_cr4() | CR4_VMXE | rdmsr(MSR_IA32_VMX_CR4_FIXED0));

	fast_zero(vmxon_region, sizeof(vmxon_region));
	*(uint32_t *)vmxon_region = revision;
	if (!vmx_ok("VMXON", vmxon((uintptr_t)vmxon_region)))
		return false;
	printf("turtle: VMXON at 0x%llx: in VMX root operation\n",
	       (unsigned long long)(uintptr_t)vmxon_region);
	return !cfg.evmcs || evmcs_enable();
}

void vmx_disable(void)
{
	if (vmx_ok("VMXOFF", vmxoff()))
		printf("turtle: VMXOFF\n");
}

/*
 * One control field: (wanted | optional-if-allowed | allowed0) & allowed1,
 * from a capability MSR whose low half is allowed-0 (bits that must be 1)
 * and high half allowed-1 (bits that may be 1), SDM Vol. 3C A.3-A.5.
 */
static uint32_t control(const char *what, uint32_t msr, uint32_t wanted, uint32_t optional)
{
	uint64_t cap = rdmsr(msr);
	uint32_t allowed0 = (uint32_t)cap, allowed1 = (uint32_t)(cap >> 32);
	uint32_t missing = wanted & ~allowed1;
	uint32_t v = (wanted | (optional & allowed1) | allowed0) & allowed1;

	if (missing)
		fail("%s controls: wanted bits 0x%x are not allowed to be 1 (MSR 0x%x = 0x%llx)",
		     what, missing, msr, (unsigned long long)cap);
	if (allowed0 & ~allowed1)
		fail("%s controls: MSR 0x%x = 0x%llx requires bits 0x%x that it does not allow",
		     what, msr, (unsigned long long)cap, allowed0 & ~allowed1);
	printf("turtle: %-9s controls 0x%08x (wanted 0x%08x, allowed0 0x%08x, allowed1 0x%08x)\n",
	       what, v, wanted | (optional & allowed1), allowed0, allowed1);
	return v;
}

/* Whether the primary processor-based controls may have `bit` set (SDM A.3.2). */
bool primary_control_allowed(uint32_t bit)
{
	bool truectl = (vmx_basic & BASIC_TRUE_CTLS) != 0;
	return (rdmsr(truectl ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS : MSR_IA32_VMX_PROCBASED_CTLS) >> 32) & bit;
}

static void io_intercept(uint16_t port)
{
	uint8_t *bm = port < 0x8000 ? io_bitmap_a : io_bitmap_b;
	uint16_t bit = port & 0x7fff;

	bm[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

/* MSR bitmap (SDM 25.6.9): read-low at 0, read-high at 1024, write-low at
 * 2048, write-high at 3072; MSRs outside both ranges always exit. */
static void msr_intercept(uint32_t msr)
{
	uint32_t base = msr >= 0xc0000000u ? 1024 : 0;
	uint32_t bit = msr & 0x1fff;

	msr_bitmap[base + bit / 8] |= (uint8_t)(1u << (bit % 8));
	msr_bitmap[2048 + base + bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static uint64_t fixed_bits(uint64_t value, uint32_t fixed0_msr, uint32_t fixed1_msr, uint64_t exempt)
{
	uint64_t f0 = rdmsr(fixed0_msr) & ~exempt, f1 = rdmsr(fixed1_msr) | exempt;
	return (value | f0) & f1;
}

bool vmcs_setup(const struct l2_image *img, const struct l2mem_needs *need)
{
	bool truectl = (vmx_basic & BASIC_TRUE_CTLS) != 0;
	int before = setup_failures;

	/* ---- Controls (SDM 25.6-25.8) ---- */
	uint32_t pin_msr = truectl ? MSR_IA32_VMX_TRUE_PINBASED_CTLS : MSR_IA32_VMX_PINBASED_CTLS;
	pin_ctl = control("pin-based", pin_msr, (cfg.irq_direct ? 0 : PIN_EXTINT_EXITING) |
			  (cfg.preempt ? PIN_PREEMPTION_TIMER : 0), 0);
	if (cfg.irq_direct && (pin_ctl & PIN_EXTINT_EXITING))
		fail("irq=direct: the pin-based controls force external-interrupt exiting");
	/* eVMCS v1 has no VMX-preemption timer value: no window polls with it. */
	preempt_allowed = ((rdmsr(pin_msr) >> 32) & PIN_PREEMPTION_TIMER) && !cfg.evmcs;
	uint32_t proc_want = (cfg.hlt_wait ? 0 : PROC_HLT_EXITING) | PROC_MSR_BITMAPS | PROC_SECONDARY |
			     (cfg.io_all ? PROC_UNCOND_IO : PROC_IO_BITMAPS) |
			     (cfg.intercept_rdtsc ? PROC_RDTSC_EXITING : 0) | (cfg.tsc_offset ? PROC_TSC_OFFSETTING : 0) |
			     (cfg.intercept_cr3 || need->cr3_exits ? PROC_CR3_LOAD_EXITING | PROC_CR3_STORE_EXITING : 0) |
			     (cfg.intercept_invlpg || need->invlpg_exits ? PROC_INVLPG_EXITING : 0) | (cfg.intercept_dr ? PROC_MOV_DR_EXITING : 0) |
			     (cfg.intercept_cr8 ? PROC_CR8_LOAD_EXITING | PROC_CR8_STORE_EXITING : 0) |
			     (cfg.intercept_pause ? PROC_PAUSE_EXITING : 0) | (cfg.intercept_rdpmc ? PROC_RDPMC_EXITING : 0) |
			     (cfg.intercept_mwait ? PROC_MONITOR_EXITING | PROC_MWAIT_EXITING : 0);
	proc_ctl = control("primary", truectl ? MSR_IA32_VMX_TRUE_PROCBASED_CTLS : MSR_IA32_VMX_PROCBASED_CTLS,
			   proc_want, 0);
	if (cfg.io_all && (proc_ctl & PROC_IO_BITMAPS))
		fail("io=all: the primary controls force \"use I/O bitmaps\"");
	/* RDTSCP and INVPCID run in L2 only with their "enable" controls (SDM
	 * 26.3), which turtle sets where CPUID offers the instructions, as KVM does. */
	uint32_t a, b7, c, d, ext_d = 0, enable = 0;
	cpuid(7, 0, &a, &b7, &c, &d);
	cpuid(0x80000001, 0, &a, &a, &c, &ext_d);
	if (ext_d & (1u << 27))
		enable |= SEC_ENABLE_RDTSCP;
	if (b7 & (1u << 10))
		enable |= SEC_ENABLE_INVPCID;
	sec_ctl = control("secondary", MSR_IA32_VMX_PROCBASED_CTLS2,
			  (need->ept ? SEC_ENABLE_EPT | SEC_UNRESTRICTED_GUEST : 0) | (cfg.intercept_wbinvd ? SEC_WBINVD_EXITING : 0) |
			  (cfg.intercept_rdrand ? SEC_RDRAND_EXITING | SEC_RDSEED_EXITING : 0) |
			  (cfg.intercept_desc ? SEC_DESC_TABLE_EXITING : 0), enable);
	exit_ctl = control("exit", truectl ? MSR_IA32_VMX_TRUE_EXIT_CTLS : MSR_IA32_VMX_EXIT_CTLS,
			   EXIT_HOST_ADDR_SPACE | EXIT_ACK_INTERRUPT, EXIT_SAVE_EFER | EXIT_LOAD_EFER);
	entry_ctl = control("entry", truectl ? MSR_IA32_VMX_TRUE_ENTRY_CTLS : MSR_IA32_VMX_ENTRY_CTLS,
			    need->ept ? 0 : ENTRY_IA32E_GUEST, ENTRY_LOAD_EFER);
	if (need->ept && (entry_ctl & ENTRY_IA32E_GUEST))
		fail("entry controls force \"IA-32e mode guest\": a multiboot L2 starts in 32-bit mode");
	if (setup_failures != before)
		return false;

	/* ---- VMCS region (SDM 24.2, 25.11.3) ---- */
	if (cfg.evmcs) {
		evmcs_make_current();
	} else {
		fast_zero(vmcs_region, sizeof(vmcs_region));
		*(uint32_t *)vmcs_region = (uint32_t)vmx_basic & 0x7fffffffu;
		if (!vmx_ok("VMCLEAR", vmclear((uintptr_t)vmcs_region)) ||
		    !vmx_ok("VMPTRLD", vmptrld((uintptr_t)vmcs_region)))
			return false;
		printf("turtle: VMCS at 0x%llx is current\n", (unsigned long long)(uintptr_t)vmcs_region);
	}

	VMW(PIN_BASED_CONTROLS, pin_ctl);
	VMW(PROC_BASED_CONTROLS, proc_ctl);
	VMW(SECONDARY_CONTROLS, sec_ctl);
	VMW(EXIT_CONTROLS, exit_ctl);
	VMW(ENTRY_CONTROLS, entry_ctl);
	VMW(EXCEPTION_BITMAP, 0);
	VMW(PF_ERROR_CODE_MASK, 0);
	VMW(PF_ERROR_CODE_MATCH, 0);
	VMW(CR3_TARGET_COUNT, 0);
	VMW(EXIT_MSR_STORE_COUNT, 0);
	VMW(EXIT_MSR_LOAD_COUNT, 0);
	VMW(ENTRY_MSR_LOAD_COUNT, 0);
	VMW(ENTRY_INTR_INFO, 0);
	VMW(ENTRY_EXCEPTION_ERRCODE, 0);
	VMW(ENTRY_INSTRUCTION_LEN, 0);
	VMW(TSC_OFFSET, cfg.tsc_offset);
	/* A strategy that shadows L2's paging (paging=shadow) owns the paging
	 * bits: CR0.PG and WP, CR4.PAE, PSE, PGE, PCIDE, SMEP, SMAP (SDM
	 * 25.6.6); L2 reads its own from the read shadows. */
	if (need->owns_paging_bits) {
		cfg.cr0_mask |= CR0_PG | CR0_WP;
		cfg.cr4_mask |= CR4_PAE | CR4_PSE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP;
	}
	VMW(CR0_GUEST_HOST_MASK, cfg.cr0_mask);
	VMW(CR4_GUEST_HOST_MASK, cfg.cr4_mask);

	/* I/O bitmaps (25.6.4): COM1, the debug-exit port and POST port 0x80. */
	if (proc_ctl & PROC_IO_BITMAPS) {
		for (uint16_t p = 0x3f8; p <= 0x3ff; p++)
			io_intercept(p);
		for (uint16_t p = 0xf4; p <= 0xf7; p++)
			io_intercept(p);
		io_intercept(0x80);
		VMW(IO_BITMAP_A, (uintptr_t)io_bitmap_a);
		VMW(IO_BITMAP_B, (uintptr_t)io_bitmap_b);
	}
	if (proc_ctl & PROC_MSR_BITMAPS) {
		msr_intercept(MSR_IA32_APIC_BASE);
		if (cfg.intercept_rdtsc)
			msr_intercept(MSR_IA32_TSC_AUX);	/* RDTSCP's ECX: turtle keeps L2's */
		VMW(MSR_BITMAP, (uintptr_t)msr_bitmap);
	}
	/* paging=shadow: every #PF exits (mask and match 0), hidden or L2's own. */
	VMW(EXCEPTION_BITMAP, cfg.exceptions | (need->pf_exits ? 1u << 14 : 0));
	if (cfg.msrlists) {
		msr_entry_load[0] = (struct msr_entry){ MSR_LIST_MSR, 0, MSR_LIST_L2_VALUE };
		msr_exit_store[0] = (struct msr_entry){ MSR_LIST_MSR, 0, 0 };
		msr_exit_store[1] = (struct msr_entry){ MSR_SYSENTER_ESP, 0, 0 };
		msr_exit_store[2] = (struct msr_entry){ MSR_SYSENTER_EIP, 0, 0 };
		msr_exit_load[0] = (struct msr_entry){ MSR_LIST_MSR, 0, MSR_LIST_L1_VALUE };
		VMW(ENTRY_MSR_LOAD_ADDR, (uintptr_t)msr_entry_load);
		VMW(ENTRY_MSR_LOAD_COUNT, 1);
		VMW(EXIT_MSR_STORE_ADDR, (uintptr_t)msr_exit_store);
		VMW(EXIT_MSR_STORE_COUNT, 3);
		VMW(EXIT_MSR_LOAD_ADDR, (uintptr_t)msr_exit_load);
		VMW(EXIT_MSR_LOAD_COUNT, 1);
	}
	if (sec_ctl & SEC_ENABLE_EPT)
		VMW(EPT_POINTER, need->eptp);
	if (pin_ctl & PIN_PREEMPTION_TIMER)
		VMW(PREEMPTION_TIMER_VALUE, cfg.preempt);

	/* ---- Host state (SDM 25.5, checked by 27.2.2-27.2.4) ---- */
	struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
	__asm__ volatile("sidt %0" : "=m"(idtr));
	VMW(HOST_CR0, read_cr0());
	VMW(HOST_CR3, read_cr3());
	VMW(HOST_CR4, read_cr4());	/* VMXE is virtual here: it does not read back */
	VMW(HOST_CS_SEL, TURTLE_CS);
	VMW(HOST_SS_SEL, TURTLE_DS);
	VMW(HOST_DS_SEL, TURTLE_DS);
	VMW(HOST_ES_SEL, TURTLE_DS);
	VMW(HOST_FS_SEL, TURTLE_DS);
	VMW(HOST_GS_SEL, TURTLE_DS);
	VMW(HOST_TR_SEL, TURTLE_TR);
	VMW(HOST_FS_BASE, 0);
	VMW(HOST_GS_BASE, 0);
	VMW(HOST_TR_BASE, turtle_tss_base());
	VMW(HOST_GDTR_BASE, turtle_gdt_base());
	VMW(HOST_IDTR_BASE, idtr.base);
	VMW(HOST_SYSENTER_CS, 0);
	VMW(HOST_SYSENTER_ESP, 0);
	VMW(HOST_SYSENTER_EIP, cfg.msrlists ? HOST_SYSENTER_EIP_VALUE : 0);
	VMW(HOST_RSP, (uintptr_t)turtle_exit_stack_top);
	VMW(HOST_RIP, (uintptr_t)turtle_vmexit);
	if (exit_ctl & EXIT_LOAD_EFER)
		VMW(HOST_IA32_EFER, rdmsr(MSR_EFER));
	if (exit_ctl & EXIT_LOAD_PAT)
		VMW(HOST_IA32_PAT, rdmsr(MSR_IA32_PAT));

	/* ---- Guest state: the Multiboot entry state (Multiboot 3.2; SDM
	 * 27.3.1 checks, with "unrestricted guest" exempting CR0.PE/PG) ----
	 * Without EPT there is no unrestricted guest, so paging must be on:
	 * L2 starts in 64-bit mode at its image's 64-bit entry instead, on an
	 * identity map of the low 4 GiB (L2-physical is L1-physical). */
	uint64_t cr0 = CR0_PE | CR0_ET | CR0_NE | (need->ept ? 0 : CR0_PG);
	if (sec_ctl & SEC_UNRESTRICTED_GUEST)
		cr0 = fixed_bits(cr0, MSR_IA32_VMX_CR0_FIXED0, MSR_IA32_VMX_CR0_FIXED1, CR0_PE | CR0_PG);
	else
		cr0 = fixed_bits(cr0, MSR_IA32_VMX_CR0_FIXED0, MSR_IA32_VMX_CR0_FIXED1, 0);
	uint64_t cr4 = fixed_bits(need->ept ? 0 : CR4_PAE, MSR_IA32_VMX_CR4_FIXED0, MSR_IA32_VMX_CR4_FIXED1, 0);
	uint64_t rip = need->ept ? img->entry : img->entry64;
	VMW(GUEST_CR0, cr0);
	VMW(CR0_READ_SHADOW, cr0);
	uint64_t live;
	if (l2mem->cr0_write && l2mem->cr0_write(cr0, &live))
		fail("paging=%s cannot start L2 with CR0 0x%llx", l2mem->name, (unsigned long long)cr0);
	VMW(GUEST_CR3, need->ept ? 0 : need->guest_cr3);
	VMW(GUEST_CR4, cr4);
	VMW(CR4_READ_SHADOW, cr4);
	VMW(GUEST_DR7, 0x400);
	VMW(GUEST_IA32_DEBUGCTL, 0);
	VMW(GUEST_RSP, 0);
	VMW(GUEST_RIP, rip);
	VMW(GUEST_RFLAGS, 0x2);

	VMW(GUEST_CS_SEL, 0x10);
	VMW(GUEST_CS_BASE, 0);
	VMW(GUEST_CS_LIMIT, 0xffffffff);
	/* Code exec/read accessed, S, P, G; D/B for 32-bit code, L for 64-bit. */
	VMW(GUEST_CS_AR, need->ept ? 0xc09b : 0xa09b);
	/* Flat 4 GiB data segments, selector 0x18 (read/write accessed, S, P, D/B, G). */
#define DATA_SEG(S)	do { VMW(GUEST_##S##_SEL, 0x18); VMW(GUEST_##S##_BASE, 0); \
			     VMW(GUEST_##S##_LIMIT, 0xffffffff); VMW(GUEST_##S##_AR, 0xc093); } while (0)
	DATA_SEG(SS);
	DATA_SEG(DS);
	DATA_SEG(ES);
	DATA_SEG(FS);
	DATA_SEG(GS);
#undef DATA_SEG
	VMW(GUEST_LDTR_SEL, 0);
	VMW(GUEST_LDTR_BASE, 0);
	VMW(GUEST_LDTR_LIMIT, 0);
	VMW(GUEST_LDTR_AR, 0x10000);	/* unusable */
	VMW(GUEST_TR_SEL, 0);
	VMW(GUEST_TR_BASE, 0);
	VMW(GUEST_TR_LIMIT, 0x67);
	VMW(GUEST_TR_AR, 0x8b);		/* busy 32-bit TSS, P */
	VMW(GUEST_GDTR_BASE, 0);
	VMW(GUEST_GDTR_LIMIT, 0xffff);
	VMW(GUEST_IDTR_BASE, 0);
	VMW(GUEST_IDTR_LIMIT, 0xffff);

	VMW(GUEST_SYSENTER_CS, 0);
	VMW(GUEST_SYSENTER_ESP, cfg.msrlists ? GUEST_SYSENTER_ESP_VALUE : 0);
	VMW(GUEST_SYSENTER_EIP, 0);
	VMW(GUEST_ACTIVITY_STATE, 0);	/* active */
	VMW(GUEST_INTERRUPTIBILITY, 0);
	VMW(GUEST_PENDING_DBG, 0);
	VMW(VMCS_LINK_POINTER, ~0ull);
	VMW(GUEST_IA32_PAT, 0x0007040600070406ull);	/* the power-up PAT */
	VMW(GUEST_IA32_EFER, need->ept ? 0 : EFER_LME | EFER_LMA);
	VMW(GUEST_PDPTE0, 0);
	VMW(GUEST_PDPTE1, 0);
	VMW(GUEST_PDPTE2, 0);
	VMW(GUEST_PDPTE3, 0);

	printf("turtle: guest CR0 0x%llx CR4 0x%llx RIP 0x%llx; host CR0 0x%llx CR3 0x%llx CR4 0x%llx RSP 0x%llx RIP 0x%llx\n",
	       (unsigned long long)cr0, (unsigned long long)cr4, (unsigned long long)rip,
	       (unsigned long long)read_cr0(), (unsigned long long)read_cr3(),
	       (unsigned long long)read_cr4(), (unsigned long long)(uintptr_t)turtle_exit_stack_top,
	       (unsigned long long)(uintptr_t)turtle_vmexit);

	/* Drop any cached translations for this EPTP (SDM 29.4.3.1). */
	if (sec_ctl & SEC_ENABLE_EPT) {
		uint64_t cap = rdmsr(MSR_IA32_VMX_EPT_VPID_CAP);
		struct inv_descriptor desc = { need->eptp, 0 };
		if (cap & (1ull << 20)) {
			uint64_t type = (cap & (1ull << 25)) ? 1 : 2;
			vmx_ok(type == 1 ? "INVEPT single-context" : "INVEPT all-context", invept(type, &desc));
		}
	}
	return setup_failures == before;
}
