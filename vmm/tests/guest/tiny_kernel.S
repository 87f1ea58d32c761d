/*
 * A stand-in "kernel" for berth-vmm's fast smoke test: entered in 64-bit
 * mode like Linux (identity-mapped, RSI = zero page), it prints a line on
 * the 16550 at 0x3f8, checks the zero page magic, and resets through the
 * i8042 (port 0x64, 0xFE). Boots in milliseconds even where the real guest
 * kernel takes seconds.
 *
 * Build: gcc -static -nostdlib -no-pie -Wl,-Ttext=0x200000 -o tiny_kernel tiny_kernel.S
 */
	.text
	.globl _start
	.code64
_start:
	/* boot_params.hdr.header at 0x202 must be "HdrS" */
	cmpl $0x53726448, 0x202(%rsi)
	jne bad
	lea msg(%rip), %rsi
	mov $msg_len, %ecx
	jmp print
bad:
	lea badmsg(%rip), %rsi
	mov $badmsg_len, %ecx
print:
	mov $0x3f8, %dx
1:	lodsb
	outb %al, %dx
	loop 1b
	mov $0xfe, %al
	outb %al, $0x64
2:	hlt
	jmp 2b

msg:	.ascii "BERTH-TINY-KERNEL-OK\n"
	msg_len = . - msg
badmsg:	.ascii "BERTH-TINY-KERNEL-BAD-ZERO-PAGE\n"
	badmsg_len = . - badmsg
