/*
 * evmcs.c - turtle's enlightened VMCS (vmcs=enlightened): Hyper-V's eVMCS
 * version 1, as the Hypervisor Top-Level Functional Specification defines
 * it ("Nested Virtualization", "Enlightened VMCS", "Clean Fields"; the
 * layout is its data type HV_VMX_ENLIGHTENED_VMCS).
 *
 * turtle finds the interface through CPUID (1:ECX.31, then 0x40000000-
 * 0x4000000A), enables its VP assist page, names its eVMCS there with
 * "enlightened VM entry" on, and from then on reads and writes VMCS fields
 * as memory: vmr() and VMW() come here. VMLAUNCH and VMRESUME are the only
 * VMX instructions left on the exit path. A write clears the clean bit of
 * the field's group; after each exit every bit is set again, since what
 * L0 wrote into the page is what it holds (evmcs_exit).
 */
#include "turtle.h"

#define HV_CPUID_VENDOR		0x40000000u
#define HV_CPUID_INTERFACE	0x40000001u
#define HV_CPUID_HINTS		0x40000004u
#define HV_CPUID_NESTED		0x4000000au
#define HV_INTERFACE_HV1	0x31237648u	/* "Hv#1" */
#define HV_HINT_EVMCS		(1u << 14)	/* "Recommend using enlightened VMCS" */
#define HV_MSR_VP_ASSIST_PAGE	0x40000073u
#define EVMCS_VERSION		1u
#define EVMCS_CLEAN_OFFSET	824		/* the synthetic CleanFields word */
#define EVMCS_CLEAN_ALL		0xffffu
#define VP_ENLIGHTEN_VMENTRY	40		/* VP assist page: BOOLEAN EnlightenVmEntry */
#define VP_CURRENT_NESTED_VMCS	48		/* VP assist page: GPA of the eVMCS */

static uint8_t vp_assist_page[4096] __attribute__((aligned(4096)));
static uint8_t evmcs_page[4096] __attribute__((aligned(4096)));

/* One field: its encoding, byte offset, width in bytes and clean-field
 * group (0: none, read by L0 at every entry; 0xffff: every group). */
struct evmcs_slot {
	uint16_t field, offset;
	uint8_t width;
	uint16_t group;
};

static const struct evmcs_slot slots[] = {
	{ 0x0c00, 8, 2, 0x4000 },
	{ 0x0c02, 10, 2, 0x4000 },
	{ 0x0c04, 12, 2, 0x4000 },
	{ 0x0c06, 14, 2, 0x4000 },
	{ 0x0c08, 16, 2, 0x4000 },
	{ 0x0c0a, 18, 2, 0x4000 },
	{ 0x0c0c, 20, 2, 0x4000 },
	{ 0x2c00, 24, 8, 0x4000 },
	{ 0x2c02, 32, 8, 0x4000 },
	{ 0x6c00, 40, 8, 0x4000 },
	{ 0x6c02, 48, 8, 0x4000 },
	{ 0x6c04, 56, 8, 0x4000 },
	{ 0x6c10, 64, 8, 0x4000 },
	{ 0x6c12, 72, 8, 0x4000 },
	{ 0x6c16, 80, 8, 0x4000 },
	{ 0x4c00, 88, 4, 0x4000 },
	{ 0x4000, 92, 4, 0x0008 },
	{ 0x400c, 96, 4, 0x0008 },
	{ 0x401e, 100, 4, 0x0008 },
	{ 0x2000, 104, 8, 0x0001 },
	{ 0x2002, 112, 8, 0x0001 },
	{ 0x2004, 120, 8, 0x0002 },
	{ 0x0800, 128, 2, 0x1000 },
	{ 0x0802, 130, 2, 0x1000 },
	{ 0x0804, 132, 2, 0x1000 },
	{ 0x0806, 134, 2, 0x1000 },
	{ 0x0808, 136, 2, 0x1000 },
	{ 0x080a, 138, 2, 0x1000 },
	{ 0x080c, 140, 2, 0x1000 },
	{ 0x080e, 142, 2, 0x1000 },
	{ 0x4800, 144, 4, 0x1000 },
	{ 0x4802, 148, 4, 0x1000 },
	{ 0x4804, 152, 4, 0x1000 },
	{ 0x4806, 156, 4, 0x1000 },
	{ 0x4808, 160, 4, 0x1000 },
	{ 0x480a, 164, 4, 0x1000 },
	{ 0x480c, 168, 4, 0x1000 },
	{ 0x480e, 172, 4, 0x1000 },
	{ 0x4810, 176, 4, 0x1000 },
	{ 0x4812, 180, 4, 0x1000 },
	{ 0x4814, 184, 4, 0x1000 },
	{ 0x4816, 188, 4, 0x1000 },
	{ 0x4818, 192, 4, 0x1000 },
	{ 0x481a, 196, 4, 0x1000 },
	{ 0x481c, 200, 4, 0x1000 },
	{ 0x481e, 204, 4, 0x1000 },
	{ 0x4820, 208, 4, 0x1000 },
	{ 0x4822, 212, 4, 0x1000 },
	{ 0x6806, 216, 8, 0x1000 },
	{ 0x6808, 224, 8, 0x1000 },
	{ 0x680a, 232, 8, 0x1000 },
	{ 0x680c, 240, 8, 0x1000 },
	{ 0x680e, 248, 8, 0x1000 },
	{ 0x6810, 256, 8, 0x1000 },
	{ 0x6812, 264, 8, 0x1000 },
	{ 0x6814, 272, 8, 0x1000 },
	{ 0x6816, 280, 8, 0x1000 },
	{ 0x6818, 288, 8, 0x1000 },
	{ 0x2006, 320, 8, 0xffff },
	{ 0x2008, 328, 8, 0xffff },
	{ 0x200a, 336, 8, 0xffff },
	{ 0x6008, 344, 8, 0xffff },
	{ 0x600a, 352, 8, 0xffff },
	{ 0x600c, 360, 8, 0xffff },
	{ 0x600e, 368, 8, 0xffff },
	{ 0x4006, 376, 4, 0xffff },
	{ 0x4008, 380, 4, 0xffff },
	{ 0x400a, 384, 4, 0xffff },
	{ 0x400e, 388, 4, 0xffff },
	{ 0x4010, 392, 4, 0xffff },
	{ 0x4014, 396, 4, 0xffff },
	{ 0x2010, 400, 8, 0x0004 },
	{ 0x2012, 408, 8, 0x0004 },
	{ 0x2800, 416, 8, 0x0800 },
	{ 0x2802, 424, 8, 0x0800 },
	{ 0x2804, 432, 8, 0x0800 },
	{ 0x2806, 440, 8, 0x0800 },
	{ 0x280a, 448, 8, 0x0800 },
	{ 0x280c, 456, 8, 0x0800 },
	{ 0x280e, 464, 8, 0x0800 },
	{ 0x2810, 472, 8, 0x0800 },
	{ 0x6822, 480, 8, 0x0800 },
	{ 0x6824, 488, 8, 0x0800 },
	{ 0x6826, 496, 8, 0x0800 },
	{ 0x4826, 504, 4, 0x0800 },
	{ 0x482a, 508, 4, 0x0800 },
	{ 0x6000, 512, 8, 0x0100 },
	{ 0x6002, 520, 8, 0x0100 },
	{ 0x6004, 528, 8, 0x0100 },
	{ 0x6006, 536, 8, 0x0100 },
	{ 0x6800, 544, 8, 0x0100 },
	{ 0x6802, 552, 8, 0x0100 },
	{ 0x6804, 560, 8, 0x0100 },
	{ 0x681a, 568, 8, 0x0100 },
	{ 0x6c06, 576, 8, 0x2000 },
	{ 0x6c08, 584, 8, 0x2000 },
	{ 0x6c0a, 592, 8, 0x2000 },
	{ 0x6c0c, 600, 8, 0x2000 },
	{ 0x6c0e, 608, 8, 0x2000 },
	{ 0x6c14, 616, 8, 0x2000 },
	{ 0x201a, 624, 8, 0x0200 },
	{ 0x0000, 632, 2, 0x0200 },
	{ 0x2400, 680, 8, 0x0000 },
	{ 0x4400, 688, 4, 0x0000 },
	{ 0x4402, 692, 4, 0x0000 },
	{ 0x4404, 696, 4, 0x0000 },
	{ 0x4406, 700, 4, 0x0000 },
	{ 0x4408, 704, 4, 0x0000 },
	{ 0x440a, 708, 4, 0x0000 },
	{ 0x440c, 712, 4, 0x0000 },
	{ 0x440e, 716, 4, 0x0000 },
	{ 0x6400, 720, 8, 0x0000 },
	{ 0x6402, 728, 8, 0x0000 },
	{ 0x6404, 736, 8, 0x0000 },
	{ 0x6406, 744, 8, 0x0000 },
	{ 0x6408, 752, 8, 0x0000 },
	{ 0x640a, 760, 8, 0x0000 },
	{ 0x681c, 768, 8, 0x0400 },
	{ 0x6820, 776, 8, 0x0400 },
	{ 0x4824, 784, 4, 0x0400 },
	{ 0x4002, 788, 4, 0x0010 },
	{ 0x4004, 792, 4, 0x0080 },
	{ 0x4012, 796, 4, 0x0040 },
	{ 0x4016, 800, 4, 0x0020 },
	{ 0x4018, 804, 4, 0x0020 },
	{ 0x401a, 808, 4, 0x0020 },
	{ 0x401c, 812, 4, 0x0000 },
	{ 0x681e, 816, 8, 0x0000 },
	{ 0x2812, 896, 8, 0x0800 },
	{ 0x2808, 904, 8, 0x0800 },
	{ 0x6828, 912, 8, 0x0800 },
	{ 0x682a, 920, 8, 0x0400 },
	{ 0x682c, 928, 8, 0x0800 },
	{ 0x2816, 936, 8, 0x0800 },
	{ 0x202c, 960, 8, 0x0004 },
	{ 0x202e, 968, 8, 0x0004 },
	{ 0x2c04, 976, 8, 0x4000 },
	{ 0x2032, 984, 8, 0x0004 },
	{ 0x6c18, 992, 8, 0x4000 },
	{ 0x6c1a, 1000, 8, 0x4000 },
	{ 0x6c1c, 1008, 8, 0x4000 },
};

/* The slot of each encoding by width (bits 14:13), type (11:10) and index
 * (5:1; every eVMCS field has an index below 32): every guest instruction
 * costs here, so the exit path looks fields up in one step. */
#define KEY(f)		((((f) >> 13) & 3) << 7 | (((f) >> 10) & 3) << 5 | (((f) >> 1) & 31))
static uint8_t slot_index[512];		/* slot + 1, 0: no such field */

static void index_slots(void)
{
	for (unsigned i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		slot_index[KEY(slots[i].field)] = (uint8_t)(i + 1);
}

static const struct evmcs_slot *slot_of(uint32_t field)
{
	if (field & ~0x6c3eu)			/* high access, reserved bits, index >= 32 */
		return 0;
	unsigned i = slot_index[KEY(field)];
	return i ? &slots[i - 1] : 0;
}

static uint32_t *clean_fields(void)
{
	return (uint32_t *)(evmcs_page + EVMCS_CLEAN_OFFSET);
}

bool evmcs_enable(void)
{
	uint32_t a, b, c, d;

	cpuid(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 31))) {
		fail("vmcs=enlightened: CPUID.1:ECX.31 (hypervisor present) is clear");
		return false;
	}
	uint32_t max;
	cpuid(HV_CPUID_VENDOR, 0, &max, &b, &c, &d);
	cpuid(HV_CPUID_INTERFACE, 0, &a, &b, &c, &d);
	if (max < HV_CPUID_NESTED || a != HV_INTERFACE_HV1) {
		fail("vmcs=enlightened: no Hyper-V interface (CPUID 0x40000000 EAX 0x%x, 0x40000001 EAX 0x%x)", max, a);
		return false;
	}
	cpuid(HV_CPUID_HINTS, 0, &a, &b, &c, &d);
	if (!(a & HV_HINT_EVMCS)) {
		fail("vmcs=enlightened: CPUID 0x40000004 EAX 0x%x does not recommend the enlightened VMCS", a);
		return false;
	}
	cpuid(HV_CPUID_NESTED, 0, &a, &b, &c, &d);
	if ((a & 0xff) > EVMCS_VERSION || ((a >> 8) & 0xff) < EVMCS_VERSION) {
		fail("vmcs=enlightened: CPUID 0x4000000A EAX 0x%x: eVMCS versions %u-%u exclude version 1",
		     a, a & 0xff, (a >> 8) & 0xff);
		return false;
	}
	index_slots();
	fast_zero(vp_assist_page, sizeof(vp_assist_page));
	wrmsr(HV_MSR_VP_ASSIST_PAGE, (uintptr_t)vp_assist_page | 1);
	if (rdmsr(HV_MSR_VP_ASSIST_PAGE) != ((uintptr_t)vp_assist_page | 1)) {
		fail("vmcs=enlightened: the VP assist page MSR did not keep its value");
		return false;
	}
	printf("turtle: Hyper-V eVMCS versions %u-%u; VP assist page at 0x%llx\n", a & 0xff, (a >> 8) & 0xff,
	       (unsigned long long)(uintptr_t)vp_assist_page);
	return true;
}

void evmcs_make_current(void)
{
	/* TLFS: "Each enlightened VMCS is exactly one page (4 KB) in size and
	 * must be initially zeroed"; no VMPTRLD makes it current. */
	fast_zero(evmcs_page, sizeof(evmcs_page));
	*(uint32_t *)evmcs_page = EVMCS_VERSION;
	*(uint64_t *)(vp_assist_page + VP_CURRENT_NESTED_VMCS) = (uintptr_t)evmcs_page;
	vp_assist_page[VP_ENLIGHTEN_VMENTRY] = 1;
	printf("turtle: enlightened VMCS at 0x%llx is current (VP assist page)\n",
	       (unsigned long long)(uintptr_t)evmcs_page);
}

bool evmcs_read(uint32_t field, uint64_t *value)
{
	const struct evmcs_slot *s = slot_of(field);
	if (!s)
		return false;
	const uint8_t *p = evmcs_page + s->offset;
	*value = s->width == 2 ? *(const uint16_t *)p : s->width == 4 ? *(const uint32_t *)p : *(const uint64_t *)p;
	return true;
}

bool evmcs_write(uint32_t field, uint64_t value)
{
	const struct evmcs_slot *s = slot_of(field);
	if (!s)
		return false;
	uint8_t *p = evmcs_page + s->offset;
	if (s->width == 2)
		*(uint16_t *)p = (uint16_t)value;
	else if (s->width == 4)
		*(uint32_t *)p = (uint32_t)value;
	else
		*(uint64_t *)p = value;
	*clean_fields() &= ~(uint32_t)s->group;
	return true;
}

void evmcs_exit(void)
{
	*clean_fields() |= EVMCS_CLEAN_ALL;
}
