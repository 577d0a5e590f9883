/*
 * vapic.c - the local APIC turtle emulates for L2 (xAPIC MMIO mode, SDM
 * Vol. 3A chapter 11), so that guests that wait for interrupts run as L2.
 *
 * L2's APIC page at 0xfee00000 is not in turtle's EPT, so every access is an
 * EPT violation that exit.c decodes and hands to vapic_read/vapic_write.
 *
 * - Timer (11.5.4): one-shot and periodic, run on turtle's own APIC timer
 *   in one-shot mode: L2's divide and initial count are written through,
 *   the current count is read through, and each expiry of turtle's timer
 *   (vector TURTLE_TIMER_VECTOR) raises L2's LVT vector unless L2 masked
 *   it. A periodic timer starts its next period when turtle injects the
 *   interrupt, not when the last one expired: a nested exit can take longer
 *   than a short period, and a timer that expires again before L2 has run
 *   an instruction would starve L2 (a masked periodic timer therefore stops
 *   after one period). With turtle's own `timer=N` the timer is turtle's,
 *   and L2 programming its timer stops the run with a message.
 * - Interrupts: IRR and ISR bitmaps, TPR and the processor priority
 *   (11.8.3), EOI clearing the highest in-service vector (11.8.5), and
 *   fixed-mode self-IPIs through the ICR (11.6.1).
 * - exit.c injects the highest deliverable vector at VM entry (SDM 26.6).
 * - With ept=off the APIC page is not remapped, so L2 uses turtle's APIC
 *   itself: its interrupts exit to turtle acknowledged, pass through the
 *   IRR here untouched by priority or ISR, and L2's EOI goes to the APIC.
 *
 * Not emulated: LINT0/1, error and thermal LVTs, TSC-deadline mode, logical
 * destinations, IPIs to other CPUs. Their registers read 0 and writes to
 * them are counted and ignored.
 */
#include "turtle.h"

#define REG_ID		0x020
#define REG_VERSION	0x030
#define REG_TPR		0x080
#define REG_PPR		0x0a0
#define REG_EOI		0x0b0
#define REG_LDR		0x0d0
#define REG_DFR		0x0e0
#define REG_SVR		0x0f0
#define REG_ISR		0x100
#define REG_TMR		0x180
#define REG_IRR		0x200
#define REG_ICR_LOW	0x300
#define REG_ICR_HIGH	0x310
#define REG_LVT_TIMER	0x320
#define REG_TIMER_INIT	0x380
#define REG_TIMER_CUR	0x390
#define REG_TIMER_DIV	0x3e0

#define LVT_MASKED	(1u << 16)
#define LVT_PERIODIC	(1u << 17)
#define LVT_TIMER_MODE	(3u << 17)
#define SVR_ENABLE	(1u << 8)
#define ICR_MODE	(7u << 8)
#define ICR_SHORTHAND	(3u << 18)
#define ICR_SELF	(1u << 18)
#define ICR_ALL_INCL	(2u << 18)

/* Version 0x14 (an integrated xAPIC), 6 LVT entries (11.4.8). */
#define VAPIC_VERSION	0x00050014u

static struct {
	uint32_t irr[8], isr[8];	/* 256 bits each, as the APIC lays them out */
	uint32_t direct[8];		/* IRR vectors of the APIC itself (ept=off) */
	bool irr_any;			/* some IRR bit is set: the fast path of every exit */
	uint32_t tpr, svr, lvt_timer, timer_init, timer_div, icr_high;
	bool timer_used;		/* L2 programmed its timer */
	bool expired;			/* it fired, and no new count or period started since */
} apic = { .svr = 0xff, .lvt_timer = LVT_MASKED };

static uint64_t reads, writes, ignored_writes, expiries, dropped_expiries, ipis, unsupported_ipis, injected, passed;

bool vapic_claims(uint64_t gpa)
{
	return gpa >= VAPIC_BASE && gpa < VAPIC_BASE + 0x1000;
}

static void set_bit(uint32_t *map, uint8_t v)   { map[v / 32] |= 1u << (v % 32); }
static void clear_bit(uint32_t *map, uint8_t v) { map[v / 32] &= ~(1u << (v % 32)); }
static bool test_bit(const uint32_t *map, uint8_t v) { return map[v / 32] & (1u << (v % 32)); }

/* The highest vector set in a 256-bit map, or -1. */
static int highest(const uint32_t *map)
{
	for (int i = 7; i >= 0; i--)
		if (map[i])
			return i * 32 + 31 - __builtin_clz(map[i]);
	return -1;
}

/* Processor priority (11.8.3.1): the TPR, or the in-service class if higher. */
static uint32_t ppr(void)
{
	int in_service = highest(apic.isr);
	uint32_t isr_class = in_service < 0 ? 0 : (uint32_t)in_service & 0xf0;

	return (apic.tpr & 0xf0) >= isr_class ? apic.tpr & 0xff : isr_class;
}

/* Accepting an interrupt sets its IRR bit (11.8.4); vectors 0-15 are illegal. */
static void accept(uint8_t vector)
{
	if (vector >= 16) {
		set_bit(apic.irr, vector);
		apic.irr_any = true;
	}
}

int vapic_deliverable(void)
{
	if (!apic.irr_any)
		return -1;
	int v = highest(apic.irr);

	if (v >= 0 && test_bit(apic.direct, (uint8_t)v))
		return v;		/* the APIC itself arbitrated it */
	if (!(apic.svr & SVR_ENABLE) || v < 0 || ((uint32_t)v & 0xf0) <= (ppr() & 0xf0))
		return -1;
	return v;
}

int vapic_ack(void)
{
	int v = vapic_deliverable();

	if (v < 0)
		return v;
	clear_bit(apic.irr, (uint8_t)v);
	apic.irr_any = highest(apic.irr) >= 0;
	injected++;
	if (test_bit(apic.direct, (uint8_t)v)) {
		clear_bit(apic.direct, (uint8_t)v);	/* L2's EOI goes to the APIC itself */
		return v;
	}
	set_bit(apic.isr, (uint8_t)v);
	if (apic.timer_used && (apic.lvt_timer & LVT_PERIODIC) && (uint8_t)v == (uint8_t)apic.lvt_timer &&
	    apic.timer_init) {
		apic.expired = false;					/* the next period */
		apic_write(APIC_TIMER_INITIAL, apic.timer_init);
	}
	return v;
}

bool vapic_timer_armed(void)
{
	return apic.timer_used && apic.timer_init != 0 && !(apic.lvt_timer & LVT_MASKED) && !apic.expired;
}

void vapic_pass_through(uint8_t vector)
{
	set_bit(apic.direct, vector);
	set_bit(apic.irr, vector);
	apic.irr_any = true;
	passed++;
}

void vapic_timer_fired(void)
{
	if (!apic.timer_used)
		return;
	expiries++;
	apic.expired = true;
	if ((apic.lvt_timer & LVT_MASKED) || !(apic.svr & SVR_ENABLE))
		dropped_expiries++;
	else
		accept((uint8_t)apic.lvt_timer);
}

/* ICR (11.6.1): fixed-mode IPIs that reach this CPU (ID 0) are accepted. */
static void send_ipi(uint32_t low)
{
	uint32_t shorthand = low & ICR_SHORTHAND, dest = apic.icr_high >> 24;
	bool to_self = shorthand == ICR_SELF || shorthand == ICR_ALL_INCL ||
		       (shorthand == 0 && (dest == 0 || dest == 0xff));

	if ((low & ICR_MODE) != 0 || !to_self) {
		unsupported_ipis++;
		return;
	}
	ipis++;
	accept((uint8_t)low);
}

uint32_t vapic_read(uint32_t offset)
{
	uint32_t reg = offset & 0xff0;

	reads++;
	if (reg >= REG_ISR && reg < REG_TMR)
		return apic.isr[(reg - REG_ISR) / 16];
	if (reg >= REG_IRR && reg < REG_IRR + 0x80)
		return apic.irr[(reg - REG_IRR) / 16];
	switch (reg) {
	case REG_ID:		return 0;
	case REG_VERSION:	return VAPIC_VERSION;
	case REG_TPR:		return apic.tpr;
	case REG_PPR:		return ppr();
	case REG_DFR:		return 0xffffffffu;	/* flat model (11.6.2.2) */
	case REG_SVR:		return apic.svr;
	case REG_ICR_LOW:	return 0;		/* delivery status: idle */
	case REG_ICR_HIGH:	return apic.icr_high;
	case REG_LVT_TIMER:	return apic.lvt_timer;
	case REG_TIMER_INIT:	return apic.timer_init;
	case REG_TIMER_CUR:	return apic.timer_used ? apic_read(APIC_TIMER_CURRENT) : 0;
	case REG_TIMER_DIV:	return apic.timer_div;
	default:		return 0;
	}
}

const char *vapic_write(uint32_t offset, uint32_t value)
{
	writes++;
	switch (offset & 0xff0) {
	case REG_TPR:
		apic.tpr = value & 0xff;
		return NULL;
	case REG_EOI: {
		int v = highest(apic.isr);
		if (v >= 0)
			clear_bit(apic.isr, (uint8_t)v);
		return NULL;
	}
	case REG_SVR:
		apic.svr = value & 0x1ff;
		return NULL;
	case REG_ICR_HIGH:
		apic.icr_high = value & 0xff000000u;
		return NULL;
	case REG_ICR_LOW:
		send_ipi(value);
		return NULL;
	case REG_LVT_TIMER:
		apic.lvt_timer = value & (LVT_MASKED | LVT_TIMER_MODE | 0xff);
		if ((apic.lvt_timer & LVT_TIMER_MODE) == (2u << 17))
			return "L2 selected TSC-deadline mode, which turtle's APIC does not emulate";
		return NULL;
	case REG_TIMER_DIV:
		apic.timer_div = value & 0xb;
		if (apic.timer_used)
			apic_write(APIC_TIMER_DIVIDE, apic.timer_div);
		return NULL;
	case REG_TIMER_INIT:
		/* Writing the initial count (re)starts the timer (11.5.4). */
		if (cfg.timer)
			return "L2 programs its APIC timer, but turtle's timer=N holds turtle's only timer";
		if (!apic.timer_used) {
			apic.timer_used = true;
			apic_write(APIC_TIMER_DIVIDE, apic.timer_div);
			/* One-shot and unmasked, so that every expiry is seen. */
			apic_write(APIC_LVT_TIMER, APIC_TIMER_ONESHOT | TURTLE_TIMER_VECTOR);
		}
		apic.timer_init = value;
		apic.expired = false;
		apic_write(APIC_TIMER_INITIAL, value);
		return NULL;
	default:
		ignored_writes++;
		return NULL;
	}
}

void vapic_report(void)
{
	if (passed)
		printf("turtle: interrupts of turtle's APIC passed through to L2: %llu, injected %llu\n",
		       (unsigned long long)passed, (unsigned long long)injected);
	if (!reads && !writes && !expiries)
		return;
	printf("turtle: L2's APIC: %llu reads, %llu writes (%llu ignored); timer expiries %llu (%llu masked); "
	       "self-IPIs %llu (unsupported %llu); interrupts injected %llu\n",
	       (unsigned long long)reads, (unsigned long long)writes, (unsigned long long)ignored_writes,
	       (unsigned long long)expiries, (unsigned long long)dropped_expiries, (unsigned long long)ipis,
	       (unsigned long long)unsupported_ipis, (unsigned long long)injected);
}
