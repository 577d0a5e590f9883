/*
 * idt.c - the 64-bit IDT (SDM Vol. 3A 6.14.1 "64-Bit Mode IDT") and the
 * C side of interrupt dispatch.
 */
#include "guest.h"

#define KERNEL_CS		0x08
#define GATE_INTERRUPT		0x8e	/* P=1, DPL=0, type 0xE: 64-bit interrupt gate */
#define ISR_STUB_SIZE		16

struct idt_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern char isr_stubs[];		/* lib/isr.S */

static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t handlers[256];

static const char *const exception_names[32] = {
	"DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM",
	"DF", "CSO", "TS", "NP", "SS", "GP", "PF", "reserved",
	"MF", "AC", "MC", "XM", "VE", "CP", "reserved", "reserved",
	"reserved", "reserved", "reserved", "reserved", "HV", "VC", "SX", "reserved",
};

void idt_init(void)
{
	for (int v = 0; v < 256; v++) {
		uint64_t addr = (uintptr_t)isr_stubs + (uint64_t)v * ISR_STUB_SIZE;

		idt[v].offset_low = (uint16_t)addr;
		idt[v].selector = KERNEL_CS;
		idt[v].ist = 0;
		idt[v].type_attr = GATE_INTERRUPT;
		idt[v].offset_mid = (uint16_t)(addr >> 16);
		idt[v].offset_high = (uint32_t)(addr >> 32);
		idt[v].reserved = 0;
	}

	struct idt_ptr p = { sizeof(idt) - 1, (uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(p));
}

void set_irq_handler(int vector, irq_handler_t fn)
{
	if (vector >= 0 && vector < 256)
		handlers[vector] = fn;
}

static void dump_regs(const struct regs *r)
{
	printf("RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n",
	       (unsigned long long)r->rax, (unsigned long long)r->rbx,
	       (unsigned long long)r->rcx, (unsigned long long)r->rdx);
	printf("RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n",
	       (unsigned long long)r->rsi, (unsigned long long)r->rdi,
	       (unsigned long long)r->rbp, (unsigned long long)r->rsp);
	printf("R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n",
	       (unsigned long long)r->r8, (unsigned long long)r->r9,
	       (unsigned long long)r->r10, (unsigned long long)r->r11);
	printf("R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n",
	       (unsigned long long)r->r12, (unsigned long long)r->r13,
	       (unsigned long long)r->r14, (unsigned long long)r->r15);
	printf("RIP=%016llx CS=%04llx RFLAGS=%08llx SS=%04llx\n",
	       (unsigned long long)r->rip, (unsigned long long)r->cs,
	       (unsigned long long)r->rflags, (unsigned long long)r->ss);
	printf("CR0=%016llx CR2=%016llx CR3=%016llx CR4=%016llx\n",
	       (unsigned long long)read_cr0(), (unsigned long long)read_cr2(),
	       (unsigned long long)read_cr3(), (unsigned long long)read_cr4());
}

void isr_dispatch(struct regs *r);

void isr_dispatch(struct regs *r)
{
	unsigned v = (unsigned)r->vector;

	if (handlers[v]) {
		handlers[v](r);
		return;
	}

	if (v < 32)
		printf("UNEXPECTED EXCEPTION vector %u (#%s) error=0x%llx at rip=0x%llx\n",
		       v, exception_names[v], (unsigned long long)r->error_code,
		       (unsigned long long)r->rip);
	else
		printf("UNEXPECTED INTERRUPT vector %u at rip=0x%llx\n",
		       v, (unsigned long long)r->rip);
	dump_regs(r);
	exit(EXIT_PANIC);
}
