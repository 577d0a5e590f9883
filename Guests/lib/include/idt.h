/*
 * idt.h - 64-bit IDT with entry stubs for all 256 vectors
 * (SDM Vol. 3A 6.14 "Exception and Interrupt Handling in 64-bit Mode").
 */
#ifndef GUEST_IDT_H
#define GUEST_IDT_H

#include <stdint.h>

/* Saved state, in stack order as built by lib/isr.S (lowest address first). */
struct regs {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
	uint64_t vector, error_code;		/* pushed by the stub */
	uint64_t rip, cs, rflags, rsp, ss;	/* pushed by the CPU */
};

typedef void (*irq_handler_t)(struct regs *);

void idt_init(void);

/*
 * Install fn for a vector (normally 32-255). Exception vectors 0-31 may be
 * claimed too, e.g. by a test that expects a #GP. NULL restores the default,
 * which reports an unexpected exception/interrupt and exits with value 3.
 */
void set_irq_handler(int vector, irq_handler_t fn);

#endif
