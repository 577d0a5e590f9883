/*
 * serial.c - polled output on COM1, a 16550 UART at 0x3f8.
 *
 * The UART is used as left by the monitor/firmware (no baud-rate or line
 * setup), so that only THR writes and LSR reads cause exits. Before each
 * byte, wait for LSR bit 5 (THR empty). Bytes are sent unchanged.
 */
#include "guest.h"

#define COM1		0x3f8
#define UART_THR	0	/* transmit holding register (write) */
#define UART_LSR	5	/* line status register (read) */
#define LSR_THRE	0x20	/* transmit holding register empty */

/* Bounded wait so that a missing UART cannot hang the guest forever. */
#define THRE_POLL_LIMIT	1000000

void serial_putc(char c)
{
	for (unsigned i = 0; i < THRE_POLL_LIMIT; i++) {
		if (inb(COM1 + UART_LSR) & LSR_THRE)
			break;
		pause();
	}
	outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_write(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		serial_putc(s[i]);
}
