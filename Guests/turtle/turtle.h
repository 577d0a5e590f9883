/*
 * turtle.h - shared declarations of the turtle L1 hypervisor (Guests/turtle.c
 * and Guests/turtle/). VMCS field encodings are from SDM Vol. 3C Appendix B,
 * control bits from SDM Vol. 3C chapter 25 (Intel numbering "24.6-24.8" in
 * older editions), exit reasons from Appendix C.
 */
#ifndef TURTLE_H
#define TURTLE_H

#include "guest.h"
#include "vmx.h"

/* ---- VMCS fields (SDM Vol. 3C Appendix B) ---- */
/* 16-bit guest state */
#define GUEST_ES_SEL		0x0800
#define GUEST_CS_SEL		0x0802
#define GUEST_SS_SEL		0x0804
#define GUEST_DS_SEL		0x0806
#define GUEST_FS_SEL		0x0808
#define GUEST_GS_SEL		0x080a
#define GUEST_LDTR_SEL		0x080c
#define GUEST_TR_SEL		0x080e
/* 16-bit host state */
#define HOST_ES_SEL		0x0c00
#define HOST_CS_SEL		0x0c02
#define HOST_SS_SEL		0x0c04
#define HOST_DS_SEL		0x0c06
#define HOST_FS_SEL		0x0c08
#define HOST_GS_SEL		0x0c0a
#define HOST_TR_SEL		0x0c0c
/* 64-bit controls */
#define IO_BITMAP_A		0x2000
#define IO_BITMAP_B		0x2002
#define MSR_BITMAP		0x2004
#define EXIT_MSR_STORE_ADDR	0x2006
#define EXIT_MSR_LOAD_ADDR	0x2008
#define ENTRY_MSR_LOAD_ADDR	0x200a
#define TSC_OFFSET		0x2010
#define EPT_POINTER		0x201a
/* 64-bit read-only */
#define GUEST_PHYSICAL_ADDRESS	0x2400
/* 64-bit guest state */
#define VMCS_LINK_POINTER	0x2800
#define GUEST_IA32_DEBUGCTL	0x2802
#define GUEST_IA32_PAT		0x2804
#define GUEST_IA32_EFER		0x2806
#define GUEST_PDPTE0		0x280a
#define GUEST_PDPTE1		0x280c
#define GUEST_PDPTE2		0x280e
#define GUEST_PDPTE3		0x2810
/* 64-bit host state */
#define HOST_IA32_PAT		0x2c00
#define HOST_IA32_EFER		0x2c02
/* 32-bit controls */
#define PIN_BASED_CONTROLS	0x4000
#define PROC_BASED_CONTROLS	0x4002
#define EXCEPTION_BITMAP	0x4004
#define PF_ERROR_CODE_MASK	0x4006
#define PF_ERROR_CODE_MATCH	0x4008
#define CR3_TARGET_COUNT	0x400a
#define EXIT_CONTROLS		0x400c
#define EXIT_MSR_STORE_COUNT	0x400e
#define EXIT_MSR_LOAD_COUNT	0x4010
#define ENTRY_CONTROLS		0x4012
#define ENTRY_MSR_LOAD_COUNT	0x4014
#define ENTRY_INTR_INFO		0x4016
#define ENTRY_EXCEPTION_ERRCODE	0x4018
#define ENTRY_INSTRUCTION_LEN	0x401a
#define SECONDARY_CONTROLS	0x401e
/* 32-bit read-only */
#define VM_INSTRUCTION_ERROR	0x4400
#define EXIT_REASON		0x4402
#define EXIT_INTR_INFO		0x4404
#define EXIT_INTR_ERRCODE	0x4406
#define IDT_VECTORING_INFO	0x4408
#define IDT_VECTORING_ERRCODE	0x440a
/* The bits of an exit or IDT-vectoring interruption-information field that
 * VM-entry injection takes (SDM 25.8.3): vector, type, error code, valid. */
#define INTR_INFO_INJECTABLE	((1u << 31) | (1u << 11) | (7u << 8) | 0xff)
#define EXIT_INSTRUCTION_LEN	0x440c
#define EXIT_INSTRUCTION_INFO	0x440e
/* 32-bit guest state */
#define GUEST_ES_LIMIT		0x4800
#define GUEST_CS_LIMIT		0x4802
#define GUEST_SS_LIMIT		0x4804
#define GUEST_DS_LIMIT		0x4806
#define GUEST_FS_LIMIT		0x4808
#define GUEST_GS_LIMIT		0x480a
#define GUEST_LDTR_LIMIT	0x480c
#define GUEST_TR_LIMIT		0x480e
#define GUEST_GDTR_LIMIT	0x4810
#define GUEST_IDTR_LIMIT	0x4812
#define GUEST_ES_AR		0x4814
#define GUEST_CS_AR		0x4816
#define GUEST_SS_AR		0x4818
#define GUEST_DS_AR		0x481a
#define GUEST_FS_AR		0x481c
#define GUEST_GS_AR		0x481e
#define GUEST_LDTR_AR		0x4820
#define GUEST_TR_AR		0x4822
#define GUEST_INTERRUPTIBILITY	0x4824
#define GUEST_ACTIVITY_STATE	0x4826
#define GUEST_SYSENTER_CS	0x482a
#define PREEMPTION_TIMER_VALUE	0x482e
/* 32-bit host state */
#define HOST_SYSENTER_CS	0x4c00
/* natural-width controls */
#define CR0_GUEST_HOST_MASK	0x6000
#define CR4_GUEST_HOST_MASK	0x6002
#define CR0_READ_SHADOW		0x6004
#define CR4_READ_SHADOW		0x6006
/* natural-width read-only */
#define EXIT_QUALIFICATION	0x6400
#define GUEST_LINEAR_ADDRESS	0x640a
/* natural-width guest state */
#define GUEST_CR0		0x6800
#define GUEST_CR3		0x6802
#define GUEST_CR4		0x6804
#define GUEST_ES_BASE		0x6806
#define GUEST_CS_BASE		0x6808
#define GUEST_SS_BASE		0x680a
#define GUEST_DS_BASE		0x680c
#define GUEST_FS_BASE		0x680e
#define GUEST_GS_BASE		0x6810
#define GUEST_LDTR_BASE		0x6812
#define GUEST_TR_BASE		0x6814
#define GUEST_GDTR_BASE		0x6816
#define GUEST_IDTR_BASE		0x6818
#define GUEST_DR7		0x681a
#define GUEST_RSP		0x681c
#define GUEST_RIP		0x681e
#define GUEST_RFLAGS		0x6820
#define GUEST_PENDING_DBG	0x6822
#define GUEST_SYSENTER_ESP	0x6824
#define GUEST_SYSENTER_EIP	0x6826
/* natural-width host state */
#define HOST_CR0		0x6c00
#define HOST_CR3		0x6c02
#define HOST_CR4		0x6c04
#define HOST_FS_BASE		0x6c06
#define HOST_GS_BASE		0x6c08
#define HOST_TR_BASE		0x6c0a
#define HOST_GDTR_BASE		0x6c0c
#define HOST_IDTR_BASE		0x6c0e
#define HOST_SYSENTER_ESP	0x6c10
#define HOST_SYSENTER_EIP	0x6c12
#define HOST_RSP		0x6c14
#define HOST_RIP		0x6c16

/* ---- CR0, CR4 and EFER bits (SDM Vol. 3A 2.5, 2.2.1) ---- */
#define CR0_PE		(1ull << 0)
#define CR0_ET		(1ull << 4)
#define CR0_WP		(1ull << 16)
#define CR0_PG		(1ull << 31)
#define CR4_PSE		(1ull << 4)
#define CR4_PAE		(1ull << 5)
#define CR4_PGE		(1ull << 7)
#define CR4_PCIDE	(1ull << 17)
#define CR4_SMEP	(1ull << 20)
#define CR4_SMAP	(1ull << 21)
#define EFER_LME	(1ull << 8)
#define EFER_LMA	(1ull << 10)
#define EFER_NXE	(1ull << 11)

/* ---- Control bits ---- */
#define PIN_EXTINT_EXITING	(1u << 0)
#define PIN_NMI_EXITING		(1u << 3)
#define PIN_PREEMPTION_TIMER	(1u << 6)

#define PROC_INTR_WINDOW	(1u << 2)
#define PROC_TSC_OFFSETTING	(1u << 3)
#define PROC_HLT_EXITING	(1u << 7)
#define PROC_INVLPG_EXITING	(1u << 9)
#define PROC_MWAIT_EXITING	(1u << 10)
#define PROC_RDPMC_EXITING	(1u << 11)
#define PROC_RDTSC_EXITING	(1u << 12)
#define PROC_CR3_LOAD_EXITING	(1u << 15)
#define PROC_CR3_STORE_EXITING	(1u << 16)
#define PROC_CR8_LOAD_EXITING	(1u << 19)
#define PROC_CR8_STORE_EXITING	(1u << 20)
#define PROC_MOV_DR_EXITING	(1u << 23)
#define PROC_MONITOR_TRAP_FLAG	(1u << 27)
#define PROC_UNCOND_IO		(1u << 24)
#define PROC_IO_BITMAPS		(1u << 25)
#define PROC_MSR_BITMAPS	(1u << 28)
#define PROC_MONITOR_EXITING	(1u << 29)
#define PROC_PAUSE_EXITING	(1u << 30)
#define PROC_SECONDARY		(1u << 31)

#define SEC_ENABLE_EPT		(1u << 1)
#define SEC_DESC_TABLE_EXITING	(1u << 2)
#define SEC_ENABLE_RDTSCP	(1u << 3)
#define SEC_ENABLE_VPID		(1u << 5)
#define SEC_WBINVD_EXITING	(1u << 6)
#define SEC_UNRESTRICTED_GUEST	(1u << 7)
#define SEC_RDRAND_EXITING	(1u << 11)
#define SEC_ENABLE_INVPCID	(1u << 12)
#define SEC_RDSEED_EXITING	(1u << 16)

#define EXIT_SAVE_DEBUG		(1u << 2)
#define EXIT_HOST_ADDR_SPACE	(1u << 9)
#define EXIT_ACK_INTERRUPT	(1u << 15)
#define EXIT_SAVE_PAT		(1u << 18)
#define EXIT_LOAD_PAT		(1u << 19)
#define EXIT_SAVE_EFER		(1u << 20)
#define EXIT_LOAD_EFER		(1u << 21)
#define EXIT_SAVE_PREEMPTION	(1u << 22)

#define ENTRY_LOAD_DEBUG	(1u << 2)
#define ENTRY_IA32E_GUEST	(1u << 9)
#define ENTRY_LOAD_PAT		(1u << 14)
#define ENTRY_LOAD_EFER		(1u << 15)

/* ---- Exit reasons (SDM Vol. 3C Appendix C) ---- */
#define EXIT_REASON_EXCEPTION		0
#define EXIT_REASON_EXTERNAL_INTERRUPT	1
#define EXIT_REASON_TRIPLE_FAULT	2
#define EXIT_REASON_CPUID		10
#define EXIT_REASON_HLT			12
#define EXIT_REASON_INVD		13
#define EXIT_REASON_INVLPG		14
#define EXIT_REASON_RDPMC		15
#define EXIT_REASON_RDTSC		16
#define EXIT_REASON_CR_ACCESS		28
#define EXIT_REASON_DR_ACCESS		29
#define EXIT_REASON_VMCALL		18
#define EXIT_REASON_VMCLEAR		19	/* 19-27: VMCLEAR ... VMXON */
#define EXIT_REASON_VMXON		27
#define EXIT_REASON_IO			30
#define EXIT_REASON_RDMSR		31
#define EXIT_REASON_WRMSR		32
#define EXIT_REASON_INVALID_GUEST	33
#define EXIT_REASON_MSR_LOADING		34
#define EXIT_REASON_MONITOR_TRAP_FLAG	37
#define EXIT_REASON_MWAIT_INSTRUCTION		36
#define EXIT_REASON_MONITOR_INSTRUCTION		39
#define EXIT_REASON_PAUSE_INSTRUCTION		40
#define EXIT_REASON_GDTR_IDTR		46
#define EXIT_REASON_LDTR_TR		47
#define EXIT_REASON_EPT_VIOLATION	48
#define EXIT_REASON_EPT_MISCONFIG	49
#define EXIT_REASON_INVEPT		50
#define EXIT_REASON_RDTSCP		51
#define EXIT_REASON_PREEMPTION_TIMER	52
#define EXIT_REASON_INVVPID		53
#define EXIT_REASON_WBINVD		54
#define EXIT_REASON_XSETBV		55
#define EXIT_REASON_RDRAND		57
#define EXIT_REASON_INVPCID		58
#define EXIT_REASON_RDSEED		61
#define EXIT_REASON_MAX			70

/* ---- Hypercall ABI (VMCALL, RAX = number) ---- */
#define HC_PRINT	0	/* RBX = L2-physical address of a NUL-terminated string */
#define HC_DONE		1	/* RBX = exit status: L2 finished */
#define HC_NOP		2	/* counted, returns 0 */
#define HC_MTF		3	/* RBX = 1: set "monitor trap flag" and count its exits (RAX = 0, or -1 when
				 * not allowed); RBX = 0: clear it, RAX = MTF VM exits since it was set */

/*
 * L2's general-purpose registers while turtle handles an exit, indexed by
 * the x86 register number (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI,
 * 7 RDI, 8-15 R8-R15) so that ModRM fields index it directly. Slot 4 is
 * unused: L2's RSP lives in the VMCS (GUEST_RSP). Offsets are fixed for
 * turtle/entry.S.
 */
enum { R_RAX, R_RCX, R_RDX, R_RBX, R_RSP, R_RBP, R_RSI, R_RDI,
       R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15 };
extern uint64_t l2_gprs[16];

/* ---- Configuration (turtle.c) ---- */
struct turtle_config {
	bool ept;
	bool shadow;			/* paging=shadow: turtle shadows L2's page tables (shadow.c) */
	bool scatter;			/* p2m=scatter (p2m.c) */
	bool io_all;
	bool prefix;			/* "[L2] " at the start of L2 output lines */
	bool msrlists;			/* exercise the VM-entry/exit MSR lists */
	uint64_t timer;			/* L1 APIC timer period in bus ticks (0 = off) */
	uint64_t exceptions;		/* exception bitmap: L2 exceptions to intercept */
	bool ad;			/* EPT accessed/dirty flags (EPTP bit 6) */
	bool evmcs;			/* vmcs=enlightened: Hyper-V's eVMCS (evmcs.c) */
	bool hlt_wait;			/* no HLT exiting: L2's HLT waits in the HLT state */
	bool irq_direct;		/* no external-interrupt exiting (ept=off) */
	bool intercept_rdtsc;		/* RDTSC exiting */
	bool intercept_cr3;		/* CR3-load and CR3-store exiting */
	bool intercept_invlpg;		/* INVLPG exiting */
	bool intercept_dr;		/* MOV-DR exiting */
	bool intercept_wbinvd;		/* WBINVD exiting */
	bool intercept_cr8;		/* CR8-load and CR8-store exiting */
	bool intercept_pause;		/* PAUSE exiting */
	bool intercept_rdpmc;		/* RDPMC exiting */
	bool intercept_mwait;		/* MONITOR and MWAIT exiting */
	bool intercept_rdrand;		/* RDRAND and RDSEED exiting */
	bool intercept_desc;		/* descriptor-table exiting */
	uint64_t cr0_mask, cr4_mask;	/* guest/host masks: the CR bits turtle owns */
	uint64_t tsc_offset;		/* 0 = no TSC offsetting */
	uint64_t l2mem;			/* bytes of L2 physical memory */
	uint64_t preempt;		/* 0 = no preemption timer */
};
extern struct turtle_config cfg;
/* ept=off (paging=identity): L2 reaches turtle's own devices, its APIC too;
 * with EPT or shadow paging it gets turtle's APIC for L2 (vapic.c). */
static inline bool l2_uses_turtles_apic(void) { return !cfg.ept && !cfg.shadow; }

/* L2 memory: the p2m and the paging strategy turtle.c chose (l2mem.h). */
#include "l2mem.h"
extern const struct l2mem_strategy *l2mem;

/* entry.S */
extern char turtle_vmexit[];
/* Enter L2 (launch != 0: VMLAUNCH, else VMRESUME) and run until an exit
 * handler asks to stop (returns 0), or VMLAUNCH/VMRESUME fails (returns 1
 * for VMfailInvalid, 2 for VMfailValid). */
int turtle_run(int launch);
extern uint8_t turtle_exit_stack_top[];

/* util (turtle.c) */
void fast_copy(void *dst, const void *src, uint64_t n);
void fast_zero(void *dst, uint64_t n);
uint64_t vmr(uint32_t field);				/* VMREAD; FAIL line if it fails */
bool vmw_named(uint32_t field, uint64_t value, const char *name);
#define VMW(field, value)	vmw_named(field, value, #field)
extern int setup_failures;
__attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...);

/* gdt.c: turtle's own GDT with a 64-bit TSS (the host TR must be non-null). */
#define TURTLE_CS	0x08
#define TURTLE_DS	0x10
#define TURTLE_TR	0x18
void turtle_gdt_init(void);
uint64_t turtle_gdt_base(void);
uint64_t turtle_tss_base(void);

/* loader.c */
struct l2_image {
	uint64_t entry;
	uint64_t entry64;		/* the 64-bit entry of the image's "T64E" tag, or 0 */
	uint64_t mbi;			/* L2-physical address of the multiboot info */
	uint64_t lo, hi;		/* L2-physical extent of the loaded segments */
};
/* Loads module bytes [img, img+len) into L2 memory and builds the MBI with
 * cmdline. Returns false (after printing why) on failure. */
bool l2_load(const uint8_t *img, uint64_t len, const char *cmdline, struct l2_image *out);
/* L2's executable segments in L2 memory still equal the image's bytes. */
bool l2_code_intact(void);

/* vmcs.c */
extern uint32_t pin_ctl, proc_ctl, sec_ctl, exit_ctl, entry_ctl;	/* as written to the VMCS */
bool primary_control_allowed(uint32_t bit);
extern bool preempt_allowed;		/* the preemption timer may be switched on */
bool vmx_enable(void);
bool vmcs_setup(const struct l2_image *img, const struct l2mem_needs *need);
void vmx_disable(void);
const char *vm_instruction_error_name(uint64_t err);

/* evmcs.c: vmcs=enlightened. evmcs_read/evmcs_write are false for a field
 * the eVMCS has no room for. */
bool evmcs_enable(void);		/* CPUID checks, VP assist page */
void evmcs_make_current(void);		/* instead of VMCLEAR and VMPTRLD */
bool evmcs_read(uint32_t field, uint64_t *value);
bool evmcs_write(uint32_t field, uint64_t value);
void evmcs_exit(void);			/* after each VM exit: every clean bit set */
uint64_t vm_instruction_error(void);	/* the VM-instruction error field, either kind of VMCS */

/* exit.c */
extern uint64_t exit_counts[EXIT_REASON_MAX + 1];
extern uint64_t exit_other;
extern bool l2_finished;
extern uint32_t l2_status;
extern const char *stop_why;		/* why the run stopped */
int turtle_handle_exit(void);		/* called by entry.S: 0 resume, 1 stop */
void turtle_timer_interrupt(struct regs *r);	/* turtle's IDT handler for TURTLE_TIMER_VECTOR */
void exit_report(void);
const char *exit_reason_name(uint32_t reason);

/* vapic.c: the local APIC L2 sees at VAPIC_BASE, emulated on EPT violations. */
#define VAPIC_BASE		0xfee00000ull
bool vapic_claims(uint64_t gpa);
uint32_t vapic_read(uint32_t offset);
const char *vapic_write(uint32_t offset, uint32_t value);	/* NULL, or why the run must stop */
int vapic_deliverable(void);		/* the vector L2 would take now by priority, or -1 */
int vapic_ack(void);			/* that vector moves from IRR to ISR; -1 if none */
bool vapic_timer_armed(void);		/* an expiry of L2's timer is still to come */
void vapic_timer_fired(void);		/* turtle's timer expired while it runs L2's */
void vapic_pass_through(uint8_t vector);	/* ept=off: an interrupt L2 raised on turtle's APIC */
void vapic_report(void);

/* MSR lists (SDM 25.7.2, 25.8.2): 16-byte entries, 16-byte aligned. */
struct msr_entry {
	uint32_t index, reserved;
	uint64_t value;
} __attribute__((aligned(16)));

#define TURTLE_TIMER_VECTOR	0x40		/* turtle's own APIC timer */
#define TURTLE_SPURIOUS_VECTOR	0xff

#define MSR_LIST_MSR		0x174u		/* IA32_SYSENTER_CS */
#define MSR_LIST_L2_VALUE	0x1234u		/* loaded into L2 at entry */
#define MSR_LIST_L1_VALUE	0x5678u		/* loaded into L1 at exit */
#define MSR_SYSENTER_ESP	0x175u
#define MSR_SYSENTER_EIP	0x176u
#define GUEST_SYSENTER_ESP_VALUE 0x5e5e000u	/* guest-state field, loaded into L2 */
#define HOST_SYSENTER_EIP_VALUE	0xfeed000u	/* host-state field, loaded into L1 */
extern struct msr_entry msr_entry_load[1], msr_exit_store[3], msr_exit_load[1];

#endif
