/*
 * loader.c - loads L2's multiboot image into L2 memory and builds L2's
 * multiboot information, as a Multiboot v1 boot loader would (Multiboot
 * Specification 0.6.96, 3.1 "OS image format", 3.3 "Boot information").
 *
 * The image is ELF32 or ELF64; its PT_LOAD segments go to their p_paddr in
 * L2-physical memory (file bytes copied, the rest of p_memsz zeroed), as
 * terrapin and QEMU's -kernel do. The image must carry a multiboot header in
 * its first 8 KiB (the a.out kludge, flags bit 16, is not supported).
 *
 * L2's MBI lives at L2-physical MBI_ADDR in low memory, with its memory map
 * and command line right after it; nothing of the image may overlap that.
 *
 * Terrapin's guests carry a tag after the header's checksum (where flags
 * bit 16 would put the a.out addresses): "T64E" and the address of a 64-bit
 * entry, which ept=off needs (Guests/lib/boot.S, _start64).
 */
#include "turtle.h"

#define MB_HEADER_MAGIC		0x1badb002u
#define MB_SEARCH		8192
#define MB_FLAG_AOUT_KLUDGE	(1u << 16)
#define ENTRY64_TAG_MAGIC	0x45343654u	/* "T64E" */

#define MBI_ADDR		0x8000ull
#define MBI_MMAP		0x8100ull
#define MBI_CMDLINE		0x8200ull
#define MBI_END			0x9000ull
#define LOW_MEM_END		0x9fc00ull	/* 639 KiB, as terrapin's map */

struct elf_ident {
	uint8_t magic[4];
	uint8_t cls;			/* 1 ELF32, 2 ELF64 */
	uint8_t data;			/* 1 little-endian */
	uint8_t version;
	uint8_t pad[9];
};

struct elf32_ehdr {
	struct elf_ident id;
	uint16_t type, machine;
	uint32_t version, entry, phoff, shoff, flags;
	uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
} __attribute__((packed));

struct elf32_phdr {
	uint32_t type, offset, vaddr, paddr, filesz, memsz, flags, align;
} __attribute__((packed));

struct elf64_ehdr {
	struct elf_ident id;
	uint16_t type, machine;
	uint32_t version;
	uint64_t entry, phoff, shoff;
	uint32_t flags;
	uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
} __attribute__((packed));

struct elf64_phdr {
	uint32_t type, flags;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
} __attribute__((packed));

#define PT_LOAD		1
#define ET_EXEC		2
#define EM_386		3
#define EM_X86_64	62

static bool check_multiboot_header(const uint8_t *img, uint64_t len, struct l2_image *out)
{
	uint64_t end = len < MB_SEARCH ? len : MB_SEARCH;

	for (uint64_t off = 0; off + 12 <= end; off += 4) {
		const uint32_t *h = (const uint32_t *)(img + off);
		if (h[0] != MB_HEADER_MAGIC)
			continue;
		if ((uint32_t)(h[0] + h[1] + h[2]) != 0) {
			fail("L2 image: multiboot header at offset 0x%llx has a bad checksum",
			     (unsigned long long)off);
			return false;
		}
		if (h[1] & MB_FLAG_AOUT_KLUDGE) {
			fail("L2 image: the multiboot a.out kludge (flags bit 16) is not supported");
			return false;
		}
		out->entry64 = 0;
		if (off + 20 <= len && h[3] == ENTRY64_TAG_MAGIC)
			out->entry64 = h[4];
		return true;
	}
	fail("L2 image: no multiboot header in the first 8 KiB");
	return false;
}

/* One PT_LOAD segment into L2 memory. */
static bool load_segment(const uint8_t *img, uint64_t len, uint64_t offset, uint64_t paddr,
			 uint64_t filesz, uint64_t memsz, struct l2_image *out)
{
	if (memsz == 0)
		return true;
	if (filesz > memsz || offset > len || filesz > len - offset) {
		fail("L2 image: segment at 0x%llx lies outside the file", (unsigned long long)paddr);
		return false;
	}
	if (paddr > cfg.l2mem || memsz > cfg.l2mem - paddr) {
		fail("L2 image: segment [0x%llx, 0x%llx) is outside L2 memory [0, 0x%llx)",
		     (unsigned long long)paddr, (unsigned long long)(paddr + memsz),
		     (unsigned long long)cfg.l2mem);
		return false;
	}
	if (paddr < MBI_END && paddr + memsz > MBI_ADDR) {
		fail("L2 image: segment [0x%llx, 0x%llx) overlaps the multiboot info at 0x%llx",
		     (unsigned long long)paddr, (unsigned long long)(paddr + memsz),
		     (unsigned long long)MBI_ADDR);
		return false;
	}
	l2_copy_in(paddr, img + offset, filesz);		/* in L2 RAM: checked above */
	l2_fill(paddr + filesz, 0, memsz - filesz);
	if (paddr < out->lo)
		out->lo = paddr;
	if (paddr + memsz > out->hi)
		out->hi = paddr + memsz;
	return true;
}

static bool load_elf(const uint8_t *img, uint64_t len, struct l2_image *out)
{
	const struct elf_ident *id = (const void *)img;

	if (len < sizeof(struct elf64_ehdr) || id->magic[0] != 0x7f || id->magic[1] != 'E' ||
	    id->magic[2] != 'L' || id->magic[3] != 'F') {
		fail("L2 image: not an ELF file");
		return false;
	}
	if (id->data != 1) {
		fail("L2 image: not little-endian");
		return false;
	}
	out->lo = ~0ull;
	out->hi = 0;
	if (id->cls == 1) {
		const struct elf32_ehdr *eh = (const void *)img;
		if (eh->type != ET_EXEC || (eh->machine != EM_386 && eh->machine != EM_X86_64)) {
			fail("L2 image: ELF32 type %u machine %u is not an i386/x86-64 executable",
			     eh->type, eh->machine);
			return false;
		}
		if (eh->phentsize < sizeof(struct elf32_phdr) ||
		    eh->phoff + (uint64_t)eh->phnum * eh->phentsize > len) {
			fail("L2 image: bad program header table");
			return false;
		}
		for (unsigned i = 0; i < eh->phnum; i++) {
			const struct elf32_phdr *ph = (const void *)(img + eh->phoff + i * eh->phentsize);
			if (ph->type == PT_LOAD &&
			    !load_segment(img, len, ph->offset, ph->paddr, ph->filesz, ph->memsz, out))
				return false;
		}
		out->entry = eh->entry;
	} else if (id->cls == 2) {
		const struct elf64_ehdr *eh = (const void *)img;
		if (eh->type != ET_EXEC || eh->machine != EM_X86_64) {
			fail("L2 image: ELF64 type %u machine %u is not an x86-64 executable",
			     eh->type, eh->machine);
			return false;
		}
		if (eh->phentsize < sizeof(struct elf64_phdr) || eh->phoff > len ||
		    (uint64_t)eh->phnum * eh->phentsize > len - eh->phoff) {
			fail("L2 image: bad program header table");
			return false;
		}
		for (unsigned i = 0; i < eh->phnum; i++) {
			const struct elf64_phdr *ph = (const void *)(img + eh->phoff + i * eh->phentsize);
			if (ph->type == PT_LOAD &&
			    !load_segment(img, len, ph->offset, ph->paddr, ph->filesz, ph->memsz, out))
				return false;
		}
		out->entry = eh->entry;
	} else {
		fail("L2 image: unknown ELF class %u", id->cls);
		return false;
	}
	if (out->hi == 0) {
		fail("L2 image: no loadable segments");
		return false;
	}
	/* The entry runs in 32-bit protected mode with paging off: it must be a
	 * 32-bit L2-physical address inside what was loaded. */
	if (out->entry < out->lo || out->entry >= out->hi) {
		fail("L2 image: entry 0x%llx is outside the loaded segments [0x%llx, 0x%llx)",
		     (unsigned long long)out->entry, (unsigned long long)out->lo,
		     (unsigned long long)out->hi);
		return false;
	}
	if (out->entry64 && (out->entry64 < out->lo || out->entry64 >= out->hi)) {
		fail("L2 image: 64-bit entry 0x%llx is outside the loaded segments", (unsigned long long)out->entry64);
		return false;
	}
	return true;
}

static const uint8_t *loaded_img;

/* Do L2's executable segments, in L2 memory as turtle sees it, still equal
 * the image's bytes? Terrapin patches L2's code only in L2's own view
 * (docs/PATCHING.md), so turtle must never see a patched byte. ELF32
 * images only (the guests' containers); true for others. */
bool l2_code_intact(void)
{
	const struct elf32_ehdr *eh = (const void *)loaded_img;
	if (!loaded_img || ((const struct elf_ident *)loaded_img)->cls != 1)
		return true;
	for (unsigned i = 0; i < eh->phnum; i++) {
		const struct elf32_phdr *ph = (const void *)(loaded_img + eh->phoff + i * eh->phentsize);
		if (ph->type != PT_LOAD || !(ph->flags & 1) || !ph->filesz)	/* PF_X */
			continue;
		if (!l2_equal(ph->paddr, loaded_img + ph->offset, ph->filesz))
			return false;
	}
	return true;
}

bool l2_load(const uint8_t *img, uint64_t len, const char *cmdline, struct l2_image *out)
{
	loaded_img = img;
	if (!check_multiboot_header(img, len, out) || !load_elf(img, len, out))
		return false;

	/* Multiboot info (spec 3.3): memory, command line, memory map. */
	struct multiboot_info *mbi = l2_ptr(MBI_ADDR, sizeof(*mbi));
	struct multiboot_mmap_entry *mm = l2_ptr(MBI_MMAP, 2 * sizeof(*mm));
	uint64_t cmax = MBI_END - MBI_CMDLINE;
	char *cl = l2_ptr(MBI_CMDLINE, cmax);
	uint64_t n = strlen(cmdline);

	if (!mbi || !mm || !cl) {
		fail("L2 memory too small for the multiboot info");
		return false;
	}
	if (n >= cmax) {
		fail("L2 command line is longer than %llu bytes", (unsigned long long)(cmax - 1));
		return false;
	}
	fast_zero(mbi, sizeof(*mbi));
	fast_copy(cl, cmdline, n + 1);

	mm[0].size = sizeof(*mm) - sizeof(mm[0].size);
	mm[0].base_addr = 0;
	mm[0].length = LOW_MEM_END;
	mm[0].type = MB_MMAP_AVAILABLE;
	mm[1].size = sizeof(*mm) - sizeof(mm[1].size);
	mm[1].base_addr = 0x100000;
	mm[1].length = cfg.l2mem - 0x100000;
	mm[1].type = MB_MMAP_AVAILABLE;

	mbi->flags = MB_INFO_MEMORY | MB_INFO_CMDLINE | MB_INFO_MMAP;
	mbi->mem_lower = LOW_MEM_END / 1024;			/* 639 */
	mbi->mem_upper = (uint32_t)((cfg.l2mem - 0x100000) / 1024);
	mbi->cmdline = (uint32_t)MBI_CMDLINE;
	mbi->mmap_addr = (uint32_t)MBI_MMAP;
	mbi->mmap_length = 2 * sizeof(*mm);

	out->mbi = MBI_ADDR;
	printf("turtle: L2 image loaded at L2-physical [0x%llx, 0x%llx), entry 0x%llx (64-bit 0x%llx), MBI 0x%llx, "
	       "command line \"%s\"\n", (unsigned long long)out->lo, (unsigned long long)out->hi,
	       (unsigned long long)out->entry, (unsigned long long)out->entry64, (unsigned long long)out->mbi, cmdline);
	return true;
}
