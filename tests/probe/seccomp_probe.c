/* Seccomp probe for tests/tests/native_security.rs, built there with
 * `gcc -static`. Each probe makes one syscall and prints `name=ERRNO`
 * (or `name=OK`). Most probes pass deliberately bad arguments that the
 * kernel rejects *before* any capability check, so a seccomp filter
 * answering EPERM can be told apart from the call running: when the call
 * is allowed the answer is EINVAL, EFAULT or EOPNOTSUPP, never EPERM.
 * Probes marked "cap first" check a capability before their arguments: when
 * allowed they still answer EPERM without that capability.
 * Nothing here can change the machine: every call is made invalid. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name_of(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOEXEC: return "ENOEXEC";
    case EEXIST: return "EEXIST";
    case EBUSY: return "EBUSY";
    default: return "OTHER";
    }
}

static void report(const char *name, long r) {
    printf("%s=%s\n", name, name_of(r < 0 ? errno : 0));
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    /* Bad flag bit 0x1 (CSIGNAL): EINVAL when allowed. */
    report("unshare_bad", syscall(SYS_unshare, CLONE_NEWUSER | 0x1));
    /* Unknown command: EOPNOTSUPP when allowed. */
    report("keyctl", syscall(SYS_keyctl, 0xdead, 0, 0, 0, 0));
    /* Type at an unmapped address: EFAULT when allowed. */
    report("add_key", syscall(SYS_add_key, (char *)1, "x", NULL, 0, 0));
    /* File system type at an unmapped address: EFAULT before may_mount(). */
    report("mount_bad", syscall(SYS_mount, "none", "/", (char *)1, 0, NULL));
    /* cap first (CAP_SYS_ADMIN), then flags: EINVAL. */
    report("swapon", syscall(SYS_swapon, "/nonexistent", 0x7fffffff));
    /* cap first (CAP_SYS_BOOT), then the magic numbers: EINVAL. */
    report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    /* cap first (CAP_SYS_MODULE), then the image: an empty one fails. */
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    /* Unknown command, no attributes: EINVAL when allowed. */
    report("bpf", syscall(SYS_bpf, 0xffff, NULL, 0));
    /* CLONE_NEWNS with CLONE_FS is always EINVAL; the default profile's
     * argument filter refuses any namespace flag first. */
    {
        long r = syscall(SYS_clone, CLONE_NEWNS | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
        report("clone_ns", r);
    }
    /* A plain fork stays allowed. */
    {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p > 0)
            waitpid(p, NULL, 0);
        report("fork", p);
    }
    /* ADDR_NO_RANDOMIZE is not one of the personas docker allows. */
    report("personality", syscall(SYS_personality, 0x0040000));
    report("personality_query", syscall(SYS_personality, 0xffffffff));
    /* The real call the issue names, last: where it is allowed and works,
     * the probe is in a new user namespace afterwards. Only its EPERM
     * under the default profile is asserted. */
    report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    fflush(stdout);
    return 0;
}
