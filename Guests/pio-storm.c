/*
 * pio-storm - N byte writes to an I/O port in a tight loop; every one is
 * a VM exit (KVM_EXIT_IO) handled by the monitor.
 *
 * usage: pio-storm [N] [port=0xNN]    (default N=100000, port=0x80)
 */
#include "guest.h"

#define USAGE	"pio-storm [N] [port=0xNN]"

int main(int argc, char **argv)
{
	uint64_t n = 100000, port = 0x80;
	const char *val;

	for (int i = 1; i < argc; i++) {
		if ((val = arg_value(argv[i], "port"))) {
			if (!parse_u64(val, &port) || port > 0xffff)
				return usage(USAGE " (bad port \"%s\")", val);
		} else if (!parse_u64(argv[i], &n)) {
			return usage(USAGE " (bad argument \"%s\")", argv[i]);
		}
	}
	/* 0xf4-0xf7 is isa-debug-exit, 0x3f8-0x3ff the console UART, 0x5a0-0x5a7 the work-report port. */
	if ((port >= 0xf4 && port <= 0xf7) || (port >= 0x3f8 && port <= 0x3ff) ||
	    (port >= WORK_REPORT_PORT && port <= WORK_REPORT_HIGH + 3))
		return usage(USAGE " (port 0x%llx is reserved)", (unsigned long long)port);

	printf("pio-storm: %llu exits to port 0x%llx\n",
	       (unsigned long long)n, (unsigned long long)port);

	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		outb((uint16_t)port, (uint8_t)i);
	uint64_t cycles = rdtsc() - t0;

	printf("pio-storm: %llu TSC cycles, %llu per exit\n",
	       (unsigned long long)cycles, (unsigned long long)(n ? cycles / n : 0));
	report(true, "%llu outb writes to port 0x%llx completed",
	       (unsigned long long)n, (unsigned long long)port);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
