/*
 * usermode.c - CPL 3 entry and return (see usermode.h).
 *
 * Entry: user_enter() saves the callee-saved registers and RSP, then IRETQ
 * with a CPL-3 frame (SS = USER_DS, RSP = user stack, CS = USER_CS,
 * RIP = user_trampoline). IRET to an outer privilege level loads CS and SS
 * from the frame and nulls DS/ES/FS/GS that hold DPL-0 data selectors
 * (SDM Vol. 2A "IRET", RETURN-TO-OUTER-PRIVILEGE-LEVEL).
 *
 * Return: the trampoline calls fn, then divides by zero at a fixed address,
 * user_return_point. The #DE is delivered through the IDT with a switch to
 * the TSS's RSP0 stack (SDM Vol. 3A 6.12.1, 6.14.2, 7.7); its handler checks
 * that it came from that address at CPL 3 and rewrites the frame so that
 * IRETQ "returns" to user_exit at CPL 0 on the RSP saved at entry, which
 * pops the callee-saved registers and RFLAGS and returns to
 * run_in_user_mode's caller with fn's value (RAX survives: the handler
 * reloads every GPR from the frame).
 *
 * Why an exception and not `int $0x80` through a DPL-3 gate or SYSCALL:
 * where KVM emulates guest code (as on our test hosts), INT n at CPL 3
 * raises #UD (KVM's emulator has no protected-mode INT n and turns an
 * emulation failure at CPL > 0 into #UD), and SYSCALL reached IA32_LSTAR
 * with CS and SS still the user's. Exception delivery works everywhere.
 *
 * Other faults at CPL 3 reach the usual handlers the same way, and IRETQ
 * goes back to CPL 3 with the frame's CS, SS and RSP.
 */
#include "guest.h"
#include "usermode.h"

#define PTE_US			(1ull << 2)	/* SDM Vol. 3A 4.6.1: user-mode access */
#define PAGE_2M			0x200000ull

/* 64-bit TSS (SDM Vol. 3A 7.7, figure 7-11). */
struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];	/* stack for a switch to CPL 0, 1, 2 */
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;	/* >= limit: no I/O bitmap, so I/O at CPL 3 is #GP */
} __attribute__((packed));

struct gdt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/*
 * Descriptors (SDM Vol. 3A 3.4.5). Entries 1-2 are boot.S's, so the loaded
 * CS (0x08) and SS (0x10) stay valid across LGDT. (The order is the one
 * SYSCALL/SYSRET would expect: kernel CS, kernel SS, user SS, user CS.)
 */
static uint64_t gdt[7] __attribute__((aligned(16))) = {
	0,
	0x00af9a000000ffffull,	/* 0x08: 64-bit code, DPL 0 */
	0x00cf92000000ffffull,	/* 0x10: data, read/write, DPL 0 */
	0x00cff2000000ffffull,	/* 0x18: data, read/write, DPL 3 */
	0x00affa000000ffffull,	/* 0x20: 64-bit code, DPL 3 */
	0, 0,			/* 0x28: 64-bit TSS (16 bytes), filled in below */
};

static struct tss64 tss __attribute__((aligned(16)));
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));	/* TSS.RSP0 */
static uint8_t user_stack[16384] __attribute__((aligned(16)));

extern uint64_t boot_pml4[512], boot_pdpt[512], boot_pd[4 * 512];	/* boot.S */
extern char __image_start[], __image_end[];				/* link.ld */

uint64_t user_kernel_rsp;	/* RSP of user_enter after its pushes */
static bool initialized;

int user_enter(user_fn_t fn, uint64_t user_rsp);
extern char user_return_point[], user_exit[];

#define STR_(x)	#x
#define STR(x)	STR_(x)

__asm__(
	"	.text\n"
	"	.globl user_enter\n"
	/* int user_enter(user_fn_t fn [rdi], uint64_t user_rsp [rsi]) */
	"user_enter:\n"
	"	pushfq\n"
	"	pushq %rbx\n"
	"	pushq %rbp\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	movq %rsp, user_kernel_rsp(%rip)\n"
	"	pushq $" STR(USER_DS) "\n"		/* SS */
	"	pushq %rsi\n"				/* RSP */
	"	pushfq\n"				/* RFLAGS: keep IF only */
	"	andq $0x202, (%rsp)\n"
	"	pushq $" STR(USER_CS) "\n"		/* CS */
	"	leaq user_trampoline(%rip), %rax\n"
	"	pushq %rax\n"				/* RIP */
	"	iretq\n"
	/* CPL 3, RSP 16-byte aligned, RDI = fn */
	"	.globl user_trampoline\n"
	"user_trampoline:\n"
	"	call *%rdi\n"				/* EAX = fn's value */
	"	xorl %ecx, %ecx\n"
	"	.globl user_return_point\n"
	"user_return_point:\n"
	"	divl %ecx\n"				/* #DE: back to CPL 0 */
	"	ud2\n"
	/* CPL 0 again (IRETQ from user_return), RSP = user_kernel_rsp */
	"	.globl user_exit\n"
	"user_exit:\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbp\n"
	"	popq %rbx\n"
	"	popfq\n"
	"	ret\n");

/* #DE: the trampoline's is the way back to CPL 0; any other is unexpected. */
static void user_return(struct regs *r)
{
	if ((r->cs & 3) != 3 || r->rip != (uintptr_t)user_return_point)
		panic("UNEXPECTED EXCEPTION vector 0 (#DE) at rip=0x%llx cs=0x%llx",
		      (unsigned long long)r->rip, (unsigned long long)r->cs);
	r->rip = (uintptr_t)user_exit;
	r->cs = KERNEL_CS;
	r->ss = KERNEL_DS;
	r->rsp = user_kernel_rsp;
}

/*
 * Set U/S on every level that maps [start, end): the boot tables map 0-4 GiB
 * with 2 MiB pages through PML4[0] -> PDPT[0..3] -> boot_pd. A user access
 * needs U/S = 1 at every level (SDM Vol. 3A 4.6.1). Then reload CR3 to
 * flush the TLB.
 */
static void make_user_accessible(uintptr_t start, uintptr_t end)
{
	for (uint64_t a = start & ~(PAGE_2M - 1); a < end; a += PAGE_2M) {
		boot_pml4[(a >> 39) & 511] |= PTE_US;
		boot_pdpt[(a >> 30) & 511] |= PTE_US;
		boot_pd[a >> 21] |= PTE_US;	/* the four PDs are contiguous */
	}
	write_cr3(read_cr3());
}

void usermode_init(void)
{
	if (initialized)
		return;

	uint64_t base = (uintptr_t)&tss, limit = sizeof(tss) - 1;
	tss.rsp[0] = (uintptr_t)(kernel_stack + sizeof(kernel_stack));
	tss.iomap_base = sizeof(tss);
	/* System descriptor, type 9 = available 64-bit TSS, P = 1, DPL 0 (7.2.3). */
	gdt[5] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
		 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[6] = base >> 32;

	struct gdt_ptr p = { sizeof(gdt) - 1, (uintptr_t)gdt };
	__asm__ volatile("lgdt %0" : : "m"(p) : "memory");
	__asm__ volatile("ltr %w0" : : "r"(TSS_SELECTOR) : "memory");

	set_irq_handler(USER_RETURN_VECTOR, user_return);
	make_user_accessible((uintptr_t)__image_start, (uintptr_t)__image_end);
	initialized = true;
}

int run_in_user_mode(user_fn_t fn)
{
	usermode_init();
	int v = user_enter(fn, (uintptr_t)(user_stack + sizeof(user_stack)));
	/* The IRET to CPL 3 nulled DS and ES (DPL 0): reload them. */
	__asm__ volatile("mov %0, %%ds\n\tmov %0, %%es" : : "r"((uint16_t)KERNEL_DS) : "memory");
	return v;
}
