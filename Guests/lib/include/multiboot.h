/*
 * multiboot.h - Multiboot v1 boot information (Multiboot Specification
 * 0.6.96, section 3.3 "Boot information format").
 */
#ifndef GUEST_MULTIBOOT_H
#define GUEST_MULTIBOOT_H

#include <stdbool.h>
#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC	0x2badb002	/* EAX at entry */

/* multiboot_info.flags: which fields are valid (spec 3.3) */
#define MB_INFO_MEMORY		(1u << 0)	/* mem_lower, mem_upper */
#define MB_INFO_CMDLINE		(1u << 2)	/* cmdline */
#define MB_INFO_MODS		(1u << 3)	/* mods_count, mods_addr */
#define MB_INFO_MMAP		(1u << 6)	/* mmap_length, mmap_addr */

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower;		/* KiB below 1 MiB */
	uint32_t mem_upper;		/* KiB from 1 MiB to the first hole */
	uint32_t boot_device;
	uint32_t cmdline;		/* physical address of a C string */
	uint32_t mods_count;
	uint32_t mods_addr;		/* physical address of multiboot_module[] */
	uint32_t syms[4];
	uint32_t mmap_length;		/* bytes in the mmap buffer */
	uint32_t mmap_addr;
	uint32_t drives_length;
	uint32_t drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe_control_info;
	uint32_t vbe_mode_info;
	uint16_t vbe_mode;
	uint16_t vbe_interface_seg;
	uint16_t vbe_interface_off;
	uint16_t vbe_interface_len;
} __attribute__((packed));

/* mmap entry; "size" excludes itself, so the next entry is at +size+4 */
#define MB_MMAP_AVAILABLE	1

struct multiboot_mmap_entry {
	uint32_t size;
	uint64_t base_addr;
	uint64_t length;
	uint32_t type;
} __attribute__((packed));

struct multiboot_module {
	uint32_t mod_start;
	uint32_t mod_end;
	uint32_t string;		/* physical address of a C string */
	uint32_t reserved;
} __attribute__((packed));

/* Provided by the runtime (lib/kmain.c). */
struct multiboot_info *mb_info(void);
uint32_t mb_magic(void);

/* Iterate over the memory map: for (e = mb_mmap_first(); e; e = mb_mmap_next(e)) */
struct multiboot_mmap_entry *mb_mmap_first(void);
struct multiboot_mmap_entry *mb_mmap_next(struct multiboot_mmap_entry *e);
/* Is [lo, hi) inside one available region of the memory map? */
bool mb_is_ram(uint64_t lo, uint64_t hi);

#endif
