/*
 * mmio-storm - N 32-bit writes to an unbacked guest-physical address (no
 * RAM and no device), each a VM exit (KVM_EXIT_MMIO). The monitor drops
 * such writes and answers reads with all ones, like an empty PCI hole.
 *
 * usage: mmio-storm [N] [addr=0x...] [expect=0x...|any]
 *   default N=100000, addr=0xd0000000, expect=0xffffffff (the value a read
 *   must return). QEMU answers unassigned reads with 0: use expect=0 there.
 */
#include "guest.h"

#define USAGE		"mmio-storm [N] [addr=0x...] [expect=0x...|any]"
#define IDENTITY_MAP_END 0x100000000ull	/* boot.S maps 0-4 GiB */

/* Refuse addresses that are RAM according to the multiboot memory map. */
static bool is_ram(uint64_t addr)
{
	for (struct multiboot_mmap_entry *e = mb_mmap_first(); e; e = mb_mmap_next(e)) {
		if (e->type == MB_MMAP_AVAILABLE && addr >= e->base_addr &&
		    addr - e->base_addr < e->length)
			return true;
	}
	return false;
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, addr = 0xd0000000, expect = 0xffffffff;
	bool check_read = true;
	const char *val;

	for (int i = 1; i < argc; i++) {
		if ((val = arg_value(argv[i], "addr"))) {
			if (!parse_u64(val, &addr))
				return usage(USAGE " (bad address \"%s\")", val);
		} else if ((val = arg_value(argv[i], "expect"))) {
			check_read = strcmp(val, "any") != 0;
			if (check_read && (!parse_u64(val, &expect) || expect > 0xffffffff))
				return usage(USAGE " (bad expect \"%s\")", val);
		} else if (!parse_u64(argv[i], &n)) {
			return usage(USAGE " (bad argument \"%s\")", argv[i]);
		}
	}
	if (addr % 4 || addr > IDENTITY_MAP_END - 4)
		return usage(USAGE " (addr must be 4-byte aligned and below 4 GiB)");
	if (is_ram(addr))
		return usage(USAGE " (addr 0x%llx is RAM)", (unsigned long long)addr);

	printf("mmio-storm: %llu exits to address 0x%llx\n",
	       (unsigned long long)n, (unsigned long long)addr);

	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		mmio_write32(addr, (uint32_t)i);
	uint64_t cycles = rdtsc() - t0;

	printf("mmio-storm: %llu TSC cycles, %llu per exit\n",
	       (unsigned long long)cycles, (unsigned long long)(n ? cycles / n : 0));
	report(true, "%llu mmio writes to 0x%llx completed",
	       (unsigned long long)n, (unsigned long long)addr);

	uint32_t v = mmio_read32(addr);
	if (check_read)
		report(v == expect, "read of unbacked 0x%llx returns 0x%08llx (got 0x%08x)",
		       (unsigned long long)addr, (unsigned long long)expect, v);
	else
		printf("mmio-storm: read of 0x%llx returned 0x%08x (not checked)\n",
		       (unsigned long long)addr, v);
	report_iterations(n);	/* the unit of work, for terrapin-trace compare */
	return report_summary();
}
