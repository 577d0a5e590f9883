/*
 * kvm-legacy-paging - can a guest on this host turn on paging outside
 * IA-32e mode (32-bit paging with 4 MiB pages, SDM Vol. 3A 4.3)?
 *
 * The guest starts in flat 32-bit protected mode with paging off, CR4.PSE
 * set and CR3 at an identity page directory, then sets CR0.PG and reports
 * through an OUT to port 0x10. A host that supports it gives that I/O exit;
 * kvm_pvm gives something else, printed with the guest's RIP.
 *
 *   gcc -O2 -o Bench/build/kvm-legacy-paging Bench/kvm-legacy-paging.c && Bench/build/kvm-legacy-paging
 *
 * Exits 0 when the guest reached the OUT with paging on, 1 when it did
 * not, 2 when the probe itself cannot run.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int main(void)
{
	/* mov eax, cr0; or eax, 0x80000000; mov cr0, eax; out 0x10, al; hlt (32-bit code) */
	static const uint8_t code[] = { 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xe6, 0x10, 0xf4 };
	enum { MEM = 0x400000, PD = 0x2000, CODE = 0x1000 };
	int kvm = open("/dev/kvm", O_RDWR), vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vm < 0 || mem == MAP_FAILED) {
		perror("kvm-legacy-paging: /dev/kvm");
		return 2;
	}
	memcpy(mem + CODE, code, sizeof(code));
	uint32_t *pd = (uint32_t *)(mem + PD);
	for (uint32_t i = 0; i < 1024; i++)
		pd[i] = i << 22 | 0x83;			/* present, writable, 4 MiB */
	struct kvm_userspace_memory_region region = { .slot = 0, .memory_size = MEM, .userspace_addr = (uintptr_t)mem };
	int cpu = ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -1 : ioctl(vm, KVM_CREATE_VCPU, 0);
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = cpu < 0 ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED) {
		perror("kvm-legacy-paging: vCPU");
		return 2;
	}
	struct kvm_sregs s;
	ioctl(cpu, KVM_GET_SREGS, &s);
	struct kvm_segment code32 = { .base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb, .present = 1,
				      .db = 1, .s = 1, .g = 1 };
	struct kvm_segment data32 = code32;
	data32.selector = 0x10;
	data32.type = 0x3;
	s.cs = code32;
	s.ds = s.es = s.fs = s.gs = s.ss = data32;
	s.cr0 = 0x11;					/* PE, ET */
	s.cr3 = PD;
	s.cr4 = 0x10;					/* PSE */
	s.efer = 0;
	if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) {
		perror("kvm-legacy-paging: KVM_SET_SREGS");
		return 2;
	}
	struct kvm_regs regs = { .rip = CODE, .rflags = 2 };
	ioctl(cpu, KVM_SET_REGS, &regs);
	int rc = ioctl(cpu, KVM_RUN, 0);
	ioctl(cpu, KVM_GET_REGS, &regs);
	ioctl(cpu, KVM_GET_SREGS, &s);
	if (rc == 0 && run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10 && (s.cr0 & 0x80000000)) {
		printf("kvm-legacy-paging: 32-bit paging works: OUT at RIP 0x%llx with CR0 0x%llx\n",
		       (unsigned long long)regs.rip, (unsigned long long)s.cr0);
		return 0;
	}
	printf("kvm-legacy-paging: no 32-bit paging: KVM_RUN %d, exit reason %u, RIP 0x%llx, CR0 0x%llx\n", rc,
	       run->exit_reason, (unsigned long long)regs.rip, (unsigned long long)s.cr0);
	return 1;
}
