/*
 * p2m.c - L2-physical to L1-physical for turtle (l2mem.h): flat, or with
 * the 4 KiB pages of each 8 KiB pair swapped (p2m=scatter). Pure C over
 * the table in `p2m`: the host test (shadow-test.c) links it as it is.
 */
#include "l2mem.h"

struct p2m p2m;

uint64_t l2_to_l1(uint64_t gpa)
{
	return p2m.base + (p2m.scatter ? gpa ^ 0x1000 : gpa);
}

void *l2_ptr(uint64_t gpa, uint64_t len)
{
	if (gpa >= p2m.size || len > p2m.size - gpa)
		return 0;
	if (p2m.scatter && len && (gpa & 0xfff) + len > 4096)
		return 0;
	return (void *)(uintptr_t)l2_to_l1(gpa);
}

/* The part of [gpa, gpa+len) in gpa's page. */
static uint64_t in_page(uint64_t gpa, uint64_t len)
{
	uint64_t room = 4096 - (gpa & 0xfff);
	return len < room ? len : room;
}

static bool in_ram(uint64_t gpa, uint64_t len)
{
	return gpa <= p2m.size && len <= p2m.size - gpa;
}

bool l2_copy_in(uint64_t gpa, const void *src, uint64_t len)
{
	const uint8_t *s = src;
	if (!in_ram(gpa, len))
		return false;
	for (uint64_t n; len; gpa += n, s += n, len -= n) {
		n = in_page(gpa, len);
		__builtin_memcpy(l2_ptr(gpa, n), s, n);
	}
	return true;
}

bool l2_fill(uint64_t gpa, uint8_t byte, uint64_t len)
{
	if (!in_ram(gpa, len))
		return false;
	for (uint64_t n; len; gpa += n, len -= n) {
		n = in_page(gpa, len);
		__builtin_memset(l2_ptr(gpa, n), byte, n);
	}
	return true;
}

bool l2_equal(uint64_t gpa, const void *src, uint64_t len)
{
	const uint8_t *s = src;
	if (!in_ram(gpa, len))
		return false;
	for (uint64_t n; len; gpa += n, s += n, len -= n) {
		n = in_page(gpa, len);
		if (__builtin_memcmp(l2_ptr(gpa, n), s, n))
			return false;
	}
	return true;
}

uint64_t l2mem_cr3_as_is(uint64_t value)
{
	return value;
}
