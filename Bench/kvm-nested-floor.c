/*
 * kvm-nested-floor: the least a userspace L0 must do with KVM for one
 * reflected exit and the VMRESUME that follows it, on two VMs, as Terrapin
 * runs L1 and L2 (docs/ARCHITECTURE.md). It is the floor that L0's own
 * handling times in a trace are compared with (issue 13, scripts/bench).
 *
 * Both guests are the same real-mode loop, `out 0x80, al; jmp back`.
 * One round trip:
 *
 *   KVM_RUN(L2)   L2's OUT exits                          (the exit)
 *   reflect       L2's registers read from sync regs, L1's written to them;
 *                 in the second pass also a KVM_RUN(L2) with immediate_exit
 *                 first, the completing run Terrapin makes for an IN (an
 *                 OUT needs none: KVMTests.testAnOUTNeedsNoCompletingRunAndAnINDoes)
 *   KVM_RUN(L1)   L1's OUT exits                          (L1's VMRESUME)
 *   resume        L2's registers written back through sync regs
 *
 * It prints, for each pass, the median and mean ns of `reflect` and
 * `resume` (from the exit's return to the next KVM_RUN call, which is what
 * Terrapin's trace measures as L0's handling) and of the whole round trip.
 *
 * Then what one vCPU ioctl other than KVM_RUN costs, after an exit of L2
 * (median ns of each, against a plain getpid system call): the ioctls
 * L0 makes per nested exit, such as the KVM_GET_DEBUGREGS that gives L2
 * L1's debug registers at VM entry and L1 L2's at VM exit.
 *
 * A last pass asks what a KVM_RUN leaves of L0's caches: after each exit
 * of L2 it reads a working set of N KiB (a byte per cache line) twice and
 * prints the median ns of the first read (just after the exit) and of the
 * second (the same lines, just read), and their ratio. A ratio near 1
 * means the run left the set in the caches; a large one, that L0's own
 * code and data start cold after every exit.
 *
 *   kvm-nested-floor [ROUND_TRIPS]      (default 20000)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE	(64u << 10)
#define CODE		0x1000u

struct guest {
	int vcpu;
	struct kvm_run *run;
};

static void die(const char *what)
{
	fprintf(stderr, "kvm-nested-floor: %s: %s\n", what, strerror(errno));
	exit(70);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A VM with one vCPU in real mode at CODE, running `out 0x80, al; jmp $-4`,
 * with registers and special registers in sync regs. */
static struct guest make_guest(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vm < 0 || ram == MAP_FAILED)
		die("create VM");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uintptr_t)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");
	static const uint8_t loop[] = { 0xe6, 0x80, 0xeb, 0xfc };
	memcpy(ram + CODE, loop, sizeof(loop));

	struct guest g;
	g.vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (g.vcpu < 0 || size <= 0)
		die("create vCPU");
	g.run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, g.vcpu, 0);
	if (g.run == MAP_FAILED)
		die("mmap kvm_run");
	struct kvm_sregs s;
	if (ioctl(g.vcpu, KVM_GET_SREGS, &s))
		die("KVM_GET_SREGS");
	s.cs.base = 0;
	s.cs.selector = 0;
	struct kvm_regs r = { .rip = CODE, .rflags = 2 };
	if (ioctl(g.vcpu, KVM_SET_SREGS, &s) || ioctl(g.vcpu, KVM_SET_REGS, &r))
		die("set registers");
	g.run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
	return g;
}

static void run(struct guest *g)
{
	while (ioctl(g->vcpu, KVM_RUN, 0) < 0)
		if (errno != EINTR)
			die("KVM_RUN");
	if (g->run->exit_reason != KVM_EXIT_IO) {
		fprintf(stderr, "kvm-nested-floor: exit reason %u\n", g->run->exit_reason);
		exit(84);
	}
}

/* Completes the pending OUT without running the guest. */
static void finish_pending(struct guest *g)
{
	g->run->immediate_exit = 1;
	if (ioctl(g->vcpu, KVM_RUN, 0) == 0 || errno != EINTR)
		die("KVM_RUN with immediate_exit");
	g->run->immediate_exit = 0;
}

/* The working set of the last pass, and a sink its reads go to. */
#define WORKING_SET_MAX	(1u << 20)
static uint8_t *working_set;
static volatile uint64_t sink;

static void read_working_set(size_t bytes)
{
	uint64_t sum = 0;
	for (size_t at = 0; at < bytes; at += 64)
		sum += ((volatile uint8_t *)working_set)[at];
	sink += sum;
}

static int by_value(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static void report(const char *name, uint64_t *v, int n)
{
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += (double)v[i];
	qsort(v, (size_t)n, sizeof(*v), by_value);
	printf("%-10s median %8.0f ns  mean %8.0f ns\n", name, (double)v[n / 2], sum / n);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	if (n <= 0) {
		fprintf(stderr, "usage: kvm-nested-floor [ROUND_TRIPS]\n");
		return 64;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	struct guest l1 = make_guest(kvm), l2 = make_guest(kvm);
	uint64_t *reflect = calloc((size_t)n, sizeof(uint64_t));
	uint64_t *resume = calloc((size_t)n, sizeof(uint64_t));
	uint64_t *trip = calloc((size_t)n, sizeof(uint64_t));
	if (!reflect || !resume || !trip)
		die("calloc");

	run(&l1);		/* both guests stopped at their first OUT */
	run(&l2);
	for (int completing = 0; completing < 2; completing++) {
		for (int i = -100; i < n; i++) {	/* 100 round trips to warm up */
			uint64_t t0 = now_ns();
			run(&l2);
			uint64_t t1 = now_ns();
			if (completing)
				finish_pending(&l2);
			struct kvm_regs saved = l2.run->s.regs.regs;	/* the guest state L0 saves */
			struct kvm_regs host = l1.run->s.regs.regs;	/* and L1's, which it loads */
			host.rip = CODE;
			l1.run->s.regs.regs = host;
			l1.run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
			uint64_t t2 = now_ns();
			run(&l1);
			uint64_t t3 = now_ns();
			l2.run->s.regs.regs = saved;
			l2.run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
			uint64_t t4 = now_ns();
			if (i >= 0) {
				reflect[i] = t2 - t1;
				resume[i] = t4 - t3;
				trip[i] = t4 - t0;
			}
		}
		printf("kvm-nested-floor: %d round trips L2 -> L0 -> L1 -> L0 -> L2, %s\n", n,
		       completing ? "with a completing run (an IN)" : "no completing run (an OUT)");
		report("reflect", reflect, n);
		report("resume", resume, n);
		report("round-trip", trip, n);
	}

	printf("kvm-nested-floor: one call after each of %d exits of L2\n", n);
	static const char *const calls[] = { "KVM_GET_DEBUGREGS", "KVM_GET_REGS", "KVM_SET_REGS",
					     "KVM_GET_VCPU_EVENTS", "getpid" };
	for (int c = 0; c < 5; c++) {
		for (int i = -100; i < n; i++) {
			run(&l2);
			struct kvm_debugregs d;
			struct kvm_regs regs = l2.run->s.regs.regs;
			struct kvm_vcpu_events events;
			uint64_t t0 = now_ns();
			int rc = c == 0 ? ioctl(l2.vcpu, KVM_GET_DEBUGREGS, &d)
				: c == 1 ? ioctl(l2.vcpu, KVM_GET_REGS, &regs)
				: c == 2 ? ioctl(l2.vcpu, KVM_SET_REGS, &regs)
				: c == 3 ? ioctl(l2.vcpu, KVM_GET_VCPU_EVENTS, &events)
				: (int)getpid();
			uint64_t t1 = now_ns();
			if (rc < 0)
				die(calls[c]);
			if (i >= 0)
				reflect[i] = t1 - t0;
		}
		qsort(reflect, (size_t)n, sizeof(*reflect), by_value);
		printf("%-20s median %8llu ns\n", calls[c], (unsigned long long)reflect[n / 2]);
	}

	working_set = malloc(WORKING_SET_MAX);
	if (!working_set)
		die("malloc");
	memset(working_set, 1, WORKING_SET_MAX);
	printf("kvm-nested-floor: a working set read twice after each of %d exits of L2\n", n);
	for (size_t kib = 16; kib <= WORKING_SET_MAX >> 10; kib *= 4) {
		for (int i = -100; i < n; i++) {
			run(&l2);
			uint64_t t0 = now_ns();
			read_working_set(kib << 10);
			uint64_t t1 = now_ns();
			read_working_set(kib << 10);
			uint64_t t2 = now_ns();
			if (i >= 0) {
				reflect[i] = t1 - t0;
				resume[i] = t2 - t1;
			}
		}
		qsort(reflect, (size_t)n, sizeof(*reflect), by_value);
		qsort(resume, (size_t)n, sizeof(*resume), by_value);
		printf("%5zu KiB   after the exit %8llu ns  again %8llu ns  ratio %.2f\n", kib,
		       (unsigned long long)reflect[n / 2], (unsigned long long)resume[n / 2],
		       (double)reflect[n / 2] / (double)(resume[n / 2] ? resume[n / 2] : 1));
	}
	return 0;
}
