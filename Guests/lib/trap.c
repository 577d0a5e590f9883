/*
 * trap.c - catch an expected exception and resume after the instruction
 * (see trap.h). Unexpected exceptions still get the runtime's dump.
 */
#include "guest.h"
#include "trap.h"

volatile struct fault_record fault = { 0, NO_FAULT, 0, 0 };

static void catch_fault(struct regs *r)
{
	if (!fault.recovery) {
		printf("UNEXPECTED EXCEPTION vector %llu error=0x%llx at rip=0x%llx\n",
		       (unsigned long long)r->vector, (unsigned long long)r->error_code,
		       (unsigned long long)r->rip);
		exit(EXIT_PANIC);
	}
	fault.vector = (int)r->vector;
	fault.error_code = r->error_code;
	if (r->vector == 14)
		fault.cr2 = read_cr2();
	r->rip = fault.recovery;
	fault.recovery = 0;
}

void trap_init(void)
{
	set_irq_handler(6, catch_fault);	/* #UD */
	set_irq_handler(12, catch_fault);	/* #SS */
	set_irq_handler(13, catch_fault);	/* #GP */
	set_irq_handler(14, catch_fault);	/* #PF */
}
