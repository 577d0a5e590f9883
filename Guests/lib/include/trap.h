/*
 * trap.h - run one instruction and catch the exception it raises, the way
 * the KVM selftests' "vector" helpers do: an armed recovery address makes
 * the runtime's #UD, #SS, #GP and #PF handlers record the fault and resume
 * there instead of printing a dump and exiting.
 *
 * This works at CPL 3 too (usermode.h): the handler only changes the frame's
 * RIP, and IRETQ returns with the frame's CS, SS and RSP, so execution
 * resumes at the recovery label still in user mode.
 */
#ifndef GUEST_TRAP_H
#define GUEST_TRAP_H

#include <stdint.h>

#define NO_FAULT	(-1)

struct fault_record {
	uint64_t recovery;	/* where to resume; 0 = not armed */
	int vector;		/* NO_FAULT, or the vector caught */
	uint64_t error_code;
	uint64_t cr2;
};

extern volatile struct fault_record fault;

void trap_init(void);	/* installs the catching handlers */

/*
 * Asm fragments around a trapped instruction: arm the recovery address
 * (label 1 after the instruction), clear it afterwards. Clobbers r11.
 */
#define TRAP_BEGIN	"lea 1f(%%rip), %%r11\n\tmovq %%r11, fault(%%rip)\n\t"
#define TRAP_END	"\n1:\n\tmovq $0, fault(%%rip)\n\t"

static inline void trap_reset(void)
{
	fault.vector = NO_FAULT;
	fault.error_code = 0;
	fault.cr2 = 0;
}

#endif
