/*
 * trace-csv-printf: the baseline for `terrapin-trace export --format csv`.
 *
 * The naive C way to turn a Terrapin trace into CSV: map the file, then one
 * printf per record with the same columns (Traces/README.md, "export"),
 * names from small tables. It checks only what it needs (magic, version,
 * record size, header size) and is meant for timing, not for users.
 *
 *   trace-csv-printf TRACE > out.csv
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kinds[] = {
	"kind-0", "io-in", "io-out", "mmio-read", "mmio-write", "hlt", "shutdown", "rdmsr", "wrmsr", "debug",
	"internal-error", "interrupted", "irq-window", "fail-entry", "system-event", "interrupt-injected",
	"unknown-exit", "stopped", "kernel-exit",
};
static const char *flag_names[] = { "unclaimed", "string", "faulted", "ept02-fault", "patched-site" };

/* The Linux-style names of Sources/VMXArch/VMXExitReason.swift, by code. */
static const char *vmx_names[80] = {
	"EXCEPTION_NMI", "EXTERNAL_INTERRUPT", "TRIPLE_FAULT", "INIT_SIGNAL", "SIPI_SIGNAL", "IO_SMI",
	"OTHER_SMI", "INTERRUPT_WINDOW", "NMI_WINDOW", "TASK_SWITCH", "CPUID", "GETSEC",
	"HLT", "INVD", "INVLPG", "RDPMC", "RDTSC", "RSM",
	"VMCALL", "VMCLEAR", "VMLAUNCH", "VMPTRLD", "VMPTRST", "VMREAD",
	"VMRESUME", "VMWRITE", "VMXOFF", "VMXON", "CR_ACCESS", "DR_ACCESS",
	"IO_INSTRUCTION", "MSR_READ", "MSR_WRITE", "INVALID_STATE", "MSR_LOAD_FAIL", NULL,
	"MWAIT_INSTRUCTION", "MONITOR_TRAP_FLAG", NULL, "MONITOR_INSTRUCTION", "PAUSE_INSTRUCTION", "MCE_DURING_VMENTRY",
	NULL, "TPR_BELOW_THRESHOLD", "APIC_ACCESS", "EOI_INDUCED", "GDTR_IDTR", "LDTR_TR",
	"EPT_VIOLATION", "EPT_MISCONFIG", "INVEPT", "RDTSCP", "PREEMPTION_TIMER", "INVVPID",
	"WBINVD", "XSETBV", "APIC_WRITE", "RDRAND", "INVPCID", "VMFUNC",
	"ENCLS", "RDSEED", "PML_FULL", "XSAVES", "XRSTORS", "PCONFIG",
	"SPP", "UMWAIT", "TPAUSE", "LOADIWKEY", "ENCLV", NULL,
	"ENQCMD_PASID", "ENQCMDS_PASID", "BUS_LOCK", "NOTIFY", "SEAMCALL", "TDCALL",
	"RDMSRLIST", "WRMSRLIST",
};

static const char *vmx_name(uint32_t code, char *buf)
{
	if (code < 80 && vmx_names[code])
		return vmx_names[code];
	sprintf(buf, "VMX_REASON_%u", code);
	return buf;
}

static void flags_text(uint8_t f, char *out)
{
	out[0] = 0;
	for (int bit = 0; bit < 8; bit++) {
		if (!(f & (1 << bit)))
			continue;
		if (out[0])
			strcat(out, "+");
		if (bit < 5)
			strcat(out, flag_names[bit]);
		else
			sprintf(out + strlen(out), "bit%d", bit);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: trace-csv-printf TRACE\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 40) {
		perror(argv[1]);
		return 1;
	}
	const uint8_t *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	uint16_t version, recsize;
	uint32_t hsize;
	memcpy(&version, m + 8, 2);
	memcpy(&recsize, m + 10, 2);
	memcpy(&hsize, m + 12, 4);
	if (memcmp(m, "TRPNTRAC", 8) != 0 || version != 1 || recsize != 64 || hsize == 0 || hsize > st.st_size) {
		fprintf(stderr, "%s: not a version-1 Terrapin trace\n", argv[1]);
		return 1;
	}
	size_t count = (st.st_size - hsize) / 64;
	printf("record,timestamp_ns,duration_ns,level,vcpu,kind,kind_code,vmx_reason,reason,handler,episode,"
	       "rip,address,value,size,flags\n");
	char vmx[16], reason_buf[32], flags[96], kind_buf[16], handler_buf[16];
	for (size_t i = 0; i < count; i++) {
		const uint8_t *r = m + hsize + i * 64;
		uint64_t ts, rip, addr, value, episode;
		uint32_t dur, vmx_reason;
		uint16_t vcpu;
		memcpy(&ts, r, 8);
		memcpy(&dur, r + 8, 4);
		memcpy(&vcpu, r + 14, 2);
		memcpy(&rip, r + 16, 8);
		memcpy(&addr, r + 24, 8);
		memcpy(&value, r + 32, 8);
		memcpy(&episode, r + 40, 8);
		memcpy(&vmx_reason, r + 48, 4);
		uint8_t level = r[12], kind = r[13], handler = r[52], size = r[53];
		const char *kname = kind < 19 && kind > 0 ? kinds[kind] : (sprintf(kind_buf, "kind-%u", kind), kind_buf);
		const char *reason = kname;
		vmx[0] = 0;
		if (vmx_reason != 0xFFFFFFFFu) {
			sprintf(vmx, "%u", vmx_reason);
			reason = vmx_name(vmx_reason, reason_buf);
		}
		flags_text(r[54], flags);
		printf("%zu,%" PRIu64 ",%u,%u,%u,%s,%u,%s,%s,%s,%" PRIu64 ",0x%" PRIx64 ",0x%" PRIx64 ",0x%" PRIx64 ",%u,%s\n",
		       i, ts, dur, level, vcpu, kname, kind, vmx, reason,
		       handler == 0 ? "l0" : handler == 1 ? "reflected" : handler == 2 ? "kernel" : (sprintf(handler_buf, "handler-%u", handler), handler_buf),
		       episode, rip, addr, value, size, flags);
	}
	return 0;
}
