/*
 * entry.S - turtle's VM entry and VM-exit stub.
 *
 * VMX does not save or load general-purpose registers (SDM Vol. 3C 27.3,
 * 28.5): L2 starts with whatever L1 has in them, and after a VM exit L1 gets
 * L2's values. So turtle_run loads L2's 15 GPRs from l2_gprs (RSP is in the
 * VMCS) right before VMLAUNCH/VMRESUME, and the exit stub (HOST_RIP, running
 * on the dedicated exit stack at HOST_RSP) stores them back, calls the C
 * handler, and VMRESUMEs.
 *
 * VMLAUNCH/VMRESUME that fail (VMfailInvalid: CF=1, VMfailValid: ZF=1; SDM
 * 31.2) fall through to the next instruction with the host's RSP/RIP
 * unchanged: that path and "the handler asked to stop" both unwind to
 * turtle_run's caller through the stack pointer saved at entry.
 */
#define L2(i)	l2_gprs+8*i(%rip)

/* Load L2's GPRs, RAX last. */
.macro LOAD_L2
	movq L2(1), %rcx
	movq L2(2), %rdx
	movq L2(3), %rbx
	movq L2(5), %rbp
	movq L2(6), %rsi
	movq L2(7), %rdi
	movq L2(8), %r8
	movq L2(9), %r9
	movq L2(10), %r10
	movq L2(11), %r11
	movq L2(12), %r12
	movq L2(13), %r13
	movq L2(14), %r14
	movq L2(15), %r15
	movq L2(0), %rax
.endm

	.text
	.globl turtle_run
	.type turtle_run, @function
/* int turtle_run(int launch) */
turtle_run:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, turtle_saved_rsp(%rip)
	testl %edi, %edi
	jz 1f
	LOAD_L2
	vmlaunch
	jmp turtle_vmfail
1:	LOAD_L2
	vmresume
	jmp turtle_vmfail
	.size turtle_run, . - turtle_run

/* HOST_RIP: RSP = HOST_RSP (16-byte aligned), RFLAGS = 0x2 (SDM 28.5.3). */
	.globl turtle_vmexit
	.type turtle_vmexit, @function
turtle_vmexit:
	movq %rax, L2(0)
	movq %rcx, L2(1)
	movq %rdx, L2(2)
	movq %rbx, L2(3)
	movq %rbp, L2(5)
	movq %rsi, L2(6)
	movq %rdi, L2(7)
	movq %r8, L2(8)
	movq %r9, L2(9)
	movq %r10, L2(10)
	movq %r11, L2(11)
	movq %r12, L2(12)
	movq %r13, L2(13)
	movq %r14, L2(14)
	movq %r15, L2(15)
	cld
	xorl %ebp, %ebp
	call turtle_handle_exit
	testl %eax, %eax
	jnz 2f
	LOAD_L2
	vmresume
	/* VMRESUME failed: fall into turtle_vmfail on the exit stack. */
turtle_vmfail:
	pushfq
	popq %rcx
	movl $1, %eax
	testq $1, %rcx			/* CF: VMfailInvalid */
	jnz 3f
	movl $2, %eax			/* ZF: VMfailValid */
	testq $0x40, %rcx
	jnz 3f
	movl $3, %eax			/* neither: cannot happen */
	jmp 3f
2:	xorl %eax, %eax			/* the handler asked to stop */
3:	movq turtle_saved_rsp(%rip), %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret
	.size turtle_vmexit, . - turtle_vmexit

	.bss
	.balign 8
turtle_saved_rsp:
	.skip 8
	.globl l2_gprs
	.balign 64
l2_gprs:
	.skip 16 * 8
	.balign 4096
	.globl turtle_exit_stack_top
turtle_exit_stack:
	.skip 32 * 1024
turtle_exit_stack_top:

	.section .note.GNU-stack, "", @progbits
