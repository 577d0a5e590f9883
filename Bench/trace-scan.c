/*
 * trace-scan: the physical limit for `terrapin-trace summary`.
 *
 * A minimal C mmap scan of a Terrapin trace doing the essential work of
 * `summary`: per (level, exit reason, handler) the record count and the
 * sum, minimum and maximum of the durations, per level the records, and the
 * first and last timestamp. No histogram, no percentiles, no table: the
 * least a summary can do. The header is checked as TraceFormat's
 * TraceReader does (Traces/README.md, "Header"): magic, version 1, record
 * size 64, header size a positive multiple of 64 within the file, the
 * metadata within the header, and a finished count equal to the records the
 * file holds (an unfinished count, all ones, takes the count from the size).
 * Metadata text is not parsed. Meant for timing (scripts/bench-trace), not
 * for users.
 *
 *   trace-scan TRACE
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct group {
	uint64_t count, sum;
	uint32_t nmin, max;   /* nmin: ~minimum, so that zero-filled BSS is an empty group */
};

/*
 * Slot of a record: level << 10 | reason << 1 | handler, where reason is the
 * kind (0-255) when the record has no VMX reason (0xFFFFFFFF, Traces/README.md
 * "Record") and 256 + the VMX basic exit reason otherwise. Handlers above 1
 * and VMX reasons of 256 or more (odd files) share one overflow group.
 */
#define SLOTS (256 * 1024)
static struct group groups[SLOTS + 1];
static uint64_t level_records[256];

static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static int fail(const char *path, const char *what)
{
	fprintf(stderr, "trace-scan: %s: %s\n", path, what);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: trace-scan TRACE\n");
		return 2;
	}
	const char *path = argv[1];
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return fail(path, "cannot open");
	size_t size = (size_t)st.st_size;
	if (size < 40)
		return fail(path, "truncated header");
	const unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED)
		return fail(path, "cannot map");
	close(fd);

	/* Little-endian host assumed, as the file (x86-64). */
	if (memcmp(m, "TRPNTRAC", 8) != 0)
		return fail(path, "bad magic");
	if (u16(m + 8) != 1 || u16(m + 10) != 64)
		return fail(path, "unknown version or record size");
	size_t header = u32(m + 12);
	if (header == 0 || header % 64 != 0 || header > size)
		return fail(path, "bad header size");
	if (u32(m + 32) > header - 40)
		return fail(path, "metadata does not fit in the header");
	size_t n = (size - header) / 64;
	uint64_t count = u64(m + 16);
	if (count != UINT64_MAX && (count != n || (size - header) % 64 != 0))
		return fail(path, "record count does not match the file size");

	uint64_t tmin = UINT64_MAX, tmax = 0;
	const unsigned char *p = m + header, *end = p + n * 64;
	for (; p < end; p += 64) {
		uint64_t t = u64(p);
		uint32_t d = u32(p + 8);
		uint8_t level = p[12], kind = p[13], handler = p[52];
		uint32_t vmx = u32(p + 48);
		uint32_t reason = vmx == UINT32_MAX ? kind : 256 + vmx;
		size_t slot = handler <= 1 && reason < 512
			? (size_t)level << 10 | reason << 1 | handler : SLOTS;
		struct group *g = &groups[slot];
		g->count++;
		g->sum += d;
		if ((uint32_t)~d > g->nmin) g->nmin = ~d;
		if (d > g->max) g->max = d;
		level_records[level]++;
		if (t < tmin) tmin = t;
		if (t > tmax) tmax = t;
	}

	printf("records %zu first %" PRIu64 " last %" PRIu64 "\n", n, n ? tmin : 0, n ? tmax : 0);
	for (int l = 0; l < 256; l++)
		if (level_records[l])
			printf("L%d records %" PRIu64 "\n", l, level_records[l]);
	for (size_t s = 0; s <= SLOTS; s++) {
		struct group *g = &groups[s];
		if (!g->count)
			continue;
		if (s == SLOTS) {
			printf("other count %" PRIu64 " sum %" PRIu64 " min %u max %u\n", g->count, g->sum, ~g->nmin, g->max);
			continue;
		}
		unsigned level = s >> 10, reason = (s >> 1) & 511, handler = s & 1;
		printf("L%u %s %u handler %u count %" PRIu64 " sum %" PRIu64 " min %u max %u\n", level,
		       reason < 256 ? "kind" : "vmx", reason < 256 ? reason : reason - 256, handler,
		       g->count, g->sum, ~g->nmin, g->max);
	}
	return 0;
}
