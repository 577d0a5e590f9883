/*
 * decode.c - just enough of the x86 instruction decoder for turtle's toy
 * MMIO device: the MOV forms compilers emit for volatile loads and stores
 * (SDM Vol. 2: 2.1 instruction format, 2.2.1 REX, Table 2-2 ModRM 32/64-bit
 * addressing, "MOV" and "MOVZX"). An EPT violation gives the guest-physical
 * address and read/write but no instruction length, so turtle decodes the
 * instruction to know the register and how far to advance RIP.
 *
 * No dependencies beyond <stdint.h>/<stdbool.h>, so it can be tested on the
 * host.
 */
#include "decode.h"

const char *decode_mov(const uint8_t *b, int n, bool mode64, struct mmio_insn *d)
{
	int i = 0, opsize = 4;
	uint8_t rex = 0;
	bool movzx = false;

	for (;; i++) {
		if (i >= n)
			return "instruction truncated";
		uint8_t p = b[i];
		if (p == 0x66)
			opsize = 2;
		else if (p == 0x67) {
			if (!mode64)
				return "16-bit addressing";
		} else if (p == 0x26 || p == 0x2e || p == 0x36 || p == 0x3e || p == 0x64 || p == 0x65)
			;	/* the guest-physical address comes from the VMCS */
		else
			break;
	}
	if (mode64 && (b[i] & 0xf0) == 0x40)
		rex = b[i++];
	if (rex & 8)
		opsize = 8;
	if (i + 2 > n)
		return "instruction truncated";

	uint8_t op = b[i++];
	d->reg = -1;
	d->high8 = false;
	d->imm = 0;
	if (op >= 0xa0 && op <= 0xa3) {
		/* MOV AL/eAX to or from moffs: an address-size immediate, no ModRM. */
		int asz = mode64 ? 8 : 4;
		if (i + asz > n || i + asz > 15)
			return "instruction truncated";
		d->write = op >= 0xa2;
		d->size = (op & 1) ? opsize : 1;
		d->dst_size = d->size;
		d->reg = 0;
		d->len = i + asz;
		return NULL;
	}
	switch (op) {
	case 0x88: d->write = true; d->size = 1; break;
	case 0x89: d->write = true; d->size = opsize; break;
	case 0x8a: d->write = false; d->size = 1; break;
	case 0x8b: d->write = false; d->size = opsize; break;
	case 0xc6: d->write = true; d->size = 1; break;
	case 0xc7: d->write = true; d->size = opsize; break;
	case 0x0f:
		op = b[i++];
		if (op != 0xb6 && op != 0xb7)
			return "unsupported opcode";
		movzx = true;
		d->write = false;
		d->size = op == 0xb6 ? 1 : 2;
		break;
	default:
		return "unsupported opcode";
	}
	d->dst_size = movzx ? opsize : d->size;

	if (i >= n)
		return "instruction truncated";
	uint8_t modrm = b[i++];
	int mod = modrm >> 6, regf = ((modrm >> 3) & 7) | ((rex & 4) ? 8 : 0), rm = modrm & 7;
	if (mod == 3)
		return "register operand, not memory";
	if (rm == 4) {
		if (i >= n)
			return "instruction truncated";
		uint8_t sib = b[i++];
		if ((sib & 7) == 5 && mod == 0)
			i += 4;
	}
	if (mod == 0 && rm == 5)
		i += 4;			/* disp32 (RIP-relative in 64-bit mode) */
	else if (mod == 1)
		i += 1;
	else if (mod == 2)
		i += 4;

	if (op == 0xc6 || op == 0xc7) {
		if ((regf & 7) != 0)
			return "unsupported opcode extension";
		int isz = op == 0xc6 ? 1 : (opsize == 2 ? 2 : 4);
		if (i + isz > n)
			return "instruction truncated";
		for (int k = 0; k < isz; k++)
			d->imm |= (uint64_t)b[i + k] << (8 * k);
		if (isz == 4 && opsize == 8 && (d->imm & 0x80000000u))
			d->imm |= 0xffffffff00000000ull;	/* sign-extended imm32 */
		i += isz;
	} else {
		d->reg = regf;
		d->high8 = !movzx && d->size == 1 && !rex && regf >= 4 && regf <= 7;
		if (d->high8)
			d->reg = regf - 4;
	}
	if (i > n || i > 15)
		return "instruction truncated";
	d->len = i;
	return NULL;
}
