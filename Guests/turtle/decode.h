/*
 * decode.h - the MOV forms turtle's toy MMIO device understands (decode.c).
 */
#ifndef TURTLE_DECODE_H
#define TURTLE_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mmio_insn {
	int len;		/* total instruction length */
	bool write;		/* store to memory */
	int size;		/* memory operand size: 1, 2, 4 or 8 */
	int reg;		/* register number (0 RAX .. 15 R15), or -1 for an immediate */
	bool high8;		/* reg is AH/CH/DH/BH (reg then holds 0-3) */
	int dst_size;		/* loads: register bytes written (differs for MOVZX) */
	uint64_t imm;		/* stores of an immediate: its value */
};

/*
 * Decodes the n bytes at b (n <= 15) as one of
 *   88/89 MOV r/m, r    8A/8B MOV r, r/m    C6/C7 /0 MOV r/m, imm
 *   A0-A3 MOV AL/eAX to or from moffs (movabs)    0F B6/B7 MOVZX r, r/m8/16
 * with 66, 67 and segment prefixes and (mode64) REX. Returns NULL and fills
 * *d, or a reason why it cannot.
 */
const char *decode_mov(const uint8_t *b, int n, bool mode64, struct mmio_insn *d);

#endif
