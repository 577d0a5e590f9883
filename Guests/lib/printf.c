/*
 * printf.c - a small printf to the serial port.
 * Conversions: %d %i %u %x %X %p %s %c %%; length l, ll, z;
 * flags '-' (left-justify) and '0' (zero-pad); a decimal field width.
 */
#include "guest.h"

struct spec {
	bool left;
	bool zero;
	int width;
};

static int pad(int n, char c)
{
	for (int i = 0; i < n; i++)
		serial_putc(c);
	return n > 0 ? n : 0;
}

static int put_str(const char *s, const struct spec *sp)
{
	int len = (int)strlen(s);
	int fill = sp->width - len;
	int n = 0;

	if (!sp->left)
		n += pad(fill, ' ');
	serial_write(s, len);
	n += len;
	if (sp->left)
		n += pad(fill, ' ');
	return n;
}

static int put_num(uint64_t v, bool neg, unsigned base, bool upper,
		   const struct spec *sp)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char buf[24];
	int len = 0, n = 0;

	do {
		buf[len++] = digits[v % base];
		v /= base;
	} while (v);

	int fill = sp->width - len - (neg ? 1 : 0);

	if (!sp->left && !sp->zero)
		n += pad(fill, ' ');
	if (neg) {
		serial_putc('-');
		n++;
	}
	if (!sp->left && sp->zero)
		n += pad(fill, '0');
	for (int i = len - 1; i >= 0; i--)
		serial_putc(buf[i]);
	n += len;
	if (sp->left)
		n += pad(fill, ' ');
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	int n = 0;

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			serial_putc(*fmt);
			n++;
			continue;
		}

		struct spec sp = { false, false, 0 };
		int lng = 0;		/* 0: int, 1: long/size_t, 2: long long */

		for (fmt++;; fmt++) {
			if (*fmt == '-')
				sp.left = true;
			else if (*fmt == '0')
				sp.zero = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			sp.width = sp.width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng = *fmt == 'z' ? 1 : lng + 1;
			fmt++;
		}

		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, long long) : va_arg(ap, int);
			uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
			n += put_num(mag, v < 0, 10, false, &sp);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, unsigned long long)
					 : va_arg(ap, unsigned int);
			unsigned base = *fmt == 'u' ? 10 : 16;
			n += put_num(v, false, base, *fmt == 'X', &sp);
			break;
		}
		case 'p': {
			struct spec ps = { false, true, 16 };
			serial_write("0x", 2);
			n += 2 + put_num((uintptr_t)va_arg(ap, void *), false,
					 16, false, &ps);
			break;
		}
		case 's': {
			const char *s = va_arg(ap, const char *);
			n += put_str(s ? s : "(null)", &sp);
			break;
		}
		case 'c':
			serial_putc((char)va_arg(ap, int));
			n++;
			break;
		case '%':
			serial_putc('%');
			n++;
			break;
		case '\0':
			return n;
		default:	/* unknown: print it verbatim */
			serial_putc('%');
			serial_putc(*fmt);
			n += 2;
			break;
		}
	}
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}
