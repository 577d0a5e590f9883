#pragma once
#include <Zydis/Zydis.h>

/* One instruction's length and mnemonic, or 0 when the bytes do not decode
 * (ZYAN_SUCCESS is a macro, which Swift cannot call). */
static inline ZyanU8 terrapin_zydis_decode(const ZydisDecoder *decoder, const void *bytes, ZyanUSize count,
                                           ZydisMnemonic *mnemonic)
{
	ZydisDecodedInstruction insn;
	if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(decoder, ZYAN_NULL, bytes, count, &insn)))
		return 0;
	*mnemonic = insn.mnemonic;
	return insn.length;
}

static inline ZyanBool terrapin_zydis_init(ZydisDecoder *decoder, ZyanBool long64)
{
	return ZYAN_SUCCESS(ZydisDecoderInit(decoder, long64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
					    long64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32));
}
