/*
 * Tiny /init for kernel-config/boot-test.sh.
 *
 * Runs as PID 1 from a one-file initramfs (plus /dev/console): mounts
 * devtmpfs and proc, prints BERTH-TEST-INIT-OK on the console, the kernel
 * release and uptime, checks that the filesystems the agent needs are
 * registered, and reboots; with `reboot=k` on the kernel command line and
 * QEMU's -no-reboot that ends the VM.
 *
 * Output lines (one per line, parsed by boot-test.sh):
 *   BERTH-TEST-INIT-OK
 *   BERTH-TEST-RELEASE <uname -r>
 *   BERTH-TEST-UPTIME <seconds since kernel start, from /proc/uptime>
 *   BERTH-TEST-FS <name> ok|MISSING          (overlay, ext4, ...; all required)
 *   BERTH-TEST-RESULT PASS|FAIL
 *
 * Build: gcc -static -Os -s -o init init.c
 * Plain libc on purpose; it only uses syscalls and no stdio buffering, so
 * nothing is lost when reboot() ends the VM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

static void out(const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static void line(const char *a, const char *b)
{
	out(a);
	if (b) {
		out(" ");
		out(b);
	}
	out("\n");
}

/* Reads a small file into buf (NUL-terminated); returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (len + 1 < size) {
		ssize_t n = read(fd, buf + len, size - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Is `name` a line of /proc/filesystems ("nodev\tname" or "\tname")? */
static int has_fs(const char *filesystems, const char *name)
{
	size_t len = strlen(name);
	const char *p = filesystems;

	while ((p = strstr(p, name)) != NULL) {
		if (p > filesystems && p[-1] == '\t' && (p[len] == '\n' || p[len] == '\0'))
			return 1;
		p += len;
	}
	return 0;
}

int main(void)
{
	static const char *const wanted[] = { "overlay", "ext4", "tmpfs", "devtmpfs",
					      "cgroup2", "fuse", "virtiofs" };
	static char buf[8192];
	struct utsname uts;
	int ok = 1;

	/* The kernel opened /dev/console from the initramfs for fds 0-2. */
	mkdir("/dev", 0755);
	mkdir("/proc", 0555);
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0 && errno != EBUSY)
		line("BERTH-TEST-WARN mount devtmpfs failed", strerror(errno));
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
		line("BERTH-TEST-WARN mount proc failed", strerror(errno));
		ok = 0;
	}

	line("BERTH-TEST-INIT-OK", NULL);

	if (uname(&uts) == 0)
		line("BERTH-TEST-RELEASE", uts.release);
	else
		ok = 0;

	if (slurp("/proc/uptime", buf, sizeof(buf)) > 0) {
		char *space = strchr(buf, ' ');

		if (space)
			*space = '\0';
		line("BERTH-TEST-UPTIME", buf);
	}

	if (slurp("/proc/filesystems", buf, sizeof(buf)) <= 0) {
		line("BERTH-TEST-FS /proc/filesystems", "unreadable");
		ok = 0;
	} else {
		for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
			int found = has_fs(buf, wanted[i]);

			out("BERTH-TEST-FS ");
			line(wanted[i], found ? "ok" : "MISSING");
			if (!found)
				ok = 0;
		}
	}

	line("BERTH-TEST-RESULT", ok ? "PASS" : "FAIL");

	sync();
	reboot(RB_AUTOBOOT);
	/* Only reached if reboot failed. */
	line("BERTH-TEST-WARN reboot failed", strerror(errno));
	for (;;)
		pause();
}
