/*
 * kvm-tsc-offset - does this host's KVM apply a vCPU's TSC offset?
 *
 * A tiny real-mode guest executes RDTSC and reports EDX:EAX through two
 * OUTs to port 0x10, then halts. Before it runs, the vCPU's offset is set
 * to 10^15 cycles through the KVM_VCPU_TSC_CTRL / KVM_VCPU_TSC_OFFSET
 * device attribute (Linux 5.16+). If KVM applied it, the guest's TSC would
 * read about 10^15 above the host's.
 *
 *   gcc -O2 -o Bench/build/kvm-tsc-offset Bench/kvm-tsc-offset.c && Bench/build/kvm-tsc-offset
 *
 * Exits 0 when the offset shows in the guest, 1 when it does not, 2 when the
 * test itself cannot run.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define OFFSET 1000000000000000ull

static uint64_t host_tsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

int main(void)
{
	/* rdtsc; out 0x10, eax; mov eax, edx; out 0x10, eax; hlt (16-bit code) */
	static const uint8_t code[] = { 0x0f, 0x31, 0x66, 0xe7, 0x10, 0x66, 0x89, 0xd0, 0x66, 0xe7, 0x10, 0xf4 };
	int kvm = open("/dev/kvm", O_RDWR), vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	uint8_t *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vm < 0 || mem == MAP_FAILED) {
		perror("kvm-tsc-offset: /dev/kvm");
		return 2;
	}
	memcpy(mem + 0x1000, code, sizeof(code));
	struct kvm_userspace_memory_region region = { .slot = 0, .memory_size = 0x10000, .userspace_addr = (uintptr_t)mem };
	int cpu = ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = cpu < 0 ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED) {
		perror("kvm-tsc-offset: vCPU");
		return 2;
	}
	struct kvm_sregs sregs;
	ioctl(cpu, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	ioctl(cpu, KVM_SET_SREGS, &sregs);
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	ioctl(cpu, KVM_SET_REGS, &regs);

	uint64_t offset = OFFSET;
	struct kvm_device_attr attr = { .group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET, .addr = (uintptr_t)&offset };
	if (ioctl(cpu, KVM_HAS_DEVICE_ATTR, &attr) < 0 || ioctl(cpu, KVM_SET_DEVICE_ATTR, &attr) < 0) {
		perror("kvm-tsc-offset: KVM_VCPU_TSC_OFFSET");
		return 2;
	}
	uint32_t half[2] = { 0, 0 };
	for (int outs = 0; outs < 2;) {
		if (ioctl(cpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) {
			fprintf(stderr, "kvm-tsc-offset: unexpected exit %u\n", run->exit_reason);
			return 2;
		}
		memcpy(&half[outs++], (uint8_t *)run + run->io.data_offset, 4);
	}
	uint64_t guest = (uint64_t)half[1] << 32 | half[0], host = host_tsc();
	int64_t diff = (int64_t)(guest - host);
	printf("offset set: %llu; guest TSC - host TSC: %lld\n", OFFSET, (long long)diff);
	bool applied = diff > (int64_t)(OFFSET / 2);
	printf("the offset %s\n", applied ? "is applied" : "is NOT applied: the guest reads the host's TSC");
	return applied ? 0 : 1;
}
