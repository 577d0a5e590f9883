/*
 * turtle - a small Intel VMX hypervisor that runs as Terrapin's L1 guest and
 * boots one multiboot L2 guest (SDM Vol. 3C chapters 24-29).
 *
 * usage: turtle [ept=on|off] [l2mem=16M] [io=bitmap|all] [preempt=N] [prefix=on|off]
 *   with the L2 image as multiboot module 0, whose string is "PATH args":
 *   terrapin run turtle.elf --module "Guests/build/hello.elf a b"
 *
 *   ept=on      (default) L2 runs under a 4-level EPT mapping L2-physical
 *               [0, l2mem) to a 2 MiB-aligned region of turtle's RAM, with
 *               "unrestricted guest" so it can start in the Multiboot state
 *               (protected mode, paging off).
 *   ept=off     no EPT: L2-physical is L1-physical, L2 gets [0, l2mem) and
 *               reaches L1's devices (the APIC too) directly. Without EPT
 *               there is no unrestricted guest and VMX cannot enter a guest
 *               with CR0.PG = 0 (SDM 27.3.1.1), so L2 starts in 64-bit mode
 *               at its image's 64-bit entry (the "T64E" tag of
 *               Guests/lib/boot.S), on an identity map. Also paging=identity.
 *   paging=shadow  shadow paging (turtle/shadow.c, docs/SHADOW.md): no EPT;
 *               L2 gets [0, l2mem) of its own as with EPT, and turtle maps
 *               L2-linear to L1-physical itself, from L2's page tables, at
 *               the #PF, CR3 and INVLPG exits. L2 starts as with ept=off, on
 *               an identity map at the top of its RAM. paging=ept is ept=on.
 *   l2mem=SIZE  L2's memory, 2 MiB multiple from 2M to 1G (default 16M).
 *   p2m=scatter with paging=ept or shadow: L2's memory is turtle's with the
 *               4 KiB pages of each 8 KiB pair swapped (turtle/p2m.c), so
 *               that no two neighbouring pages are contiguous in L1, and
 *               the EPT maps it with 4 KiB leaves (at most 64M): a
 *               fragmented EPT12, for L0's EPT02 policies. p2m=flat is
 *               the default.
 *   io=bitmap   (default) I/O bitmaps intercept COM1 (0x3f8-0x3ff), the
 *               debug-exit port (0xf4-0xf7) and 0x80; other ports go to L0.
 *   io=all      unconditional I/O exiting: turtle is L2's only platform.
 *               It passes L2's work report (ports 0x5a0-0x5a7) on to L0.
 *   preempt=N   VMX-preemption timer with value N, re-armed on each expiry.
 *   exceptions=MASK  exception bitmap: L2's exceptions in MASK exit to turtle,
 *               which logs and re-injects each into L2.
 *   ad=on       EPT accessed and dirty flags, checked at the end.
 *   hlt=wait    no HLT exiting: L2's HLT leaves it in the HLT activity state,
 *               where only turtle's timers bring exits; an interrupt of L2's
 *               APIC injected at entry wakes it, and with none to come turtle
 *               stops after 5 such exits.
 *   intercept=LIST  a comma-separated list (CPUID exits whatever turtle
 *               asks): rdtsc, RDTSC exiting, answered with turtle's TSC
 *               plus tscoffset; cr3, CR3-load and CR3-store exiting, with
 *               no CR3-target values, which turtle carries out on GUEST_CR3;
 *               invlpg, INVLPG exiting (with EPT and no VPID there is
 *               nothing for turtle to invalidate: SDM 29.4.3.1); dr,
 *               MOV-DR exiting, with L2's DR0-DR3 kept by turtle; wbinvd,
 *               WBINVD exiting; cr8, CR8-load and CR8-store exiting, with
 *               L2's CR8 kept by turtle; pause, PAUSE exiting; rdpmc, RDPMC
 *               exiting, answered with turtle's own counters; mwait, MONITOR
 *               and MWAIT exiting, #UD unless CPUID offers them, else no-ops;
 *               rdrand, RDRAND and RDSEED exiting, answered with turtle's;
 *               desc, descriptor-table exiting, which turtle carries out on
 *               the guest-state GDTR, IDTR and LDTR (LLDT of the null
 *               selector only). INVD and XSETBV exit whatever turtle asks;
 *               turtle checks and keeps L2's XCR0. With invlpg, INVPCID
 *               exits too.
 *   cr0mask=M, cr4mask=M  the CR0/CR4 guest/host masks: turtle owns those
 *               bits. L2's writes that change them exit (SDM 26.1.3); turtle
 *               keeps L2's view in the read shadow and the real bits as
 *               they were. CLTS exits when TS is owned and shadowed set.
 *   tscoffset=N "use TSC offsetting" with TSC_OFFSET = N: L2's RDTSC reads
 *               turtle's TSC plus N (SDM 26.3).
 *   vmcs=enlightened  Hyper-V's enlightened VMCS (turtle/evmcs.c,
 *               docs/EVMCS.md): fields are memory with clean bits, and
 *               VMLAUNCH/VMRESUME are the only VMX instructions after
 *               VMXON. Needs L0's Hyper-V leaves (terrapin --hyperv-evmcs).
 *               No preempt=N: eVMCS v1 has no preemption-timer value.
 *   vmcs=vmcs   (default) VMPTRLD, VMREAD and VMWRITE.
 *   irq=direct  with ept=off: external-interrupt exiting 0, so the
 *               interrupts of turtle's APIC, which L2 programs itself, go
 *               straight through L2's IDT (SDM 26.2) instead of exiting to
 *               turtle, which passes them in (irq=exit, the default).
 *   timer=N     turtle's own APIC timer, periodic every N bus ticks (ns): its
 *               interrupts arrive while L2 runs, as external-interrupt exits.
 *               L2's APIC timer (turtle/vapic.c) cannot run on it as well.
 *   msrlists=on IA32_SYSENTER_CS through the VM-entry MSR-load list (into L2)
 *               and the VM-exit MSR-store and MSR-load lists, checked at the end,
 *               with the SYSENTER MSRs of the guest- and host-state areas.
 *   prefix=off  do not prefix L2's output lines with "[L2] ".
 *
 * turtle exits with L2's own exit value (what L2 wrote to port 0xf4 or
 * passed to the "done" hypercall), with 2 for bad arguments, 1 if its own
 * VMX set-up failed, and 3 if L2 stopped any other way.
 */
#include "turtle/turtle.h"

#define USAGE	"turtle [ept=on|off] [paging=ept|shadow|identity] [l2mem=16M] [p2m=flat|scatter] [io=bitmap|all] [preempt=N] [prefix=on|off] [msrlists=on|off] [timer=N] [exceptions=MASK] [ad=on|off] [hlt=exit|wait] [irq=exit|direct] [intercept=cpuid,rdtsc,cr3,invlpg,dr,wbinvd,cr8,pause,rdpmc,mwait,rdrand,desc] [tscoffset=N] [cr0mask=M] [cr4mask=M] [vmcs=vmcs|enlightened] (L2 image = module 0)"
#define MIB	(1ull << 20)

struct turtle_config cfg = { .ept = true, .io_all = false, .prefix = true, .l2mem = 16 * MIB, .preempt = 0 };
const struct l2mem_strategy *l2mem;
int setup_failures;

extern char __image_start[], __image_end[];

/* ---- small utilities shared by turtle/ ---- */

void fast_copy(void *dst, const void *src, uint64_t n)
{
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

void fast_zero(void *dst, uint64_t n)
{
	__asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory");
}

void fail(const char *fmt, ...)
{
	va_list ap;

	setup_failures++;
	printf("FAIL: turtle: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

uint64_t vm_instruction_error(void)
{
	uint64_t err = 0;
	if (cfg.evmcs)
		evmcs_read(VM_INSTRUCTION_ERROR, &err);
	else
		vmread(VM_INSTRUCTION_ERROR, &err);
	return err;
}

uint64_t vmr(uint32_t field)
{
	uint64_t v = 0;
	if (cfg.evmcs) {
		if (!evmcs_read(field, &v))
			fail("field 0x%x is not in the enlightened VMCS", field);
		return v;
	}
	struct vmx_result r = vmread(field, &v);

	if (r.outcome != VMX_SUCCEED) {
		uint64_t err = 0;
		if (r.outcome == VMX_FAIL_VALID)
			err = vm_instruction_error();
		fail("VMREAD of field 0x%x: outcome %d, vector %d, error %llu (%s)", field, r.outcome,
		     r.vector, (unsigned long long)err, vm_instruction_error_name(err));
	}
	return v;
}

bool vmw_named(uint32_t field, uint64_t value, const char *name)
{
	if (cfg.evmcs) {
		if (evmcs_write(field, value))
			return true;
		fail("%s (0x%04x) is not in the enlightened VMCS", name, field);
		return false;
	}
	struct vmx_result r = vmwrite(field, value);

	if (r.outcome == VMX_SUCCEED)
		return true;
	uint64_t err = 0;
	if (r.outcome == VMX_FAIL_VALID)
		err = vm_instruction_error();
	fail("VMWRITE %s (0x%04x) = 0x%llx: %s, VM-instruction error %llu (%s)", name, field,
	     (unsigned long long)value,
	     r.outcome == VMX_FAIL_VALID ? "VMfailValid" : r.outcome == VMX_FAIL_INVALID ? "VMfailInvalid" : "fault",
	     (unsigned long long)err, vm_instruction_error_name(err));
	return false;
}

/* Spurious interrupts need no EOI (SDM Vol. 3A 11.9). */
static void spurious_interrupt(struct regs *r)
{
	(void)r;
}

/* ---- arguments ---- */

static bool parse_size(const char *s, uint64_t *out)
{
	char num[32];
	size_t n = strlen(s);
	uint64_t mult = 1;

	if (n == 0 || n >= sizeof(num))
		return false;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k': case 'K': mult = 1ull << 10; break;
	case 'm': case 'M': mult = 1ull << 20; break;
	case 'g': case 'G': mult = 1ull << 30; break;
	default: break;
	}
	if (mult != 1)
		num[n - 1] = '\0';
	if (!parse_u64(num, out))
		return false;
	*out *= mult;
	return true;
}

/* v is `no` (false) or `yes` (true); anything else is refused. */
static bool parse_choice(const char *v, const char *no, const char *yes, bool *out)
{
	if (!strcmp(v, yes))
		*out = true;
	else if (!strcmp(v, no))
		*out = false;
	else
		return false;
	return true;
}

/* "on" or "off" into *out; false for anything else. */
static bool parse_on_off(const char *v, bool *out)
{
	return parse_choice(v, "off", "on", out);
}

/* The list item [p, end) is `word`. */
static bool item_is(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - p) == n && !strncmp(p, word, n);
}

static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *v;
		if ((v = arg_value(argv[i], "ept"))) {
			if (!parse_on_off(v, &cfg.ept))
				return usage(USAGE);
			cfg.shadow = false;
		} else if ((v = arg_value(argv[i], "paging"))) {
			/* ept (EPT-on-EPT), shadow (shadow-on-EPT), identity (ept=off). */
			if (!strcmp(v, "ept") || !strcmp(v, "shadow") || !strcmp(v, "identity")) {
				cfg.ept = !strcmp(v, "ept");
				cfg.shadow = !strcmp(v, "shadow");
			} else {
				return usage("%s: paging= takes ept, shadow or identity", USAGE);
			}
		} else if ((v = arg_value(argv[i], "p2m"))) {
			if (!parse_choice(v, "flat", "scatter", &cfg.scatter))
				return usage("%s: p2m= takes flat or scatter", USAGE);
		} else if ((v = arg_value(argv[i], "vmcs"))) {
			/* vmcs (VMPTRLD, VMREAD, VMWRITE) or enlightened (Hyper-V's eVMCS, turtle/evmcs.c). */
			if (!parse_choice(v, "vmcs", "enlightened", &cfg.evmcs))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "l2mem"))) {
			if (!parse_size(v, &cfg.l2mem) || cfg.l2mem < 2 * MIB || cfg.l2mem > 1024 * MIB ||
			    (cfg.l2mem & (2 * MIB - 1)))
				return usage("%s: l2mem must be a multiple of 2M from 2M to 1G", USAGE);
		} else if ((v = arg_value(argv[i], "io"))) {
			if (!parse_choice(v, "bitmap", "all", &cfg.io_all))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "preempt"))) {
			if (!parse_u64(v, &cfg.preempt) || cfg.preempt > 0xffffffffull)
				return usage("%s: preempt=N needs N from 0 to 2^32-1", USAGE);
		} else if ((v = arg_value(argv[i], "exceptions"))) {
			if (!parse_u64(v, &cfg.exceptions) || cfg.exceptions > 0xffffffffull)
				return usage("%s: exceptions=MASK needs a 32-bit mask", USAGE);
		} else if ((v = arg_value(argv[i], "timer"))) {
			if (!parse_u64(v, &cfg.timer) || cfg.timer > 0xffffffffull)
				return usage("%s: timer=N needs N from 0 to 2^32-1", USAGE);
		} else if ((v = arg_value(argv[i], "intercept"))) {
			/* A comma-separated list; CPUID exits whatever the controls say. */
			for (const char *p = v; *p;) {
				const char *end = p;
				while (*end && *end != ',')
					end++;
				if (item_is(p, end, "rdtsc"))
					cfg.intercept_rdtsc = true;
				else if (item_is(p, end, "cr3"))
					cfg.intercept_cr3 = true;
				else if (item_is(p, end, "invlpg"))
					cfg.intercept_invlpg = true;
				else if (item_is(p, end, "dr"))
					cfg.intercept_dr = true;
				else if (item_is(p, end, "wbinvd"))
					cfg.intercept_wbinvd = true;
				else if (item_is(p, end, "cr8"))
					cfg.intercept_cr8 = true;
				else if (item_is(p, end, "pause"))
					cfg.intercept_pause = true;
				else if (item_is(p, end, "rdpmc"))
					cfg.intercept_rdpmc = true;
				else if (item_is(p, end, "mwait"))
					cfg.intercept_mwait = true;
				else if (item_is(p, end, "rdrand"))
					cfg.intercept_rdrand = true;
				else if (item_is(p, end, "desc"))
					cfg.intercept_desc = true;
				else if (!item_is(p, end, "cpuid"))
					return usage("%s: intercept= takes cpuid, rdtsc, cr3, invlpg, dr, wbinvd, cr8, pause, rdpmc, mwait, "
						     "rdrand and desc", USAGE);
				p = *end ? end + 1 : end;
			}
		} else if ((v = arg_value(argv[i], "cr0mask"))) {
			if (!parse_u64(v, &cfg.cr0_mask) || cfg.cr0_mask >> 32)
				return usage("%s: cr0mask=MASK needs a 32-bit mask", USAGE);
		} else if ((v = arg_value(argv[i], "cr4mask"))) {
			if (!parse_u64(v, &cfg.cr4_mask) || cfg.cr4_mask >> 32)
				return usage("%s: cr4mask=MASK needs a 32-bit mask", USAGE);
		} else if ((v = arg_value(argv[i], "tscoffset"))) {
			if (!parse_u64(v, &cfg.tsc_offset))
				return usage("%s: tscoffset=N needs a 64-bit N", USAGE);
		} else if ((v = arg_value(argv[i], "irq"))) {
			if (!parse_choice(v, "exit", "direct", &cfg.irq_direct))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "hlt"))) {
			if (!parse_choice(v, "exit", "wait", &cfg.hlt_wait))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "ad"))) {
			if (!parse_on_off(v, &cfg.ad))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "msrlists"))) {
			if (!parse_on_off(v, &cfg.msrlists))
				return usage(USAGE);
		} else if ((v = arg_value(argv[i], "prefix"))) {
			if (!parse_on_off(v, &cfg.prefix))
				return usage(USAGE);
		} else {
			return usage(USAGE);
		}
	}
	/* Only an L2 that owns turtle's APIC can take its interrupts directly. */
	if (cfg.shadow && (cfg.exceptions & (1u << 14)))
		return usage("%s: paging=shadow takes every #PF itself; exceptions= cannot have bit 14", USAGE);
	if (cfg.scatter && !cfg.ept && !cfg.shadow)
		return usage("%s: p2m=scatter needs paging=ept or shadow (identity is L1's own memory)", USAGE);
	/* eVMCS v1 has no VMX-preemption timer value (TLFS HV_VMX_ENLIGHTENED_VMCS). */
	if (cfg.evmcs && cfg.preempt)
		return usage("%s: vmcs=enlightened has no VMX-preemption timer value; preempt= needs vmcs=vmcs", USAGE);
	if (cfg.irq_direct && (!l2_uses_turtles_apic() || cfg.timer))
		return usage("%s: irq=direct needs ept=off and no timer=N", USAGE);
	return -1;
}

/* ---- where L2's memory goes ---- */

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * The highest 2 MiB-aligned run of l2mem bytes of available RAM (per the
 * multiboot memory map) above everything turtle must keep: its own image,
 * the modules, the multiboot info and its strings.
 */
static bool choose_l2_region(const struct multiboot_info *mbi)
{
	uint64_t floor = (uintptr_t)__image_end;
	const struct multiboot_module *mods = (const void *)(uintptr_t)mbi->mods_addr;

	if (!l2mem->own_region) {
		/* Without EPT, L2-physical is L1-physical: L2 gets [0, l2mem),
		 * which must end below turtle's image and the modules. */
		uint64_t ceiling = (uintptr_t)__image_start;
		for (uint32_t i = 0; i < mbi->mods_count; i++)
			ceiling = mods[i].mod_start < ceiling ? mods[i].mod_start : ceiling;
		if (cfg.l2mem > ceiling) {
			fail("ept=off: L2 uses L1-physical [0, 0x%llx), which must end below turtle and its modules at 0x%llx "
			     "(try a smaller l2mem)", (unsigned long long)cfg.l2mem, (unsigned long long)ceiling);
			return false;
		}
		p2m = (struct p2m){ .base = 0, .size = cfg.l2mem };
		printf("turtle: L2 memory: %llu MiB at L1-physical 0 (ept=off: L2-physical is L1-physical)\n",
		       (unsigned long long)(cfg.l2mem / MIB));
		return true;
	}

	floor = max_u64(floor, (uintptr_t)mbi + sizeof(*mbi));
	if (mbi->flags & MB_INFO_CMDLINE)
		floor = max_u64(floor, mbi->cmdline + strlen((const char *)(uintptr_t)mbi->cmdline) + 1);
	if (mbi->flags & MB_INFO_MMAP)
		floor = max_u64(floor, (uint64_t)mbi->mmap_addr + mbi->mmap_length);
	floor = max_u64(floor, mbi->mods_addr + mbi->mods_count * sizeof(*mods));
	for (uint32_t i = 0; i < mbi->mods_count; i++) {
		floor = max_u64(floor, mods[i].mod_end);
		if (mods[i].string)
			floor = max_u64(floor, mods[i].string + strlen((const char *)(uintptr_t)mods[i].string) + 1);
	}
	floor = (floor + 2 * MIB - 1) & ~(2 * MIB - 1);

	uint64_t base = 0;
	for (struct multiboot_mmap_entry *e = mb_mmap_first(); e; e = mb_mmap_next(e)) {
		if (e->type != MB_MMAP_AVAILABLE)
			continue;
		uint64_t lo = max_u64(e->base_addr, floor), hi = e->base_addr + e->length;
		if (hi > (4ull << 30))
			hi = 4ull << 30;	/* turtle's own page tables map 0-4 GiB */
		hi &= ~(2 * MIB - 1);
		if (hi < lo + cfg.l2mem || hi - cfg.l2mem < base)
			continue;
		base = hi - cfg.l2mem;
	}
	if (!base) {
		fail("no 2 MiB-aligned %llu MiB of RAM above 0x%llx for L2 (turtle runs at 0x%llx-0x%llx; try a larger --memory or a smaller l2mem)",
		     (unsigned long long)(cfg.l2mem / MIB), (unsigned long long)floor,
		     (unsigned long long)(uintptr_t)__image_start, (unsigned long long)(uintptr_t)__image_end);
		return false;
	}
	p2m = (struct p2m){ .base = base, .size = cfg.l2mem, .scatter = cfg.scatter };
	printf("turtle: L2 memory: %llu MiB at L1-physical 0x%llx%s (turtle's image 0x%llx-0x%llx)\n",
	       (unsigned long long)(cfg.l2mem / MIB), (unsigned long long)base, cfg.scatter ? ", pages swapped pairwise" : "",
	       (unsigned long long)(uintptr_t)__image_start, (unsigned long long)(uintptr_t)__image_end);
	return true;
}

/* L2's command line: basename(PATH) followed by the module's arguments. */
static bool l2_cmdline(const char *modstr, char *out, size_t size)
{
	const char *end = modstr, *base = modstr;

	while (*end && *end != ' ')
		end++;
	for (const char *p = modstr; p < end; p++)
		if (*p == '/')
			base = p + 1;
	size_t n = (size_t)(end - base), rest = strlen(end);
	if (n + rest + 1 > size)
		return false;
	memcpy(out, base, n);
	memcpy(out + n, end, rest + 1);
	return true;
}

static __attribute__((noreturn)) void finish(bool in_vmx, int value)
{
	if (in_vmx)
		vmx_disable();
	exit(value);
}

int main(int argc, char **argv)
{
	int rc = parse_args(argc, argv);
	if (rc >= 0)
		return rc;

	trap_init();
	turtle_gdt_init();
	l2mem = cfg.shadow ? &l2mem_shadow : cfg.ept ? &l2mem_ept : &l2mem_identity;
	printf("turtle: L1 hypervisor: paging=%s l2mem=%lluM io=%s preempt=%llu vmcs=%s\n",
	       l2mem->name,
	       (unsigned long long)(cfg.l2mem / MIB), cfg.io_all ? "all" : "bitmap",
	       (unsigned long long)cfg.preempt, cfg.evmcs ? "enlightened" : "vmcs");

	struct multiboot_info *mbi = mb_info();
	if (!mbi || !(mbi->flags & MB_INFO_MODS) || mbi->mods_count < 1)
		return usage("%s: no L2 image (pass it with --module \"PATH args\")", USAGE);
	const struct multiboot_module *mod = (const void *)(uintptr_t)mbi->mods_addr;
	const char *modstr = mod->string ? (const char *)(uintptr_t)mod->string : "l2";
	static char cmdline[1024];
	if (!l2_cmdline(modstr, cmdline, sizeof(cmdline)))
		return usage("%s: the L2 command line is too long", USAGE);
	printf("turtle: module 0 \"%s\" at 0x%x-0x%x\n", modstr, mod->mod_start, mod->mod_end);

	struct l2_image img;
	struct l2mem_needs need;
	const char *why;
	if (!choose_l2_region(mbi) ||
	    !l2_load((const uint8_t *)(uintptr_t)mod->mod_start, mod->mod_end - mod->mod_start, cmdline, &img))
		finish(false, EXIT_FAIL);
	if (!cfg.ept && !img.entry64) {	/* paging=shadow and ept=off alike */
		printf("turtle: ept=off starts L2 in 64-bit mode, since without EPT there is no \"unrestricted guest\" to run\n"
		       "turtle: its paging-off Multiboot entry (SDM 27.3.1.1), but this image has no 64-bit entry (\"T64E\" tag)\n");
		finish(false, EXIT_FAIL);
	}
	if (!vmx_enable())
		finish(false, EXIT_FAIL);
	if ((why = l2mem->setup(&(struct l2mem_params){ .size = cfg.l2mem, .ad = cfg.ad }, &need)))
		fail("%s", why);
	if (why || !vmcs_setup(&img, &need)) {
		printf("turtle: VMCS set-up failed (%d failures): not launching\n", setup_failures);
		finish(true, EXIT_FAIL);
	}

	/* The Multiboot register state (spec 3.2): VMX loads no GPRs, so L2
	 * starts with these from l2_gprs (entry.S). */
	for (int i = 0; i < 16; i++)
		l2_gprs[i] = 0;
	l2_gprs[R_RAX] = MULTIBOOT_BOOTLOADER_MAGIC;
	l2_gprs[R_RBX] = img.mbi;
	printf("turtle: VMLAUNCH L2 at 0x%llx (EAX 0x%x, EBX 0x%llx)\n",
	       (unsigned long long)(cfg.ept ? img.entry : img.entry64),
	       MULTIBOOT_BOOTLOADER_MAGIC, (unsigned long long)img.mbi);

	/* turtle's APIC timer is its own (timer=N) or runs L2's (turtle/vapic.c).
	 * Interrupts stay off in turtle except while it sleeps for a halted L2:
	 * with external-interrupt exiting and "acknowledge interrupt on exit",
	 * each expiry while L2 runs is an exit (SDM 25.7.1). */
	pic_mask_all();
	set_irq_handler(TURTLE_TIMER_VECTOR, turtle_timer_interrupt);
	set_irq_handler(TURTLE_SPURIOUS_VECTOR, spurious_interrupt);
	apic_enable(TURTLE_SPURIOUS_VECTOR);
	if (cfg.timer) {
		apic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIV_1);
		apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | TURTLE_TIMER_VECTOR);
		apic_write(APIC_TIMER_INITIAL, (uint32_t)cfg.timer);
	}
	rc = turtle_run(1);
	apic_write(APIC_TIMER_INITIAL, 0);
	if (rc != 0) {
		uint64_t total = exit_other;
		for (int r = 0; r <= EXIT_REASON_MAX; r++)
			total += exit_counts[r];
		const char *insn = total ? "VMRESUME" : "VMLAUNCH";
		stop_why = total ? "VMRESUME failed" : "VMLAUNCH failed";
		if (rc == 2) {
			uint64_t err = vmr(VM_INSTRUCTION_ERROR);
			printf("FAIL: turtle: %s failed: VMfailValid, VM-instruction error %llu (%s)\n", insn,
			       (unsigned long long)err, vm_instruction_error_name(err));
		} else {
			printf("FAIL: turtle: %s failed: %s\n", insn, rc == 1 ? "VMfailInvalid" : "no VMfail flag set");
		}
		if (total) {
			uint64_t reason = vmr(EXIT_REASON);
			printf("turtle: the last exit was reason %llu (%s)\n", (unsigned long long)(reason & 0xffff),
			       exit_reason_name((uint32_t)(reason & 0xffff)));
		}
	}
	exit_report();
	report(l2_code_intact(), "turtle: L2's code in turtle's memory is its image's, byte for byte");
	if (cfg.msrlists) {
		report(msr_exit_store[0].value == MSR_LIST_L2_VALUE,
		       "turtle: the exit MSR-store list holds L2's IA32_SYSENTER_CS 0x%llx (entry list loaded 0x%x)",
		       (unsigned long long)msr_exit_store[0].value, MSR_LIST_L2_VALUE);
		report(rdmsr(MSR_LIST_MSR) == MSR_LIST_L1_VALUE,
		       "turtle: the exit MSR-load list set L1's IA32_SYSENTER_CS to 0x%llx (wanted 0x%x)",
		       (unsigned long long)rdmsr(MSR_LIST_MSR), MSR_LIST_L1_VALUE);
		/* The SYSENTER MSRs travel with the guest- and host-state areas too. */
		report(msr_exit_store[1].value == GUEST_SYSENTER_ESP_VALUE,
		       "turtle: L2 ran with the guest-state IA32_SYSENTER_ESP 0x%llx (wanted 0x%x, SDM 27.3.2.1)",
		       (unsigned long long)msr_exit_store[1].value, GUEST_SYSENTER_ESP_VALUE);
		report(vmr(GUEST_SYSENTER_CS) == MSR_LIST_L2_VALUE,
		       "turtle: the exit saved L2's IA32_SYSENTER_CS 0x%llx into the guest-state area (SDM 28.3.3)",
		       (unsigned long long)vmr(GUEST_SYSENTER_CS));
		report(vmr(GUEST_SYSENTER_EIP) == msr_exit_store[2].value,
		       "turtle: the saved guest-state IA32_SYSENTER_EIP 0x%llx agrees with the MSR-store list's 0x%llx",
		       (unsigned long long)vmr(GUEST_SYSENTER_EIP), (unsigned long long)msr_exit_store[2].value);
		report(rdmsr(MSR_SYSENTER_EIP) == HOST_SYSENTER_EIP_VALUE,
		       "turtle: the exit loaded L1's IA32_SYSENTER_EIP 0x%llx from the host-state area (SDM 28.5.1)",
		       (unsigned long long)rdmsr(MSR_SYSENTER_EIP));
	}
	if (l2_finished)
		printf("turtle: L2 finished with exit value %u\n", l2_status);
	else
		printf("turtle: L2 did not finish: exiting with %d (panic)\n", EXIT_PANIC);
	finish(true, l2_finished ? (int)l2_status : EXIT_PANIC);
}
