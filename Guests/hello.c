/*
 * hello - boot-path smoke test: multiboot handoff, command line, memory
 * information, fw_cfg and an unclaimed I/O port.
 *
 * usage: hello [args...]   (arguments are only echoed)
 */
#include "guest.h"

/* QEMU fw_cfg legacy I/O interface (QEMU docs/specs/fw_cfg.rst). */
#define FW_CFG_PORT_SEL		0x510	/* 16-bit selector write */
#define FW_CFG_PORT_DATA	0x511	/* byte-wide data reads */
#define FW_CFG_SIGNATURE	0x0000
#define FW_CFG_NB_CPUS		0x0005

/* COM3's address: no device is expected there, so reads float to 0xff. */
#define UNCLAIMED_PORT		0x3e8

static void fw_cfg_read(uint16_t key, void *buf, size_t len)
{
	uint8_t *p = buf;

	outw(FW_CFG_PORT_SEL, key);
	for (size_t i = 0; i < len; i++)
		p[i] = inb(FW_CFG_PORT_DATA);
}

/*
 * INT n and INT3 at CPL 0 (SDM Vol. 2A "INT n/INTO/INT3/INT1"): each enters
 * its gate's handler once, with the frame's RIP just past the instruction.
 * KVM's emulator does not carry these out on our hosts; the monitor does.
 */
static volatile unsigned soft_hits[2];
static volatile uint64_t soft_rip[2];

static void on_int80(struct regs *r) { soft_hits[0]++; soft_rip[0] = r->rip; }
static void on_int3(struct regs *r) { soft_hits[1]++; soft_rip[1] = r->rip; }

static void check_software_interrupts(void)
{
	extern char after_int80[], after_int3[];

	set_irq_handler(0x80, on_int80);
	set_irq_handler(3, on_int3);
	__asm__ volatile("int $0x80\n\t.globl after_int80\nafter_int80:" ::: "memory");
	__asm__ volatile("int3\n\t.globl after_int3\nafter_int3:" ::: "memory");
	report(soft_hits[0] == 1 && soft_rip[0] == (uintptr_t)after_int80,
	       "INT 0x80 enters its handler once, returning past the instruction");
	report(soft_hits[1] == 1 && soft_rip[1] == (uintptr_t)after_int3,
	       "INT3 enters the #BP handler once, returning past the instruction");
	set_irq_handler(0x80, 0);
	set_irq_handler(3, 0);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void check_memory(struct multiboot_info *mbi)
{
	bool have_mem = mbi->flags & MB_INFO_MEMORY;

	if (have_mem)
		printf("memory: lower %u KiB, upper %u KiB (%u MiB total)\n",
		       mbi->mem_lower, mbi->mem_upper,
		       (mbi->mem_upper + 1024) / 1024);
	report(have_mem && mbi->mem_upper > 0, "multiboot mem_upper > 0");

	unsigned available = 0;
	for (struct multiboot_mmap_entry *e = mb_mmap_first(); e; e = mb_mmap_next(e)) {
		printf("mmap: base 0x%016llx length 0x%016llx type %u\n",
		       (unsigned long long)e->base_addr,
		       (unsigned long long)e->length, e->type);
		if (e->type == MB_MMAP_AVAILABLE && e->length > 0)
			available++;
	}
	report(available > 0, "memory map has %u available region(s)", available);
}

static void check_fw_cfg(void)
{
	char sig[5] = { 0 };
	uint8_t cpus[2];

	fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
	report(memcmp(sig, "QEMU", 4) == 0, "fw_cfg signature is \"QEMU\" (got \"%s\")", sig);

	fw_cfg_read(FW_CFG_NB_CPUS, cpus, sizeof(cpus));
	unsigned n = cpus[0] | (unsigned)cpus[1] << 8;	/* little-endian */
	report(n == 1, "fw_cfg CPU count is 1 (got %u)", n);
}

int main(int argc, char **argv)
{
	struct multiboot_info *mbi = mb_info();

	printf("Hello from %s\n", argv[0]);
	for (int i = 1; i < argc; i++)
		printf("argv[%d] = \"%s\"\n", i, argv[i]);

	report(mb_magic() == MULTIBOOT_BOOTLOADER_MAGIC,
	       "multiboot magic 0x%08x", mb_magic());
	report(ends_with(prog_basename(argv[0]), "hello"),
	       "argv[0] names the program (\"%s\")", argv[0]);
	check_memory(mbi);
	check_fw_cfg();
	check_software_interrupts();

	uint8_t v = inb(UNCLAIMED_PORT);
	report(v == 0xff, "unclaimed port 0x%x reads 0xff (got 0x%02x)", UNCLAIMED_PORT, v);

	return report_summary();
}
