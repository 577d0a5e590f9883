/*
 * vmx.h - VMX instructions for guests (SDM Vol. 3C chapter 31), each run
 * under trap.h so a fault is an outcome rather than a crash.
 *
 * Every wrapper loads RFLAGS with `flags_in` first and returns a struct
 * vmx_result with the outcome and the RFLAGS the instruction left, so a test
 * can check both "VMfailValid" and "RFLAGS unchanged by a fault".
 */
#ifndef GUEST_VMX_H
#define GUEST_VMX_H

#include <stdint.h>
#include "trap.h"

enum vmx_outcome {
	VMX_SUCCEED = 0,	/* CF = ZF = 0 */
	VMX_FAIL_INVALID = 1,	/* CF = 1 */
	VMX_FAIL_VALID = 2,	/* ZF = 1; error in VM_INSTRUCTION_ERROR */
	VMX_FAULT = 3,		/* an exception: see fault.vector */
};

struct vmx_result {
	enum vmx_outcome outcome;
	int vector;		/* for VMX_FAULT */
	uint64_t rflags;
};

#define RFLAGS_CF	(1ull << 0)
#define RFLAGS_ZF	(1ull << 6)
#define RFLAGS_ARITH	0x8d5ull	/* CF PF AF ZF SF OF */
#define RFLAGS_DEFAULT	0x2ull

static inline struct vmx_result vmx_result_of(uint64_t rflags)
{
	struct vmx_result r = { VMX_SUCCEED, fault.vector, rflags };

	if (fault.vector != NO_FAULT)
		r.outcome = VMX_FAULT;
	else if (rflags & RFLAGS_CF)
		r.outcome = VMX_FAIL_INVALID;
	else if (rflags & RFLAGS_ZF)
		r.outcome = VMX_FAIL_VALID;
	return r;
}

/* "pushq flags_in; popfq; <insn>; pushfq; popq out" inside the trap window. */
#define VMX_ASM(insn)	"pushq %[fin]\n\tpopfq\n\t" TRAP_BEGIN insn TRAP_END "pushfq\n\tpopq %[fl]"

static inline struct vmx_result vmxon(uint64_t pa)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmxon %[pa]") : [fl] "=r"(fl) : [pa] "m"(pa), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmxoff(void)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmxoff") : [fl] "=r"(fl) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmclear(uint64_t pa)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmclear %[pa]") : [fl] "=r"(fl) : [pa] "m"(pa), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmptrld(uint64_t pa)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmptrld %[pa]") : [fl] "=r"(fl) : [pa] "m"(pa), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmptrst(uint64_t *pa)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmptrst %[pa]") : [fl] "=r"(fl), [pa] "=m"(*pa) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

/* VMREAD into a register. */
static inline struct vmx_result vmread(uint64_t field, uint64_t *value)
{
	uint64_t fl, v = 0;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmread %[f], %[v]") : [fl] "=r"(fl), [v] "+r"(v) : [f] "r"(field), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	*value = v;
	return vmx_result_of(fl);
}

/* VMREAD into memory at `dst` (which may be unmapped), with chosen RFLAGS. */
static inline struct vmx_result vmread_mem(uint64_t field, uint64_t *dst, uint64_t flags_in)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmread %[f], (%[d])") : [fl] "=r"(fl) : [f] "r"(field), [d] "r"(dst), [fin] "r"(flags_in) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmwrite(uint64_t field, uint64_t value)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmwrite %[v], %[f]") : [fl] "=r"(fl) : [f] "r"(field), [v] "r"(value), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

/* VMWRITE from memory at `src` (which may be unmapped), with chosen RFLAGS. */
static inline struct vmx_result vmwrite_mem(uint64_t field, const uint64_t *src, uint64_t flags_in)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmwrite (%[s]), %[f]") : [fl] "=r"(fl) : [f] "r"(field), [s] "r"(src), [fin] "r"(flags_in) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmlaunch(void)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmlaunch") : [fl] "=r"(fl) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmresume(void)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmresume") : [fl] "=r"(fl) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result vmcall(void)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmcall") : [fl] "=r"(fl) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

/* VMCALL with RAX = *rax in and out: a host that takes VMCALL as its own
 * hypercall (KVM on Intel does, at CPL 3 too) writes its result there. */
static inline struct vmx_result vmcall_rax(uint64_t *rax)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("vmcall") : [fl] "=r"(fl), "+a"(*rax) : [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

struct inv_descriptor {
	uint64_t lo, hi;
};

static inline struct vmx_result invept(uint64_t type, const struct inv_descriptor *d)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("invept %[d], %[t]") : [fl] "=r"(fl) : [t] "r"(type), [d] "m"(*d), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

static inline struct vmx_result invvpid(uint64_t type, const struct inv_descriptor *d)
{
	uint64_t fl;
	trap_reset();
	__asm__ volatile(VMX_ASM("invvpid %[d], %[t]") : [fl] "=r"(fl) : [t] "r"(type), [d] "m"(*d), [fin] "r"(RFLAGS_DEFAULT) : "r11", "cc", "memory");
	return vmx_result_of(fl);
}

/* Runs `mov cr4, v` and reports the vector it raised, or NO_FAULT. */
static inline int write_cr4_checked(uint64_t v)
{
	trap_reset();
	__asm__ volatile(TRAP_BEGIN "mov %[v], %%cr4" TRAP_END : : [v] "r"(v) : "r11", "memory");
	return fault.vector;
}

/* RDMSR / WRMSR that report the vector they raised, or NO_FAULT. */
static inline int rdmsr_checked(uint32_t msr, uint64_t *value)
{
	uint32_t lo = 0, hi = 0;
	trap_reset();
	__asm__ volatile(TRAP_BEGIN "rdmsr" TRAP_END : "+a"(lo), "+d"(hi) : "c"(msr) : "r11", "memory");
	*value = ((uint64_t)hi << 32) | lo;
	return fault.vector;
}

static inline int wrmsr_checked(uint32_t msr, uint64_t value)
{
	trap_reset();
	__asm__ volatile(TRAP_BEGIN "wrmsr" TRAP_END : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)) : "r11", "memory");
	return fault.vector;
}

/* VMCS field encodings used by the guests (SDM Vol. 3C Appendix B). */
#define VMCS_GUEST_RIP			0x681e
#define VMCS_GUEST_RSP			0x681c
#define VMCS_GUEST_CS_SELECTOR		0x0802
#define VMCS_GUEST_CS_LIMIT		0x4802
#define VMCS_TSC_OFFSET			0x2010
#define VMCS_VM_INSTRUCTION_ERROR	0x4400
#define VMCS_EXIT_REASON		0x4402
#define VMCS_EXIT_QUALIFICATION		0x6400
#define VMCS_PIN_BASED_CONTROLS		0x4000

/* VMX MSRs (SDM Vol. 3C Appendix A). */
#define MSR_IA32_FEATURE_CONTROL	0x3a
#define MSR_IA32_VMX_BASIC		0x480
#define MSR_IA32_VMX_PINBASED_CTLS	0x481
#define MSR_IA32_VMX_PROCBASED_CTLS	0x482
#define MSR_IA32_VMX_EXIT_CTLS		0x483
#define MSR_IA32_VMX_ENTRY_CTLS		0x484
#define MSR_IA32_VMX_MISC		0x485
#define MSR_IA32_VMX_CR0_FIXED0		0x486
#define MSR_IA32_VMX_CR0_FIXED1		0x487
#define MSR_IA32_VMX_CR4_FIXED0		0x488
#define MSR_IA32_VMX_CR4_FIXED1		0x489
#define MSR_IA32_VMX_VMCS_ENUM		0x48a
#define MSR_IA32_VMX_PROCBASED_CTLS2	0x48b
#define MSR_IA32_VMX_EPT_VPID_CAP	0x48c
#define MSR_IA32_VMX_TRUE_PINBASED_CTLS	0x48d
#define MSR_IA32_VMX_TRUE_PROCBASED_CTLS 0x48e
#define MSR_IA32_VMX_TRUE_EXIT_CTLS	0x48f
#define MSR_IA32_VMX_TRUE_ENTRY_CTLS	0x490
#define MSR_IA32_VMX_VMFUNC		0x491

#define CR4_VMXE	(1ull << 13)
#define CR0_NE		(1ull << 5)
#define CR0_TS		(1ull << 3)

#endif
