/*
 * kmain.c - from boot.S to main(): IDT, command line, multiboot info.
 */
#include "guest.h"

#define MAX_ARGS	32
#define CMDLINE_MAX	1024

extern uint32_t boot_magic;		/* EAX at entry, saved by boot.S */

static uint32_t mbi_phys;
static char cmdline[CMDLINE_MAX];
static char *argv[MAX_ARGS + 1];
static char unknown_name[] = "unknown";

uint32_t mb_magic(void)
{
	return boot_magic;
}

struct multiboot_info *mb_info(void)
{
	return (struct multiboot_info *)(uintptr_t)mbi_phys;
}

struct multiboot_mmap_entry *mb_mmap_first(void)
{
	struct multiboot_info *mbi = mb_info();

	if (!mbi || !(mbi->flags & MB_INFO_MMAP) || mbi->mmap_length == 0)
		return NULL;
	return (struct multiboot_mmap_entry *)(uintptr_t)mbi->mmap_addr;
}

bool mb_is_ram(uint64_t lo, uint64_t hi)
{
	for (struct multiboot_mmap_entry *e = mb_mmap_first(); e; e = mb_mmap_next(e))
		if (e->type == MB_MMAP_AVAILABLE && lo >= e->base_addr && hi <= e->base_addr + e->length)
			return true;
	return false;
}

struct multiboot_mmap_entry *mb_mmap_next(struct multiboot_mmap_entry *e)
{
	struct multiboot_info *mbi = mb_info();
	uintptr_t next = (uintptr_t)e + e->size + sizeof(e->size);

	if (next >= (uintptr_t)mbi->mmap_addr + mbi->mmap_length)
		return NULL;
	return (struct multiboot_mmap_entry *)next;
}

/*
 * The multiboot command line is "image-name arg1 arg2 ..." (spec 3.3);
 * split it on spaces into argv. argv[0] is the image name.
 */
static int parse_cmdline(void)
{
	struct multiboot_info *mbi = mb_info();
	const char *src = "";
	int argc = 0;
	size_t i;

	if (mbi && (mbi->flags & MB_INFO_CMDLINE) && mbi->cmdline)
		src = (const char *)(uintptr_t)mbi->cmdline;

	for (i = 0; i < CMDLINE_MAX - 1 && src[i]; i++)
		cmdline[i] = src[i];
	cmdline[i] = '\0';

	for (char *p = cmdline; *p && argc < MAX_ARGS;) {
		while (*p == ' ')
			*p++ = '\0';
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && *p != ' ')
			p++;
	}
	if (argc == 0)
		argv[argc++] = unknown_name;
	argv[argc] = NULL;
	return argc;
}

void kmain(uint32_t mbi);

void kmain(uint32_t mbi)
{
	mbi_phys = mbi;
	idt_init();
	exit(main(parse_cmdline(), argv));
}
