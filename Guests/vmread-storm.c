/*
 * vmread-storm - N VMREADs in VMX root operation. Each is trapped by L0
 * (an emulation-failure exit on our hosts), emulated and skipped: the cost
 * of one emulated VMX instruction. Then, in the same run and the same VMX
 * set-up, N OUTs to port 0x80 as the PIO exit to compare it with.
 *
 * usage: vmread-storm [N]    (default N=100000)
 */
#include "guest.h"
#include "vmx.h"

#define USAGE	"vmread-storm [N]"

static uint8_t vmxon_region[4096] __attribute__((aligned(4096)));
static uint8_t vmcs[4096] __attribute__((aligned(4096)));

int main(int argc, char **argv)
{
	uint64_t n = 100000, value = 0;

	if (argc > 2 || (argc == 2 && !parse_u64(argv[1], &n)))
		return usage(USAGE);
	trap_init();

	uint32_t revision = (uint32_t)rdmsr(MSR_IA32_VMX_BASIC) & 0x7fffffffu;
	*(uint32_t *)vmxon_region = revision;
	*(uint32_t *)vmcs = revision;
	write_cr0(read_cr0() | CR0_NE);
	write_cr4(read_cr4() | CR4_VMXE);
	report(vmxon((uintptr_t)vmxon_region).outcome == VMX_SUCCEED, "VMXON");
	report(vmclear((uintptr_t)vmcs).outcome == VMX_SUCCEED && vmptrld((uintptr_t)vmcs).outcome == VMX_SUCCEED,
	       "VMCLEAR and VMPTRLD");
	vmwrite(VMCS_GUEST_RIP, 0x1234);

	printf("vmread-storm: %llu VMREADs of GUEST_RIP\n", (unsigned long long)n);
	uint64_t t0 = rdtsc();
	/* The loop matches pio-storm's: one trapped instruction, then the loop step. */
	for (uint64_t i = 0; i < n; i++)
		__asm__ volatile("vmread %1, %0" : "=r"(value) : "r"((uint64_t)VMCS_GUEST_RIP) : "cc");
	uint64_t cycles = rdtsc() - t0;

	printf("vmread-storm: %llu TSC cycles, %llu per exit\n",
	       (unsigned long long)cycles, (unsigned long long)(n ? cycles / n : 0));

	t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++)
		outb(0x80, (uint8_t)i);
	uint64_t pio = rdtsc() - t0;
	printf("vmread-storm: PIO %llu TSC cycles, %llu per PIO exit\n",
	       (unsigned long long)pio, (unsigned long long)(n ? pio / n : 0));
	report(n == 0 || value == 0x1234, "%llu VMREADs; the last returned 0x%llx (written 0x1234)",
	       (unsigned long long)n, (unsigned long long)value);
	vmxoff();
	return report_summary();
}
