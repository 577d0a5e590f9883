#!/bin/sh
# qemu-check.sh - boot every guest under QEMU (TCG) and check its exit
# status. isa-debug-exit makes QEMU exit with (value << 1) | 1, so a guest
# returning 0 gives status 1 and a usage error (2) gives status 5.
# Storm sizes are small because TCG is slow. Run from Guests/ (make qemu-check).
set -u
QEMU=${QEMU:-qemu-system-x86_64}
BUILD=${BUILD:-build}
LOG=$BUILD/qemu-check.log
fails=0

run() {	# run EXPECTED_STATUS GUEST [ARGS...]
	want=$1 guest=$2
	shift 2
	timeout 120 "$QEMU" -M pc -m 128 -display none -serial stdio \
		-monitor none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "$BUILD/$guest.elf" -append "$*" </dev/null >"$LOG" 2>&1
	got=$?
	if [ "$got" -eq "$want" ]; then
		echo "ok   $guest $* (status $got)"
	else
		echo "FAIL $guest $* (status $got, expected $want)"
		sed 's/^/     | /' "$LOG"
		fails=$((fails + 1))
	fi
}

run 1 hello one two
run 1 pio-storm 2000
run 1 pio-storm 2000 port=0x84
run 5 pio-storm port=0xf4
# QEMU answers reads of unassigned memory with 0, the monitor with ~0.
run 1 mmio-storm 2000 expect=0
run 1 mmio-storm 100 addr=0xd0001000 expect=any
run 5 mmio-storm addr=0x200000
run 1 msr-storm 2000
run 1 hlt-storm 500
run 1 compute
run 1 compute 3
run 5 compute x

rm -f "$LOG"
[ "$fails" -eq 0 ] && echo "qemu-check: all passed" || echo "qemu-check: $fails failed"
exit $((fails != 0))
