/*
 * isr.S - entry stubs for all 256 IDT vectors.
 *
 * In 64-bit mode the CPU aligns RSP to 16 bytes and pushes SS, RSP,
 * RFLAGS, CS, RIP and, for some exceptions, an error code (SDM Vol. 3A
 * 6.14.2 "64-Bit Mode Stack Frame"; which vectors push one: table 6-1).
 * Each stub pushes a dummy error code where the CPU does not, then the
 * vector number, so every frame has the layout of struct regs (idt.h).
 *
 * Stubs are 16 bytes apart: stub for vector v is at isr_stubs + 16 * v.
 */

	.text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	/* #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX push error codes */
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

isr_common:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rbx
	pushq %rbp
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	/* 5 CPU + 2 stub + 15 GPR slots = 176 bytes: RSP is 16-aligned here */
	movq %rsp, %rdi
	cld
	call isr_dispatch		/* void isr_dispatch(struct regs *) */
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rbp
	popq %rbx
	popq %rdx
	popq %rcx
	popq %rax
	addq $16, %rsp			/* drop vector and error code */
	iretq

	.section .note.GNU-stack, "", @progbits
