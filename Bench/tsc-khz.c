/*
 * tsc-khz: the host TSC frequency in kHz, measured against CLOCK_MONOTONIC
 * over 200 ms. Guests on our hosts read the host TSC (DESIGN.md), so this
 * converts the cycle counts guests report into time.
 *
 *   tsc-khz
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(void)
{
	uint64_t t0 = now_ns(), c0 = __rdtsc();
	while (now_ns() - t0 < 200000000u)
		;
	uint64_t t1 = now_ns(), c1 = __rdtsc();
	printf("%llu\n", (unsigned long long)((c1 - c0) * 1000000u / (t1 - t0)));
	return 0;
}
