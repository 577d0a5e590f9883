// The only C in Terrapin: linux/kvm.h request numbers as constants (Swift
// cannot import the _IOW/_IOR macros) and thin wrappers for the variadic
// ioctl(2) and for the anonymous unions of struct kvm_run.
#pragma once
#include <linux/kvm.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// --- request numbers (linux/kvm.h) -------------------------------------------
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_ENABLE_CAP = KVM_ENABLE_CAP;
static const unsigned long CKVM_X86_SET_MSR_FILTER = KVM_X86_SET_MSR_FILTER;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_SET_GUEST_DEBUG = KVM_SET_GUEST_DEBUG;
static const unsigned long CKVM_INTERRUPT = KVM_INTERRUPT;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;

// --- ioctl(2) is variadic; Swift needs fixed signatures ----------------------
static inline int ckvm_ioctl(int fd, unsigned long request) { return ioctl(fd, request, 0); }
static inline int ckvm_ioctl_arg(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }
static inline int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
/* The calling thread's Linux thread id (gettid(2)), which host tracers print:
 * Swift cannot call the variadic syscall(2) itself. */
static inline int32_t ckvm_gettid(void) { return (int32_t)syscall(SYS_gettid); }

// --- process helpers Swift's Glibc module does not export ---------------------
int ckvm_memfd_create(const char *name, unsigned int flags);
// Installs a handler for `signo` that does nothing and is not SA_RESTART, so a
// signal aimed at a vCPU thread makes KVM_RUN return EINTR. Returns 0 or -errno.
int ckvm_install_kick_handler(int signo);
int ckvm_kick_thread(unsigned long thread, int signo);
unsigned long ckvm_thread_self(void);
// Stop signals: the handler records the first signal and kicks every watched
// vCPU (immediate_exit and the kick signal). SIGPIPE is ignored instead, so a
// write to a closed pipe fails with EPIPE. Each returns 0 or -errno.
int ckvm_install_stop_handler(int signo);
int ckvm_ignore_signal(int signo);
void ckvm_request_stop(int signo);
int ckvm_stop_requested(void);
int ckvm_watch_for_stop(struct kvm_run *run, unsigned long thread, int kick_signal);
void ckvm_unwatch_for_stop(struct kvm_run *run);

// --- struct kvm_run: exit payloads live in anonymous unions --------------------
static inline uint32_t ckvm_run_exit_reason(const struct kvm_run *r) { return r->exit_reason; }
static inline uint8_t ckvm_io_direction(const struct kvm_run *r) { return r->io.direction; }
static inline uint8_t ckvm_io_size(const struct kvm_run *r) { return r->io.size; }
static inline uint16_t ckvm_io_port(const struct kvm_run *r) { return r->io.port; }
static inline uint32_t ckvm_io_count(const struct kvm_run *r) { return r->io.count; }
static inline uint64_t ckvm_io_data_offset(const struct kvm_run *r) { return r->io.data_offset; }
static inline uint64_t ckvm_mmio_phys_addr(const struct kvm_run *r) { return r->mmio.phys_addr; }
static inline uint32_t ckvm_mmio_len(const struct kvm_run *r) { return r->mmio.len; }
static inline uint8_t ckvm_mmio_is_write(const struct kvm_run *r) { return r->mmio.is_write; }
static inline uint8_t *ckvm_mmio_data(struct kvm_run *r) { return r->mmio.data; }
static inline uint32_t ckvm_msr_index(const struct kvm_run *r) { return r->msr.index; }
static inline uint32_t ckvm_msr_reason(const struct kvm_run *r) { return r->msr.reason; }
static inline uint64_t ckvm_msr_data(const struct kvm_run *r) { return r->msr.data; }
static inline void ckvm_msr_reply(struct kvm_run *r, uint64_t data, uint8_t error) { r->msr.data = data; r->msr.error = error; }
static inline struct kvm_debug_exit_arch ckvm_debug_arch(const struct kvm_run *r) { return r->debug.arch; }
static inline uint32_t ckvm_internal_suberror(const struct kvm_run *r) { return r->internal.suberror; }
static inline uint32_t ckvm_internal_ndata(const struct kvm_run *r) { return r->internal.ndata; }
static inline uint64_t ckvm_internal_data(const struct kvm_run *r, unsigned i) { return i < 16 ? r->internal.data[i] : 0; }
static inline uint64_t ckvm_emulation_flags(const struct kvm_run *r) { return r->emulation_failure.flags; }
static inline uint8_t ckvm_emulation_insn_size(const struct kvm_run *r) { return r->emulation_failure.insn_size; }
static inline const uint8_t *ckvm_emulation_insn_bytes(const struct kvm_run *r) { return r->emulation_failure.insn_bytes; }
static inline uint64_t ckvm_fail_entry_reason(const struct kvm_run *r) { return r->fail_entry.hardware_entry_failure_reason; }
static inline uint32_t ckvm_fail_entry_cpu(const struct kvm_run *r) { return r->fail_entry.cpu; }
static inline uint32_t ckvm_system_event_type(const struct kvm_run *r) { return r->system_event.type; }
static inline uint32_t ckvm_ex_exception(const struct kvm_run *r) { return r->ex.exception; }
static inline uint32_t ckvm_ex_error_code(const struct kvm_run *r) { return r->ex.error_code; }
static inline struct kvm_sync_regs *ckvm_sync_regs(struct kvm_run *r) { return &r->s.regs; }

// --- KVM_X86_SET_MSR_FILTER ---------------------------------------------------
// Builds a filter that allows every MSR except the `count` ranges
// [bases[i], bases[i] + counts[i]), whose reads and writes exit to userspace
// (KVM_MSR_EXIT_REASON_FILTER): each range gets an all-zero (deny) bitmap.
// At most KVM_MSR_FILTER_MAX_RANGES ranges of at most 2048 MSRs each; KVM
// copies the bitmaps during the call. Returns 0, or -1 with errno set.
static inline int ckvm_set_msr_deny_ranges(int vm_fd, const uint32_t *bases, const uint32_t *counts, unsigned count) {
    static const uint8_t deny_all[256];
    struct kvm_msr_filter filter = {0};
    if (count > KVM_MSR_FILTER_MAX_RANGES) return -1;
    filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
    for (unsigned i = 0; i < count; i++) {
        if (counts[i] == 0 || counts[i] > 8 * sizeof deny_all) return -1;
        filter.ranges[i].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
        filter.ranges[i].nmsrs = counts[i];
        filter.ranges[i].base = bases[i];
        filter.ranges[i].bitmap = (uint8_t *)deny_all;
    }
    return ioctl(vm_fd, KVM_X86_SET_MSR_FILTER, &filter);
}

// A general filter: `default_allow` for MSRs outside every range; range i
// covers [bases[i], bases[i] + counts[i]) for reads (flags bit 0) and/or
// writes (bit 1), with bitmap bytes at bitmaps + offsets[i] (1 = allow).
static inline int ckvm_set_msr_filter(int vm_fd, int default_allow, const uint32_t *bases, const uint32_t *counts,
                                      const uint32_t *flags, const uint8_t *bitmaps, const uint32_t *offsets, unsigned count) {
    struct kvm_msr_filter filter = {0};
    if (count > KVM_MSR_FILTER_MAX_RANGES) return -1;
    filter.flags = default_allow ? KVM_MSR_FILTER_DEFAULT_ALLOW : KVM_MSR_FILTER_DEFAULT_DENY;
    for (unsigned i = 0; i < count; i++) {
        filter.ranges[i].flags = flags[i];
        filter.ranges[i].nmsrs = counts[i];
        filter.ranges[i].base = bases[i];
        filter.ranges[i].bitmap = (uint8_t *)bitmaps + offsets[i];
    }
    return ioctl(vm_fd, KVM_X86_SET_MSR_FILTER, &filter);
}

enum {
    CKVM_MSR_FILTER_MAX_RANGES = KVM_MSR_FILTER_MAX_RANGES,
    CKVM_MSR_EXIT_REASON_INVAL = KVM_MSR_EXIT_REASON_INVAL,
    CKVM_MSR_EXIT_REASON_UNKNOWN = KVM_MSR_EXIT_REASON_UNKNOWN,
    CKVM_MSR_EXIT_REASON_FILTER = KVM_MSR_EXIT_REASON_FILTER,
};
