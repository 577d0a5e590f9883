/*
 * kvm-pio-loop: the baseline for Terrapin's exit-cost benchmark.
 *
 * The smallest honest KVM monitor that can boot the same guest images as
 * `terrapin run`: it loads a Multiboot ELF with libelf, hands it a command
 * line, enters 32-bit protected mode and runs a bare KVM_RUN loop that
 * answers port I/O (COM1 output, isa-debug-exit, everything else ignored).
 * No traces, no devices, no sync regs: this is the floor the Swift monitor
 * is compared with.
 *
 *   kvm-pio-loop IMAGE [ARGS...]
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define RAM_SIZE	(256u << 20)
#define MBI_ADDR	0x9000u		/* below 640 KiB, clear of the image at 1 MiB */

static void die(const char *what)
{
	fprintf(stderr, "kvm-pio-loop: %s: %s\n", what, strerror(errno));
	exit(70);
}

static void load_elf(const char *path, uint8_t *ram, uint64_t *entry)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	GElf_Ehdr eh;
	size_t n;
	if (!elf || !gelf_getehdr(elf, &eh) || elf_getphdrnum(elf, &n))
		die("not an ELF file");
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (ph.p_paddr + ph.p_memsz > RAM_SIZE)
			die("segment outside RAM");
		if (pread(fd, ram + ph.p_paddr, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz)
			die("read segment");
		memset(ram + ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
	}
	*entry = eh.e_entry;
	elf_end(elf);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: kvm-pio-loop IMAGE [ARGS...]\n");
		return 64;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vm < 0 || ram == MAP_FAILED)
		die("create VM");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uintptr_t)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");

	uint64_t entry;
	load_elf(argv[1], ram, &entry);

	/* Multiboot info: flags bit 2, a command line "image-name args". */
	char *cmdline = (char *)ram + MBI_ADDR + 0x100;
	const char *name = strrchr(argv[1], '/');
	snprintf(cmdline, 0xf00, "%s", name ? name + 1 : argv[1]);
	for (int i = 2; i < argc; i++) {
		strncat(cmdline, " ", 0xf00 - strlen(cmdline) - 1);
		strncat(cmdline, argv[i], 0xf00 - strlen(cmdline) - 1);
	}
	uint32_t *mbi = (uint32_t *)(ram + MBI_ADDR);
	mbi[0] = 1u << 2;
	mbi[4] = MBI_ADDR + 0x100;

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (vcpu < 0 || run == MAP_FAILED)
		die("create vCPU");

	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = 256;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) || ioctl(vcpu, KVM_SET_CPUID2, cpuid))
		die("CPUID");

	/* Multiboot 3.2: flat 32-bit protected mode, EAX magic, EBX info. */
	struct kvm_sregs s;
	if (ioctl(vcpu, KVM_GET_SREGS, &s))
		die("KVM_GET_SREGS");
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
		.present = 1, .db = 1, .s = 1, .g = 1,
	};
	struct kvm_segment data = code;
	data.selector = 0x18;
	data.type = 0x3;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.cr0 = 0x11;
	s.cr4 = 0;
	s.efer = 0;
	struct kvm_regs r = { .rip = entry, .rax = 0x2badb002, .rbx = MBI_ADDR, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_SREGS, &s) || ioctl(vcpu, KVM_SET_REGS, &r))
		die("set registers");

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			die("KVM_RUN");
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *p = (uint8_t *)run + run->io.data_offset;
			if (run->io.direction == KVM_EXIT_IO_OUT) {
				if (run->io.port == 0x3f8)
					fputc(p[0], stdout);
				else if (run->io.port == 0xf4) {
					fflush(stdout);
					return (int)((p[0] << 1) | 1);
				}
			} else {
				memset(p, 0xff, run->io.size * run->io.count);
				if (run->io.port == 0x3fd)
					p[0] = 0x60;	/* LSR: transmitter empty */
			}
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			break;
		default:
			fprintf(stderr, "kvm-pio-loop: exit reason %u\n", run->exit_reason);
			return 84;
		}
	}
}
