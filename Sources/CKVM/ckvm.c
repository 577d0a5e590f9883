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
