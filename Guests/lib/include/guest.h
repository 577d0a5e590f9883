/*
 * guest.h - the whole guest runtime API. Guests include only this file
 * and define int main(int argc, char **argv).
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "x86.h"
#include "multiboot.h"
#include "idt.h"
#include "apic.h"

typedef __builtin_va_list va_list;
#define va_start(ap, last)	__builtin_va_start(ap, last)
#define va_arg(ap, type)	__builtin_va_arg(ap, type)
#define va_end(ap)		__builtin_va_end(ap)

/* Exit values (the monitor's process status is (value << 1) | 1). */
#define EXIT_PASS	0	/* all tests passed */
#define EXIT_FAIL	1	/* a test failed */
#define EXIT_USAGE	2	/* bad arguments */
#define EXIT_PANIC	3	/* unexpected exception or panic */

int main(int argc, char **argv);

/* exit.c: write value to the isa-debug-exit port 0xf4, then halt forever. */
__attribute__((noreturn)) void exit(int value);

/* serial.c: COM1, bytes are sent unchanged (no "\n" -> "\r\n"). */
void serial_putc(char c);
void serial_write(const char *s, size_t len);

/* printf.c: %d %i %u %x %X %p %s %c %%, l/ll/z, width, '0', '-'. */
__attribute__((format(printf, 1, 2))) int printf(const char *fmt, ...);
int vprintf(const char *fmt, va_list ap);

/*
 * report.c: the work-report port. A guest tells the monitor how many units
 * of work (its loop count) it did, and Terrapin records the number as the
 * trace's `iterations` metadata, which `terrapin-trace compare` divides by
 * (Traces/README.md, "Keys patched during the run"). A 32-bit OUT to
 * WORK_REPORT_HIGH latches bits 63:32; a 32-bit OUT to WORK_REPORT_PORT
 * gives bits 31:0 and commits the value. Call it at CPL 0, once the work is
 * done; a later report replaces an earlier one.
 */
#define WORK_REPORT_PORT	0x5a0
#define WORK_REPORT_HIGH	0x5a4
void report_iterations(uint64_t n);

/* report.c: kvm-unit-tests style results. */
__attribute__((format(printf, 2, 3))) void report(bool ok, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) void report_xfail(bool xfail, bool ok, const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void report_skip(const char *fmt, ...);
int report_summary(void);		/* returns EXIT_PASS or EXIT_FAIL */
__attribute__((format(printf, 1, 2))) int usage(const char *fmt, ...); /* returns EXIT_USAGE */
__attribute__((noreturn, format(printf, 1, 2))) void panic(const char *fmt, ...);

/* string.c */
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strrchr(const char *s, int c);
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* Decimal or 0x-hex; returns 1 and sets *out on success, 0 on failure. */
int parse_u64(const char *s, uint64_t *out);
/* If arg is "key=value" return value, else NULL. */
const char *arg_value(const char *arg, const char *key);
/* Last path component of s with a trailing ".elf" removed (static buffer). */
const char *prog_basename(const char *s);

#endif
