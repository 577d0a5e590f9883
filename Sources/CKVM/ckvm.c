#define _GNU_SOURCE
#include "ckvm.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ckvm_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

static void kick_handler(int signo) { (void)signo; }

int ckvm_install_kick_handler(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must come back with EINTR
    return sigaction(signo, &sa, NULL) == 0 ? 0 : -errno;
}

int ckvm_kick_thread(unsigned long thread, int signo) {
    return -pthread_kill((pthread_t)thread, signo);
}

unsigned long ckvm_thread_self(void) { return (unsigned long)pthread_self(); }

/*
 * Stop signals (SIGINT, SIGTERM): the handler records the signal and kicks
 * every watched vCPU (immediate_exit for a kick that lands before KVM_RUN,
 * the kick signal for one inside it); the run loop then ends the run.
 * Everything here is async-signal-safe: plain stores and pthread_kill.
 */
#define CKVM_STOP_TARGETS 4
static volatile sig_atomic_t stop_signal;
static struct kvm_run *volatile stop_runs[CKVM_STOP_TARGETS];
static volatile unsigned long stop_threads[CKVM_STOP_TARGETS];
static volatile int stop_kick_signal;

void ckvm_request_stop(int signo) {
    if (!stop_signal)
        stop_signal = signo;
    for (int i = 0; i < CKVM_STOP_TARGETS; i++) {
        struct kvm_run *run = stop_runs[i];
        if (!run)
            continue;
        run->immediate_exit = 1;
        if (stop_kick_signal)
            pthread_kill((pthread_t)stop_threads[i], stop_kick_signal);
    }
}

static void stop_handler(int signo) { ckvm_request_stop(signo); }

int ckvm_install_stop_handler(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(signo, &sa, NULL) == 0 ? 0 : -errno;
}

int ckvm_ignore_signal(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    return sigaction(signo, &sa, NULL) == 0 ? 0 : -errno;
}

int ckvm_stop_requested(void) { return stop_signal; }

int ckvm_watch_for_stop(struct kvm_run *run, unsigned long thread, int kick_signal) {
    for (int i = 0; i < CKVM_STOP_TARGETS; i++) {
        if (stop_runs[i] == run || !stop_runs[i]) {
            stop_threads[i] = thread;
            stop_kick_signal = kick_signal;
            stop_runs[i] = run;
            return 0;
        }
    }
    return -ENOSPC;
}

void ckvm_unwatch_for_stop(struct kvm_run *run) {
    for (int i = 0; i < CKVM_STOP_TARGETS; i++)
        if (stop_runs[i] == run)
            stop_runs[i] = 0;
}
