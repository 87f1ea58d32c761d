/*
 * A stand-in "kernel" that prints a ready line on the 16550 at 0x3f8 and
 * then halts for good (interrupts off): something to snapshot on its
 * ready line and restore without the real guest kernel
 * (tests/seccomp.rs, the standby's restore).
 *
 * Build: gcc -static -nostdlib -no-pie -Wl,-Ttext=0x200000 -o idle_kernel idle_kernel.S
 */
	.text
	.globl _start
	.code64
_start:
	lea msg(%rip), %rsi
	mov $msg_len, %ecx
	mov $0x3f8, %dx
1:	lodsb
	outb %al, %dx
	loop 1b
	cli
2:	hlt
	jmp 2b

msg:	.ascii "BERTH-IDLE-READY\n"
	msg_len = . - msg
