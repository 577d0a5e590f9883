/*
 * report.c - test result reporting in the style of kvm-unit-tests:
 * one "PASS: ..." or "FAIL: ..." line per check and a final summary.
 */
#include "guest.h"

void report_iterations(uint64_t n)
{
	if (n >> 32)
		outl(WORK_REPORT_HIGH, (uint32_t)(n >> 32));
	outl(WORK_REPORT_PORT, (uint32_t)n);
}

static unsigned tests;
static unsigned failures;
static unsigned expected_failures;
static unsigned skipped;

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

/*
 * A check that may fail for a reason outside the code under test, which
 * `xfail` states precisely (kvm-unit-tests' report_xfail): a failure then
 * prints XFAIL and is counted apart; a pass prints PASS as usual.
 */
void report_xfail(bool xfail, bool ok, const char *fmt, ...)
{
	va_list ap;

	tests++;
	if (!ok && xfail)
		expected_failures++;
	else if (!ok)
		failures++;
	printf("%s: ", ok ? "PASS" : xfail ? "XFAIL" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/*
 * A check that cannot run here, with the reason (kvm-unit-tests'
 * report_skip): a SKIP line, counted apart in the summary, never a pass.
 */
void report_skip(const char *fmt, ...)
{
	va_list ap;

	skipped++;
	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

int report_summary(void)
{
	printf("SUMMARY: %u tests, %u failures", tests, failures);
	if (expected_failures)
		printf(", %u expected failures", expected_failures);
	if (skipped)
		printf(", %u skipped", skipped);
	printf("\n");
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
