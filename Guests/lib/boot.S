/*
 * boot.S - Multiboot v1 header and the 32-bit -> 64-bit transition.
 *
 * Machine state at _start (Multiboot spec 0.6.96, 3.2 "Machine state"):
 * 32-bit protected mode, paging off, flat CS/DS/ES/SS, EAX = 0x2BADB002,
 * EBX = physical address of the multiboot information. ESP and the GDT
 * are undefined, so we use neither until we have set up our own.
 *
 * Long mode is entered as in SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode":
 * build 4-level page tables, CR4.PAE = 1, CR3 = PML4, EFER.LME = 1,
 * CR0.PG = 1, then a far jump into a 64-bit code segment.
 */

#define MB_HEADER_MAGIC	0x1badb002
#define MB_HEADER_FLAGS	0x00000003	/* bit 0: page-align modules, bit 1: memory info */

#define CR0_PE		0x00000001
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER	0xc0000080
#define EFER_LME	0x00000100

/* Page-table entry bits (SDM Vol. 3A 4.5 "4-Level Paging") */
#define PTE_P		0x001
#define PTE_RW		0x002
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080		/* 2 MiB page in a PD entry */

#define ENTRY64_TAG_MAGIC 0x45343654	/* "T64E" */

#define KERNEL_CS	0x08
#define KERNEL_DS	0x10

/*
 * Multiboot header (spec 3.1.1): 4-byte aligned, within the first 8 KiB
 * of the image. The link script puts this section first.
 */
	.section .multiboot, "a"
	.balign 4
	.long MB_HEADER_MAGIC
	.long MB_HEADER_FLAGS
	.long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)
	/*
	 * Terrapin's tag, where flags bit 16 would put the a.out addresses
	 * (loaders ignore these words while that bit is clear): the address
	 * of the 64-bit entry _start64 below.
	 */
	.long ENTRY64_TAG_MAGIC
	.long _start64

	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	movl %eax, boot_magic		/* checked later by mb_magic() users */
	movl %ebx, boot_mbi

	/* Zero .bss (the stack lives there); the page tables are in .data. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	movl $boot_stack_top, %esp

	/* SDM 10.8.5 steps: PAE, CR3, EFER.LME, then paging. */
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4

	movl $boot_pml4, %eax
	movl %eax, %cr3

	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr

	lgdt boot_gdt_ptr

	movl %cr0, %eax
	orl $(CR0_PE + CR0_PG), %eax
	movl %eax, %cr0			/* now in compatibility mode */

	ljmp $KERNEL_CS, $start64	/* load the 64-bit CS: 64-bit mode */

/*
 * _start64: a second entry, in 64-bit mode, for a loader that cannot start
 * a guest with paging off: a VMX hypervisor without "unrestricted guest"
 * (SDM 27.3.1.1: CR0.PG must then be 1), such as turtle with ept=off. The
 * loader enters with paging on, identity-mapping at least this image, a
 * 64-bit CS and interrupts off, with EAX = the multiboot magic and EBX =
 * the MBI as at _start. This image's own page tables (built in .data),
 * GDT and stack take over at once, so nothing else of the loader's state
 * is used.
 */
	.code64
	.globl _start64
	/* A function symbol, so that L0 sweeps this 64-bit code for sensitive
	 * instructions (docs/PATCHING.md): its MOV to CR3 must reach a
	 * hypervisor with CR3-load exiting, such as turtle paging=shadow. */
	.type _start64, @function
_start64:
	cli
	cld
	movl %eax, boot_magic(%rip)
	movl %ebx, boot_mbi(%rip)
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	xorl %eax, %eax
	rep stosb
	leaq boot_stack_top(%rip), %rsp
	leaq boot_pml4(%rip), %rax
	movq %rax, %cr3
	lgdt boot_gdt_ptr(%rip)
	pushq $KERNEL_CS
	leaq start64(%rip), %rax
	pushq %rax
	lretq				/* reload CS from our GDT */

start64:
	movw $KERNEL_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movq $boot_stack_top, %rsp
	xorl %ebp, %ebp
	movl boot_mbi(%rip), %edi
	call kmain			/* void kmain(uint32_t mbi_phys) */
2:	cli
	hlt
	jmp 2b
	.size _start64, . - _start64

/*
 * GDT (SDM Vol. 3A 3.4.5 "Segment Descriptors", 5.2.1 for the L bit).
 * In 64-bit mode the base and limit are ignored; only L, D, P, DPL, type
 * matter for CS.
 */
	.section .data
	.balign 8
boot_gdt:
	.quad 0				/* null */
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code, L=1 D=0, DPL 0 */
	.quad 0x00cf92000000ffff	/* 0x10: data, read/write */
boot_gdt_end:

	.balign 8
boot_gdt_ptr:
	.word boot_gdt_end - boot_gdt - 1
	.quad boot_gdt			/* 32-bit LGDT reads the low 4 bytes */

	.globl boot_magic, boot_mbi
	.balign 4
boot_magic:	.long 0
boot_mbi:	.long 0

/*
 * The page tables, built here rather than by code, so that both entries
 * use them as they are: PML4[0] -> PDPT, PDPT[0..3] -> four page
 * directories whose 2048 entries map 0-4 GiB identically with 2 MiB pages
 * (SDM Vol. 3A 4.5). 3-4 GiB holds MMIO (the 0xd0000000 test address, the
 * local APIC at 0xfee00000): uncacheable, PCD|PWT (SDM Vol. 3A 12.12.3).
 */
	.balign 4096
	.globl boot_pml4, boot_pdpt, boot_pd	/* lib/usermode.c sets U/S bits */
boot_pml4:
	.quad boot_pdpt + PTE_P + PTE_RW
	.fill 511, 8, 0
boot_pdpt:
	.quad boot_pd + PTE_P + PTE_RW
	.quad boot_pd + 0x1000 + PTE_P + PTE_RW
	.quad boot_pd + 0x2000 + PTE_P + PTE_RW
	.quad boot_pd + 0x3000 + PTE_P + PTE_RW
	.fill 508, 8, 0
boot_pd:
	.set page, 0
	.rept 3 * 512
	.quad page + PTE_P + PTE_RW + PTE_PS
	.set page, page + 0x200000
	.endr
	.rept 512
	.quad page + PTE_P + PTE_RW + PTE_PS + PTE_PCD + PTE_PWT
	.set page, page + 0x200000
	.endr

	.section .bss
	.balign 16
boot_stack:	.skip 64 * 1024
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
