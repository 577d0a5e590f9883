/*
 * usermode.h - run a function at CPL 3 and come back to CPL 0, the way the
 * KVM selftests do it (SDM Vol. 3A 5.8 "Privilege Level Checking When
 * Transferring Program Control Between Code Segments").
 *
 *   static int body(void) { ...; return 42; }	// runs at CPL 3
 *   int v = run_in_user_mode(body);		// back at CPL 0, v = 42
 *
 * The first call sets up a GDT with 64-bit user code/data segments (DPL 3),
 * a 64-bit TSS whose RSP0 is a dedicated kernel stack, a #DE handler that
 * is the way back to CPL 0 (see usermode.c for why not INT n or SYSCALL),
 * and the U/S bit on the page-table entries that map the guest image. The
 * body is an ordinary C function of the image: it may read and write
 * globals, but not print (I/O at CPL 3 raises #GP: IOPL is 0 and the TSS
 * has no I/O bitmap).
 *
 * Exceptions raised at CPL 3 are delivered on the RSP0 stack to the usual
 * handlers; trap.h's TRAP_BEGIN/TRAP_END (and so the vmx.h wrappers) work in
 * the body unchanged: the handler sets the frame's RIP to the recovery label
 * and IRETQ returns to it with the frame's user CS, SS and RSP, still at
 * CPL 3. Other exceptions at CPL 3 are reported and end the guest as usual.
 *
 * This is not isolation: the whole image, including the IDT, GDT and page
 * tables, is user-writable.
 */
#ifndef GUEST_USERMODE_H
#define GUEST_USERMODE_H

#include <stdint.h>

/* Selectors of the runtime's GDT once usermode_init() has run. */
#define KERNEL_CS		0x08
#define KERNEL_DS		0x10
#define USER_DS			(0x18 | 3)
#define USER_CS			(0x20 | 3)
#define TSS_SELECTOR		0x28

/* Claimed by usermode_init(): the trampoline's divide by zero returns to CPL 0. */
#define USER_RETURN_VECTOR	0	/* #DE */

typedef int (*user_fn_t)(void);

/* One-time set-up; run_in_user_mode() calls it when needed. */
void usermode_init(void);

/*
 * Runs fn at CPL 3 on a user stack; when fn returns (the trampoline then
 * divides by zero), execution continues at CPL 0 on the caller's stack with
 * the caller's RFLAGS, and fn's value is returned. Not reentrant. Any other
 * #DE is reported as unexpected.
 */
int run_in_user_mode(user_fn_t fn);

/* The current privilege level: CS.RPL (SDM Vol. 3A 5.5). */
static inline int current_cpl(void)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}

#endif
