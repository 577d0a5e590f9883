/*
 * compute - a fixed integer workload with no VM exits in the measured
 * part: N rounds of a sieve of Eratosthenes below 100000, folding every
 * prime into an xorshift64 checksum. Used to compare guest CPU speed.
 *
 * usage: compute [N]    (default N=2: KVM on our hosts emulates every guest
 *                        instruction, about a microsecond each; see README)
 *
 * The expected checksum for the default N is hard-coded below. To
 * regenerate it, build this file for the host: `make compute-checksum`.
 */
#ifdef HOST_BUILD
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#else
#include "guest.h"
#endif

#define SIEVE_LIMIT	100000
#define PRIMES_BELOW_LIMIT 9592		/* pi(100000) */
#define DEFAULT_ROUNDS	2
#define EXPECTED_DEFAULT_CHECKSUM 0xe9b81e452b999563ull /* `make compute-checksum` */

static uint8_t composite[SIEVE_LIMIT];

/* Marsaglia xorshift64 (shifts 13, 7, 17). */
static uint64_t xorshift64(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* One round: sieve, then fold each prime (and the round) into the state. */
static uint64_t sieve_round(uint64_t state, uint64_t round, uint64_t *primes)
{
	uint64_t count = 0;

	memset(composite, 0, sizeof(composite));
	for (uint64_t i = 2; i * i < SIEVE_LIMIT; i++) {
		if (composite[i])
			continue;
		for (uint64_t j = i * i; j < SIEVE_LIMIT; j += i)
			composite[j] = 1;
	}
	for (uint64_t i = 2; i < SIEVE_LIMIT; i++) {
		if (!composite[i]) {
			state = xorshift64(state ^ (i + round));
			count++;
		}
	}
	*primes = count;
	return state;
}

static uint64_t workload(uint64_t rounds, uint64_t *primes)
{
	uint64_t state = 0x9e3779b97f4a7c15ull;

	*primes = 0;
	for (uint64_t r = 0; r < rounds; r++)
		state = sieve_round(state, r, primes);
	return state;
}

#ifdef HOST_BUILD
int main(void)
{
	uint64_t primes;
	uint64_t sum = workload(DEFAULT_ROUNDS, &primes);

	printf("compute: %d rounds, %llu primes per round, checksum 0x%016llx\n",
	       DEFAULT_ROUNDS, (unsigned long long)primes, (unsigned long long)sum);
	return 0;
}
#else
int main(int argc, char **argv)
{
	uint64_t rounds = DEFAULT_ROUNDS, primes;

	if (argc > 2 || (argc == 2 && !parse_u64(argv[1], &rounds)))
		return usage("compute [N]");

	printf("compute: %llu rounds of a prime sieve below %u\n",
	       (unsigned long long)rounds, SIEVE_LIMIT);

	uint64_t t0 = rdtsc();
	uint64_t sum = workload(rounds, &primes);
	uint64_t cycles = rdtsc() - t0;

	printf("compute: checksum 0x%016llx, %llu TSC cycles\n",
	       (unsigned long long)sum, (unsigned long long)cycles);
	if (rounds > 0)
		report(primes == PRIMES_BELOW_LIMIT, "%llu primes below %u (expected %u)",
		       (unsigned long long)primes, SIEVE_LIMIT, PRIMES_BELOW_LIMIT);
	if (rounds == DEFAULT_ROUNDS)
		report(sum == EXPECTED_DEFAULT_CHECKSUM,
		       "checksum matches expected 0x%016llx",
		       (unsigned long long)EXPECTED_DEFAULT_CHECKSUM);
	return report_summary();
}
#endif
