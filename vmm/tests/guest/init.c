/*
 * /init for berth-vmm's integration tests: one static binary, no libc
 * (raw syscalls keep the initramfs ~10 KB; unpacking costs ~1 s per MB on
 * kvm_pvm hosts). The mode comes from the kernel command line as the
 * environment variable bt_mode=<mode>:
 *
 *   boot           print BERTH-VMM-BOOT-OK
 *   vsock_listen   listen on vsock port 1024, echo one connection until EOF
 *   vsock_connect  connect to host (CID 2) port 5000, send a line, print the reply
 *   blk            write a pattern to /dev/vda, fsync, print what the host put at 1 MiB
 *   rng            read 32 bytes from /dev/hwrng and print them in hex
 *   smp            print /sys/devices/system/cpu/online
 *   net_http:PORT  give eth0 192.168.127.2/24, fetch http://192.168.127.254:PORT/
 *                  (the host's 127.0.0.1 through berth-vmm --net user) and
 *                  print the status line and the body
 *
 * Every mode ends with "BERTH-VMM-DONE <result>" and reboot(2); with
 * `reboot=k` the VMM sees the i8042 reset and exits.
 *
 * Build: gcc -static -nostdlib -ffreestanding -Os -fno-stack-protector -o init init.c
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_lseek 8
#define SYS_socket 41
#define SYS_connect 42
#define SYS_accept 43
#define SYS_shutdown 48
#define SYS_bind 49
#define SYS_listen 50
#define SYS_ioctl 16
#define SYS_fsync 74
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_reboot 169

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static long sc(long n, long a, long b, long c, long d, long e)
{
	long r;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return r;
}

static u64 slen(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

static int starts(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static void out(const char *s) { sc(SYS_write, 1, (long)s, slen(s), 0, 0); }

static void out_num(long v)
{
	char b[24];
	int i = 23;
	int neg = v < 0;
	b[i] = 0;
	if (neg)
		v = -v;
	do {
		b[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	if (neg)
		b[--i] = '-';
	out(b + i);
}

static int write_all(int fd, const u8 *p, long n)
{
	while (n > 0) {
		long w = sc(SYS_write, fd, (long)p, n, 0, 0);
		if (w <= 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

static __attribute__((noreturn)) void finish(const char *result)
{
	out("BERTH-VMM-DONE ");
	out(result);
	out("\n");
	/* LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_RESTART */
	sc(SYS_reboot, 0xfee1dead, 672274793, 0x01234567, 0, 0);
	for (;;)
		;
}

struct sockaddr_vm {
	u16 family;
	u16 reserved1;
	u32 port;
	u32 cid;
	u8 flags;
	u8 zero[3];
};
#define AF_VSOCK 40
#define SOCK_STREAM 1

static u8 buf[64 * 1024];

static void vsock_listen(void)
{
	struct sockaddr_vm a = { AF_VSOCK, 0, 1024, (u32)-1 /* VMADDR_CID_ANY */, 0, { 0 } };
	int s = sc(SYS_socket, AF_VSOCK, SOCK_STREAM, 0, 0, 0);
	if (s < 0 || sc(SYS_bind, s, (long)&a, sizeof(a), 0, 0) < 0 || sc(SYS_listen, s, 4, 0, 0, 0) < 0)
		finish("FAIL listen");
	out("BERTH-VMM-LISTENING 1024\n");
	int c = sc(SYS_accept, s, 0, 0, 0, 0);
	if (c < 0)
		finish("FAIL accept");
	long total = 0;
	for (;;) {
		long n = sc(SYS_read, c, (long)buf, sizeof(buf), 0, 0);
		if (n < 0)
			finish("FAIL read");
		if (n == 0)
			break;
		if (write_all(c, buf, n) < 0)
			finish("FAIL write");
		total += n;
	}
	sc(SYS_close, c, 0, 0, 0, 0);
	out("BERTH-VMM-ECHOED ");
	out_num(total);
	out("\n");
	finish("OK");
}

static void vsock_connect(void)
{
	struct sockaddr_vm a = { AF_VSOCK, 0, 5000, 2 /* host */, 0, { 0 } };
	int s = sc(SYS_socket, AF_VSOCK, SOCK_STREAM, 0, 0, 0);
	if (s < 0 || sc(SYS_connect, s, (long)&a, sizeof(a), 0, 0) < 0)
		finish("FAIL connect");
	const char *msg = "hello from the guest\n";
	if (write_all(s, (const u8 *)msg, slen(msg)) < 0)
		finish("FAIL write");
	long got = 0;
	while (got < (long)sizeof(buf) - 1) {
		long n = sc(SYS_read, s, (long)buf + got, sizeof(buf) - 1 - got, 0, 0);
		if (n <= 0)
			break;
		got += n;
		if (buf[got - 1] == '\n')
			break;
	}
	buf[got] = 0;
	out("BERTH-VMM-REPLY ");
	out((const char *)buf);
	sc(SYS_close, s, 0, 0, 0, 0);
	finish("OK");
}

static void blk(void)
{
	int fd = sc(SYS_open, (long)"/dev/vda", 2 /* O_RDWR */, 0, 0, 0);
	if (fd < 0)
		finish("FAIL open /dev/vda");
	for (u32 i = 0; i < sizeof(buf); i++)
		buf[i] = (u8)(i * 31 + 7);
	if (write_all(fd, buf, sizeof(buf)) < 0)
		finish("FAIL write");
	if (sc(SYS_fsync, fd, 0, 0, 0, 0) < 0)
		finish("FAIL fsync");
	if (sc(SYS_lseek, fd, 1 << 20, 0, 0, 0) < 0)
		finish("FAIL seek");
	long n = sc(SYS_read, fd, (long)buf, 512, 0, 0);
	if (n != 512)
		finish("FAIL read");
	buf[64] = 0;
	out("BERTH-VMM-HOSTDATA ");
	out((const char *)buf);
	out("\n");
	finish("OK");
}

static void rng(void)
{
	int fd = sc(SYS_open, (long)"/dev/hwrng", 0, 0, 0, 0);
	if (fd < 0)
		finish("FAIL open /dev/hwrng");
	long n = sc(SYS_read, fd, (long)buf, 32, 0, 0);
	if (n != 32)
		finish("FAIL read");
	char hex[65];
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = "0123456789abcdef"[buf[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[buf[i] & 15];
	}
	hex[64] = 0;
	out("BERTH-VMM-RANDOM ");
	out(hex);
	out("\n");
	finish("OK");
}

static void smp(void)
{
	sc(SYS_mkdir, (long)"/sys", 0755, 0, 0, 0);
	if (sc(SYS_mount, (long)"sysfs", (long)"/sys", (long)"sysfs", 0, 0) < 0)
		finish("FAIL mount sysfs");
	int fd = sc(SYS_open, (long)"/sys/devices/system/cpu/online", 0, 0, 0, 0);
	long n = fd < 0 ? -1 : sc(SYS_read, fd, (long)buf, 64, 0, 0);
	if (n <= 0)
		finish("FAIL read cpu/online");
	buf[n] = 0;
	out("BERTH-VMM-CPUS ");
	out((const char *)buf);
	finish("OK");
}

struct sockaddr_in {
	u16 family;
	u16 port; /* big-endian */
	u32 addr; /* big-endian */
	u8 zero[8];
};
struct ifreq {
	char name[16];
	union {
		struct sockaddr_in addr;
		u16 flags;
		u8 pad[24];
	} u;
};
#define AF_INET 2
#define SOCK_DGRAM 2
#define SIOCGIFFLAGS 0x8913
#define SIOCSIFFLAGS 0x8914
#define SIOCSIFADDR 0x8916
#define SIOCSIFNETMASK 0x891c
#define IFF_UP 1

static u32 ip4(u8 a, u8 b, u8 c, u8 d) { return a | b << 8 | c << 16 | (u32)d << 24; }
static u16 be16(u16 v) { return (u16)(v >> 8 | v << 8); }

static void ifreq_addr(struct ifreq *r, u32 addr)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->name, "eth0", 5);
	r->u.addr.family = AF_INET;
	r->u.addr.addr = addr;
}

static void net_http(const char *port_text)
{
	long port = 0;
	while (*port_text >= '0' && *port_text <= '9')
		port = port * 10 + (*port_text++ - '0');
	int s = sc(SYS_socket, AF_INET, SOCK_DGRAM, 0, 0, 0);
	struct ifreq r;
	ifreq_addr(&r, ip4(192, 168, 127, 2));
	if (s < 0 || sc(SYS_ioctl, s, SIOCSIFADDR, (long)&r, 0, 0) < 0)
		finish("FAIL eth0 address");
	ifreq_addr(&r, ip4(255, 255, 255, 0));
	if (sc(SYS_ioctl, s, SIOCSIFNETMASK, (long)&r, 0, 0) < 0)
		finish("FAIL eth0 netmask");
	ifreq_addr(&r, 0);
	if (sc(SYS_ioctl, s, SIOCGIFFLAGS, (long)&r, 0, 0) < 0)
		finish("FAIL eth0 flags");
	r.u.flags |= IFF_UP;
	if (sc(SYS_ioctl, s, SIOCSIFFLAGS, (long)&r, 0, 0) < 0)
		finish("FAIL eth0 up");
	sc(SYS_close, s, 0, 0, 0, 0);
	struct sockaddr_in a = { AF_INET, be16((u16)port), ip4(192, 168, 127, 254), { 0 } };
	int c = sc(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0);
	long rc = c < 0 ? c : sc(SYS_connect, c, (long)&a, sizeof(a), 0, 0);
	if (rc < 0) {
		out("BERTH-VMM-NET connect errno ");
		out_num(-rc);
		out("\n");
		finish("FAIL connect");
	}
	const char *req = "GET / HTTP/1.0\r\nHost: host.docker.internal\r\n\r\n";
	if (write_all(c, (const u8 *)req, slen(req)) < 0)
		finish("FAIL write");
	long got = 0;
	for (;;) {
		long n = sc(SYS_read, c, (long)buf + got, sizeof(buf) - 1 - got, 0, 0);
		if (n < 0)
			finish("FAIL read");
		if (n == 0 || got + n >= (long)sizeof(buf) - 1)
			break;
		got += n;
	}
	buf[got] = 0;
	sc(SYS_close, c, 0, 0, 0, 0);
	/* Status line, then the body after the blank line. */
	char *p = (char *)buf;
	char *eol = p;
	while (*eol && *eol != '\r' && *eol != '\n')
		eol++;
	char *body = eol;
	while (*body && !starts(body, "\r\n\r\n"))
		body++;
	*eol = 0;
	out("BERTH-VMM-HTTP ");
	out(p);
	out("\n");
	if (*body) {
		out("BERTH-VMM-BODY ");
		out(body + 4);
		out("\n");
	}
	finish("OK");
}

void cmain(long *sp)
{
	long argc = sp[0];
	char **envp = (char **)(sp + 1 + argc + 1);
	const char *mode = "boot";
	for (char **e = envp; *e; e++)
		if (starts(*e, "bt_mode="))
			mode = *e + 8;
	out("BERTH-VMM-BOOT-OK\n");
	sc(SYS_mount, (long)"devtmpfs", (long)"/dev", (long)"devtmpfs", 0, 0);
	if (starts(mode, "vsock_listen"))
		vsock_listen();
	else if (starts(mode, "vsock_connect"))
		vsock_connect();
	else if (starts(mode, "blk"))
		blk();
	else if (starts(mode, "rng"))
		rng();
	else if (starts(mode, "smp"))
		smp();
	else if (starts(mode, "net_http:"))
		net_http(mode + 9);
	finish("OK");
}

__asm__(".text\n.global _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n\thlt\n");
