#pragma once
#include <stddef.h>
#include <stdint.h>

/*
 * One-shot zlib-format (RFC 1950) deflate of a buffer with Intel ISA-L's
 * igzip at level 1, its fastest level that searches for matches: what
 * TraceFormat's Perfetto export puts in TracePacket.compressed_packets
 * (Traces/README.md, "export"). A context holds igzip's stream state and
 * level buffer, a few hundred KiB, so that a thread reuses them.
 */
typedef struct cdeflate_context cdeflate_context;

cdeflate_context *cdeflate_new(void);
void cdeflate_free(cdeflate_context *context);

/*
 * Compresses `count` bytes at `input` into `output` (`capacity` bytes) as one
 * complete zlib stream; returns its size, or 0 if it did not fit or failed.
 * `capacity` of count + count / 16 + 1024 always fits (stored blocks at worst).
 */
size_t cdeflate_zlib(cdeflate_context *context, const uint8_t *input, size_t count, uint8_t *output, size_t capacity);
