/*
 * report.c - test result reporting in the style of kvm-unit-tests:
 * one "PASS: ..." or "FAIL: ..." line per check and a final summary.
 */
#include "guest.h"

static unsigned tests;
static unsigned failures;

void report(bool ok, const char *fmt, ...)
{
	va_list ap;

	tests++;
	if (!ok)
		failures++;
	printf("%s: ", ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

int report_summary(void)
{
	printf("SUMMARY: %u tests, %u failures\n", tests, failures);
	return failures ? EXIT_FAIL : EXIT_PASS;
}

int usage(const char *fmt, ...)
{
	va_list ap;

	printf("usage: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return EXIT_USAGE;
}

void panic(const char *fmt, ...)
{
	va_list ap;

	printf("PANIC: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(EXIT_PANIC);
}
