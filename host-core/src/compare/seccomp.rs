//! How many system calls a process's seccomp filters let through: the
//! filters in force are read from the live process (Linux:
//! `PTRACE_SECCOMP_GET_FILTER`, which needs root) and run, in a small
//! classic-BPF interpreter, over every system call number of the arch.
//!
//! The program comes from another process, so it is checked before it
//! runs: bounded size, only the instructions the kernel accepts in a
//! seccomp filter, loads only inside `struct seccomp_data`, jumps only
//! forward and inside the program (so a run ends), a return at the end.

use serde::{Deserialize, Serialize};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// From the 8 bytes of a `struct sock_filter` (native byte order).
    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Filters stacked on one task that are read at most.
pub const MAX_FILTERS: usize = 64;
/// `sizeof(struct seccomp_data)`: nr, arch, instruction pointer, 6 args.
const DATA_LEN: u32 = 64;
/// First byte of `seccomp_data` past `nr` and `arch`.
const DATA_IP: u32 = 8;

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_AARCH64`.
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

// Opcodes (linux/filter.h, linux/bpf_common.h) the kernel accepts in a
// seccomp filter (kernel/seccomp.c, seccomp_check_filter).
const LD_W_ABS: u16 = 0x20;
const LD_W_LEN: u16 = 0x80;
const LDX_W_LEN: u16 = 0x81;
const LD_IMM: u16 = 0x00;
const LDX_IMM: u16 = 0x01;
const LD_MEM: u16 = 0x60;
const LDX_MEM: u16 = 0x61;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;
const TAX: u16 = 0x07;
const TXA: u16 = 0x87;
const JA: u16 = 0x05;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
/// `BPF_X`: the operand is the X register, not `k`.
const SRC_X: u16 = 0x08;
const ALU_NEG: u16 = 0x84;

/// Why a program read from a process is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error("empty filter")]
    Empty,
    #[error("filter of {0} instructions (the kernel's limit is {MAX_INSNS})")]
    TooLong(usize),
    #[error("instruction {at}: opcode {code:#06x} is not allowed in a seccomp filter")]
    Opcode { at: usize, code: u16 },
    #[error("instruction {at}: load at offset {k} outside seccomp_data")]
    Load { at: usize, k: u32 },
    #[error("instruction {at}: scratch slot {k} out of range")]
    Scratch { at: usize, k: u32 },
    #[error("instruction {at}: jump past the end of the filter")]
    Jump { at: usize },
    #[error("instruction {at}: division by constant zero or shift by {k}")]
    Operand { at: usize, k: u32 },
    #[error("the filter does not end with a return")]
    NoReturn,
}

/// Checks a program as the kernel would before running it here.
pub fn validate(prog: &[Insn]) -> Result<(), BpfError> {
    if prog.is_empty() {
        return Err(BpfError::Empty);
    }
    if prog.len() > MAX_INSNS {
        return Err(BpfError::TooLong(prog.len()));
    }
    let n = prog.len();
    for (at, i) in prog.iter().enumerate() {
        let rest = n - at - 1; // instructions after this one
        match i.code {
            LD_W_ABS => {
                if i.k >= DATA_LEN || i.k % 4 != 0 {
                    return Err(BpfError::Load { at, k: i.k });
                }
            }
            LD_W_LEN | LDX_W_LEN | LD_IMM | LDX_IMM | RET_K | RET_A | TAX | TXA | ALU_NEG => {}
            LD_MEM | LDX_MEM | ST | STX => {
                if i.k >= 16 {
                    return Err(BpfError::Scratch { at, k: i.k });
                }
            }
            JA => {
                if i.k as usize >= rest {
                    return Err(BpfError::Jump { at });
                }
            }
            c if c & 0x07 == JMP && is_cond_jump(c) => {
                if i.jt as usize >= rest || i.jf as usize >= rest {
                    return Err(BpfError::Jump { at });
                }
            }
            c if c & 0x07 == ALU && is_alu(c) => {
                let op = c & 0xf0;
                if c & SRC_X == 0 {
                    if op == 0x30 && i.k == 0 {
                        return Err(BpfError::Operand { at, k: i.k });
                    }
                    if (op == 0x60 || op == 0x70) && i.k >= 32 {
                        return Err(BpfError::Operand { at, k: i.k });
                    }
                }
            }
            code => return Err(BpfError::Opcode { at, code }),
        }
    }
    match prog[n - 1].code {
        RET_K | RET_A => Ok(()),
        _ => Err(BpfError::NoReturn),
    }
}

/// JEQ, JGT, JGE, JSET with `k` or `X`.
fn is_cond_jump(c: u16) -> bool {
    matches!(c & !SRC_X, 0x15 | 0x25 | 0x35 | 0x45)
}

/// ADD SUB MUL DIV OR AND LSH RSH XOR with `k` or `X` (no MOD: seccomp
/// refuses it).
fn is_alu(c: u16) -> bool {
    matches!(
        c & !SRC_X,
        0x04 | 0x14 | 0x24 | 0x34 | 0x44 | 0x54 | 0x64 | 0x74 | 0xa4
    )
}

/// The input of a filter (`struct seccomp_data`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    /// The 32-bit word at byte `off` (validated: < 64, aligned).
    fn word(&self, off: u32) -> u32 {
        let w = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
        // Little-endian hosts keep the low half of a u64 first.
        let hi_first = cfg!(target_endian = "big");
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => w(self.ip, (off == 12) != hi_first),
            o => {
                let a = ((o - 16) / 8) as usize;
                w(self.args[a], (o % 8 == 4) != hi_first)
            }
        }
    }
}

/// A run's result: the filter's return value, and whether it read the
/// instruction pointer or an argument on the way (the answer may then
/// differ for other arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub ret: u32,
    pub read_args: bool,
}

/// Runs a program that [`validate`] accepted. Every jump goes forward,
/// so this takes at most `prog.len()` steps.
pub fn run(prog: &[Insn], d: &Data) -> Outcome {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut read_args = false;
    let mut pc = 0usize;
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let src = if i.code & SRC_X != 0 { x } else { i.k };
        match i.code {
            LD_W_ABS => {
                read_args |= i.k >= DATA_IP;
                a = d.word(i.k);
            }
            LD_W_LEN => a = DATA_LEN,
            LDX_W_LEN => x = DATA_LEN,
            LD_IMM => a = i.k,
            LDX_IMM => x = i.k,
            LD_MEM => a = mem[(i.k & 15) as usize],
            LDX_MEM => x = mem[(i.k & 15) as usize],
            ST => mem[(i.k & 15) as usize] = a,
            STX => mem[(i.k & 15) as usize] = x,
            RET_K => {
                return Outcome {
                    ret: i.k,
                    read_args,
                }
            }
            RET_A => return Outcome { ret: a, read_args },
            TAX => x = a,
            TXA => a = x,
            ALU_NEG => a = a.wrapping_neg(),
            JA => pc += i.k as usize,
            c if c & 0x07 == JMP => {
                let taken = match c & 0xf0 {
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    _ => a & src != 0,
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
            c => {
                a = match c & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    // Classic BPF: dividing by a zero X ends the program
                    // with 0.
                    0x30 if src == 0 => return Outcome { ret: 0, read_args },
                    0x30 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    _ => a ^ src,
                };
            }
        }
    }
    // Unreachable for a validated program (it ends with a return).
    Outcome { ret: 0, read_args }
}

/// `SECCOMP_RET_ACTION_FULL`.
const ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_LOG`: allowed, and logged.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ERRNO`.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// The kernel's verdict over stacked filters: the action of highest
/// precedence, i.e. the lowest as a signed number (kill first, allow last).
pub fn combine(rets: impl IntoIterator<Item = u32>) -> u32 {
    rets.into_iter()
        .min_by_key(|r| (r & ACTION_FULL) as i32)
        .unwrap_or(RET_ALLOW)
}

/// The system call numbers of an arch, as `(first, last)` ranges: the
/// numbers Linux 6.18's table assigns (gaps are numbers no kernel uses on
/// that arch).
pub fn syscall_numbers(audit_arch: u32) -> &'static [(u32, u32)] {
    match audit_arch {
        // arch/x86/entry/syscalls/syscall_64.tbl: 0-335 (uretprobe), then
        // the numbers shared by all arches from 424 (pidfd_send_signal) to
        // 469 (file_setattr).
        AUDIT_ARCH_X86_64 => &[(0, 335), (424, 469)],
        // include/uapi/asm-generic/unistd.h for 64-bit arches: 0-243,
        // 260-294 (244-259 are arch-specific, unused on arm64), 424-469.
        AUDIT_ARCH_AARCH64 => &[(0, 243), (260, 294), (424, 469)],
        _ => &[],
    }
}

/// The audit arch of the system calls of this build's target.
pub fn native_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(AUDIT_ARCH_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(AUDIT_ARCH_AARCH64)
    } else {
        None
    }
}

/// What the filters in force on a task let through, over every system
/// call number of its arch (arguments and instruction pointer zero).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallCount {
    /// Numbers the filters allow (`ALLOW` or `LOG`); all of them without
    /// a filter.
    pub allowed: u32,
    /// Of those, numbers whose verdict read an argument or the
    /// instruction pointer (allowed for these arguments; others may be
    /// refused, e.g. `clone` with namespace flags).
    pub arg_dependent: u32,
    /// System call numbers of the arch.
    pub total: u32,
    /// Filters read (stacked on the task).
    pub filters: u32,
}

/// The verdict of `filters` (each validated) on every system call of
/// `arch`: `(nr, allowed, read_args)`.
fn verdicts(filters: &[Vec<Insn>], arch: u32) -> impl Iterator<Item = (u32, bool, bool)> + '_ {
    syscall_numbers(arch)
        .iter()
        .flat_map(|&(lo, hi)| lo..=hi)
        .map(move |nr| {
            let d = Data {
                nr,
                arch,
                ..Default::default()
            };
            let outs: Vec<Outcome> = filters.iter().map(|f| run(f, &d)).collect();
            let v = combine(outs.iter().map(|o| o.ret)) & ACTION_FULL;
            let allowed = v == RET_ALLOW || v == RET_LOG;
            (nr, allowed, outs.iter().any(|o| o.read_args))
        })
}

/// Counts what `filters` allow for `arch`.
pub fn count(filters: &[Vec<Insn>], arch: u32) -> Result<SyscallCount, BpfError> {
    for f in filters {
        validate(f)?;
    }
    let mut c = SyscallCount {
        filters: filters.len() as u32,
        ..Default::default()
    };
    for (_, allowed, read_args) in verdicts(filters, arch) {
        c.total += 1;
        if allowed {
            c.allowed += 1;
            c.arg_dependent += u32::from(read_args);
        }
    }
    Ok(c)
}

/// Reading a task's filters.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("this build's arch has no system call table here")]
    Arch,
    #[error("reading task {tid}: {what}: {errno}")]
    Sys {
        tid: i32,
        what: &'static str,
        errno: std::io::Error,
    },
    #[error("task {tid}'s filter {index}: {source}")]
    Bpf {
        tid: i32,
        index: usize,
        source: BpfError,
    },
    #[error("task {tid} has more than {MAX_FILTERS} filters")]
    TooMany { tid: i32 },
    #[error("not available off Linux")]
    Unsupported,
}

/// The filters in force on task `tid` (a process's main thread or one of
/// its threads), most recent first; empty without seccomp. Stops the task
/// for the moment of the reading (ptrace seize and interrupt) and lets it
/// go on. Needs CAP_SYS_ADMIN and no seccomp filter on the caller.
#[cfg(target_os = "linux")]
pub fn read_filters(tid: i32) -> Result<Vec<Vec<Insn>>, ReadError> {
    use std::io;
    const PTRACE_SEIZE: libc::c_uint = 0x4206;
    const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
    const PTRACE_DETACH: libc::c_uint = 17;
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    let sys = |what: &'static str| ReadError::Sys {
        tid,
        what,
        errno: io::Error::last_os_error(),
    };
    // No filter: nothing to stop the task for.
    let status =
        std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(|errno| ReadError::Sys {
            tid,
            what: "status",
            errno,
        })?;
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    if mode == "0" || mode.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: ptrace with plain integer arguments; it touches no memory of
    // ours.
    if unsafe { libc::ptrace(PTRACE_SEIZE, tid, 0usize, 0usize) } != 0 {
        return Err(sys("ptrace seize"));
    }
    let result = (|| {
        // SAFETY: as above.
        if unsafe { libc::ptrace(PTRACE_INTERRUPT, tid, 0usize, 0usize) } != 0 {
            return Err(sys("ptrace interrupt"));
        }
        // Polled with a deadline: a task that never stops is reported,
        // not waited for.
        let mut st = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            // SAFETY: waitpid writes only to `st`, which lives on our stack.
            let r = unsafe { libc::waitpid(tid, &mut st, libc::__WALL | libc::WNOHANG) };
            if r == tid {
                break;
            }
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(sys("waitpid"));
            }
            if std::time::Instant::now() > deadline {
                return Err(ReadError::Sys {
                    tid,
                    what: "the task did not stop",
                    errno: io::Error::from_raw_os_error(libc::ETIMEDOUT),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            return Err(ReadError::Sys {
                tid,
                what: "the task ended",
                errno: io::Error::from_raw_os_error(ESRCH),
            });
        }
        let mut filters = Vec::new();
        for index in 0..=MAX_FILTERS {
            // SAFETY: a null buffer asks only for the length.
            let n = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    tid,
                    index,
                    std::ptr::null_mut::<libc::c_void>(),
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                    break;
                }
                return Err(sys("PTRACE_SECCOMP_GET_FILTER"));
            }
            if index == MAX_FILTERS {
                return Err(ReadError::TooMany { tid });
            }
            let n = n as usize;
            if n == 0 || n > MAX_INSNS {
                return Err(ReadError::Bpf {
                    tid,
                    index,
                    source: if n == 0 {
                        BpfError::Empty
                    } else {
                        BpfError::TooLong(n)
                    },
                });
            }
            let mut buf = vec![0u8; n * 8];
            // SAFETY: `buf` holds `n` sock_filter entries, the length the
            // kernel just gave for this filter (filters never change).
            let got = unsafe {
                libc::ptrace(
                    PTRACE_SECCOMP_GET_FILTER,
                    tid,
                    index,
                    buf.as_mut_ptr() as *mut libc::c_void,
                )
            };
            if got < 0 {
                return Err(sys("PTRACE_SECCOMP_GET_FILTER"));
            }
            let got = (got as usize).min(n);
            let prog: Vec<Insn> = buf[..got * 8]
                .chunks_exact(8)
                .map(|c| Insn::from_bytes(c.try_into().expect("8 bytes")))
                .collect();
            validate(&prog).map_err(|source| ReadError::Bpf { tid, index, source })?;
            filters.push(prog);
        }
        Ok(filters)
    })();
    // SAFETY: as above; detaching resumes the task.
    unsafe { libc::ptrace(PTRACE_DETACH, tid, 0usize, 0usize) };
    result
}

#[cfg(not(target_os = "linux"))]
pub fn read_filters(_tid: i32) -> Result<Vec<Vec<Insn>>, ReadError> {
    Err(ReadError::Unsupported)
}

/// What a process's filters allow: over all its threads (the union of
/// what each thread may call: the surface of the whole process), with
/// the number of threads read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSyscalls {
    #[serde(flatten)]
    pub count: SyscallCount,
    /// Threads whose filters were read.
    pub threads: u32,
    /// The largest count allowed to one thread.
    pub max_per_thread: u32,
}

/// Reads and counts the filters of `pid`'s threads (all of them when
/// `all_threads`, else the main thread only).
pub fn process_syscalls(pid: i32, all_threads: bool) -> Result<ProcessSyscalls, ReadError> {
    let arch = native_arch().ok_or(ReadError::Arch)?;
    let tids: Vec<i32> = if all_threads {
        let mut t: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|errno| ReadError::Sys {
                tid: pid,
                what: "task list",
                errno,
            })?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .take(4096)
            .collect();
        t.sort_unstable();
        t
    } else {
        vec![pid]
    };
    let mut union = vec![false; 1024];
    let mut dependent = vec![false; 1024];
    let mut out = ProcessSyscalls::default();
    for tid in tids {
        if all_threads && kernel_worker(pid, tid) {
            continue;
        }
        let filters = match read_filters(tid) {
            Ok(f) => f,
            // A thread that ended since the listing.
            Err(ReadError::Sys { errno, .. })
                if all_threads && errno.raw_os_error() == Some(ESRCH) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        out.threads += 1;
        out.count.filters = out.count.filters.max(filters.len() as u32);
        let c = count(&filters, arch).map_err(|source| ReadError::Bpf {
            tid,
            index: 0,
            source,
        })?;
        out.max_per_thread = out.max_per_thread.max(c.allowed);
        out.count.total = c.total;
        for (nr, allowed, read_args) in verdicts(&filters, arch) {
            if allowed {
                union[nr as usize] = true;
                dependent[nr as usize] |= read_args;
            }
        }
    }
    out.count.allowed = union.iter().filter(|b| **b).count() as u32;
    out.count.arg_dependent = union
        .iter()
        .zip(&dependent)
        .filter(|(u, d)| **u && **d)
        .count() as u32;
    Ok(out)
}

/// Whether thread `tid` of `pid` is a kernel worker in the process's
/// thread group (e.g. KVM's `kvm-nx-lpage-recovery`): it runs no user
/// code and cannot be stopped with ptrace. From the flags of its
/// /proc stat line (PF_IO_WORKER, PF_USER_WORKER, PF_KTHREAD).
fn kernel_worker(pid: i32, tid: i32) -> bool {
    const WORKER: u64 = 0x10 | 0x4000 | 0x0020_0000;
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| stat_flags(&s))
        .is_some_and(|f| f & WORKER != 0)
}

/// The flags field of a /proc stat line (the name in parentheses may
/// hold spaces and parentheses).
fn stat_flags(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// `ESRCH` (the same number on every unix).
const ESRCH: i32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    const X86: u32 = AUDIT_ARCH_X86_64;
    fn ld(k: u32) -> Insn {
        Insn::new(LD_W_ABS, 0, 0, k)
    }
    fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
        Insn::new(0x15, jt, jf, k)
    }
    fn ret(k: u32) -> Insn {
        Insn::new(RET_K, 0, 0, k)
    }
    fn total(arch: u32) -> u32 {
        syscall_numbers(arch).iter().map(|(a, b)| b - a + 1).sum()
    }

    #[test]
    fn no_filter_and_allow_all_allow_everything() {
        assert_eq!(total(X86), 382);
        let none = count(&[], X86).unwrap();
        assert_eq!((none.allowed, none.total, none.filters), (382, 382, 0));
        let all = count(&[vec![ret(RET_ALLOW)]], X86).unwrap();
        assert_eq!((all.allowed, all.arg_dependent, all.filters), (382, 0, 1));
        // LOG lets the call through too; ERRNO does not.
        assert_eq!(count(&[vec![ret(RET_LOG)]], X86).unwrap().allowed, 382);
        assert_eq!(count(&[vec![ret(RET_ERRNO | 1)]], X86).unwrap().allowed, 0);
    }

    #[test]
    fn a_deny_list_refuses_what_it_names() {
        // execve (59) and ptrace (101) get EPERM, the rest is allowed.
        let prog = vec![
            ld(0),
            jeq(59, 2, 0),
            jeq(101, 1, 0),
            ret(RET_ALLOW),
            ret(RET_ERRNO | 1),
        ];
        let c = count(std::slice::from_ref(&prog), X86).unwrap();
        assert_eq!(c.allowed, 380);
        let d = |nr| Data {
            nr,
            arch: X86,
            ..Default::default()
        };
        assert_eq!(run(&prog, &d(59)).ret, RET_ERRNO | 1);
        assert_eq!(run(&prog, &d(0)).ret, RET_ALLOW);
        assert!(!run(&prog, &d(0)).read_args);
    }

    #[test]
    fn an_arch_check_kills_other_arches() {
        // Allow read (0) and write (1) on x86_64 only; kill anything else.
        let prog = vec![
            ld(4),
            jeq(X86, 1, 0),
            ret(RET_KILL_PROCESS),
            ld(0),
            Insn::new(0x35, 2, 0, 2), // jge 2 -> kill
            ret(RET_ALLOW),
            ret(RET_ALLOW),
            ret(RET_KILL_PROCESS),
        ];
        assert_eq!(count(std::slice::from_ref(&prog), X86).unwrap().allowed, 2);
        assert_eq!(count(&[prog], AUDIT_ARCH_AARCH64).unwrap().allowed, 0);
    }

    #[test]
    fn jumps_scratch_alu_and_arguments() {
        // clone (56): refused when args[0] has CLONE_NEWUSER, through a
        // detour (ja, st/ld mem, tax/txa, and, jset with X).
        let prog = vec![
            ld(0),
            jeq(56, 1, 0),
            Insn::new(JA, 0, 0, 6), // -> allow
            ld(16),                 // args[0] low word
            Insn::new(ST, 0, 0, 3),
            Insn::new(LDX_IMM, 0, 0, 0x1000_0000),
            Insn::new(LD_MEM, 0, 0, 3),
            Insn::new(0x54, 0, 0, 0xffff_ffff), // and k
            Insn::new(0x4d, 1, 0, 0),           // jset x
            ret(RET_ALLOW),
            ret(RET_ERRNO | 1),
        ];
        validate(&prog).unwrap();
        let mut d = Data {
            nr: 56,
            arch: X86,
            ..Default::default()
        };
        let o = run(&prog, &d);
        assert_eq!(
            o,
            Outcome {
                ret: RET_ALLOW,
                read_args: true
            }
        );
        d.args[0] = 0x1000_0000;
        assert_eq!(run(&prog, &d).ret, RET_ERRNO | 1);
        // The high word is not what the filter looks at.
        d.args[0] = 0x1000_0000_0000_0000;
        assert_eq!(run(&prog, &d).ret, RET_ALLOW);
        let c = count(&[prog], X86).unwrap();
        assert_eq!((c.allowed, c.arg_dependent), (382, 1));
    }

    #[test]
    fn stacked_filters_take_the_strictest_verdict() {
        let errno_read = vec![ld(0), jeq(0, 0, 1), ret(RET_ERRNO | 2), ret(RET_ALLOW)];
        let kill_read = vec![ld(0), jeq(0, 0, 1), ret(RET_KILL_PROCESS), ret(RET_LOG)];
        let c = count(&[errno_read.clone(), kill_read.clone()], X86).unwrap();
        assert_eq!((c.allowed, c.filters), (381, 2));
        assert_eq!(combine([RET_ERRNO | 2, RET_KILL_PROCESS]), RET_KILL_PROCESS);
        assert_eq!(combine([RET_ALLOW, RET_LOG]), RET_LOG);
        assert_eq!(combine([RET_ALLOW, 0]), 0, "KILL_THREAD beats ALLOW");
    }

    #[test]
    fn division_by_a_zero_register_ends_with_kill() {
        let prog = vec![
            Insn::new(LDX_IMM, 0, 0, 0),
            Insn::new(0x3c, 0, 0, 0),
            ret(RET_ALLOW),
        ];
        validate(&prog).unwrap();
        assert_eq!(run(&prog, &Data::default()).ret, 0);
    }

    #[test]
    fn hostile_programs_are_refused() {
        use BpfError::*;
        assert_eq!(validate(&[]), Err(Empty));
        assert_eq!(
            validate(&vec![ret(RET_ALLOW); MAX_INSNS + 1]),
            Err(TooLong(MAX_INSNS + 1))
        );
        // BPF_MOD, BPF_LD|BPF_B|BPF_ABS, BPF_LD|BPF_IND: not in seccomp.
        for code in [0x94, 0x30, 0x40, 0xffff] {
            assert_eq!(
                validate(&[Insn::new(code, 0, 0, 0), ret(0)]),
                Err(Opcode { at: 0, code })
            );
        }
        assert_eq!(validate(&[ld(64), ret(0)]), Err(Load { at: 0, k: 64 }));
        assert_eq!(validate(&[ld(2), ret(0)]), Err(Load { at: 0, k: 2 }));
        assert_eq!(
            validate(&[Insn::new(ST, 0, 0, 16), ret(0)]),
            Err(Scratch { at: 0, k: 16 })
        );
        // Jumps past the end, the last instruction's included.
        assert_eq!(
            validate(&[Insn::new(JA, 0, 0, 1), ret(0)]),
            Err(Jump { at: 0 })
        );
        assert_eq!(
            validate(&[Insn::new(JA, 0, 0, u32::MAX), ret(0)]),
            Err(Jump { at: 0 })
        );
        assert_eq!(validate(&[jeq(0, 0, 1), ret(0)]), Err(Jump { at: 0 }));
        assert_eq!(validate(&[ret(0), jeq(0, 0, 0)]), Err(Jump { at: 1 }));
        assert_eq!(
            validate(&[Insn::new(0x34, 0, 0, 0), ret(0)]),
            Err(Operand { at: 0, k: 0 })
        );
        assert_eq!(
            validate(&[Insn::new(0x64, 0, 0, 32), ret(0)]),
            Err(Operand { at: 0, k: 32 })
        );
        assert_eq!(validate(&[ld(0)]), Err(NoReturn));
        assert!(count(&[vec![ld(0)]], X86).is_err());
    }

    #[test]
    fn kernel_workers_are_told_by_their_flags() {
        let line = "77 (notify-rs (in) S 1 77 77 0 -1 4210752 0 0";
        assert_eq!(stat_flags(line), Some(4_210_752));
        assert_eq!(stat_flags("77 (x) S 1"), None);
        assert_eq!(stat_flags("garbage"), None);
        assert!(!kernel_worker(
            std::process::id() as i32,
            std::process::id() as i32
        ));
    }

    #[test]
    fn words_of_seccomp_data() {
        let d = Data {
            nr: 7,
            arch: X86,
            ip: 0xaaaa_bbbb_cccc_dddd,
            args: [0x1122_3344_5566_7788, 0, 0, 0, 0, 0x99],
        };
        assert_eq!(d.word(0), 7);
        assert_eq!(d.word(4), X86);
        if cfg!(target_endian = "little") {
            assert_eq!(d.word(8), 0xcccc_dddd);
            assert_eq!(d.word(12), 0xaaaa_bbbb);
            assert_eq!(d.word(16), 0x5566_7788);
            assert_eq!(d.word(20), 0x1122_3344);
            assert_eq!(d.word(56), 0x99);
        }
        let prog = [ld(8), ret(RET_ALLOW)];
        assert!(run(&prog, &d).read_args, "the instruction pointer counts");
    }

    /// A live filter, read back from a child that installed it.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn reads_a_live_filter_from_a_child() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: PTRACE_SECCOMP_GET_FILTER needs root");
            return;
        }
        // A child with no_new_privs and a filter that refuses ptrace (101).
        let prog = [ld(0), jeq(101, 0, 1), ret(RET_ERRNO | 1), ret(RET_ALLOW)];
        let raw: Vec<libc::sock_filter> = prog
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe functions (prctl,
        // read, _exit) before it ends.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(w);
                let fprog = libc::sock_fprog {
                    len: raw.len() as u16,
                    filter: raw.as_ptr() as *mut libc::sock_filter,
                };
                // SAFETY: plain prctl calls; `fprog` points at `raw`,
                // which lives until _exit.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &fprog as *const libc::sock_fprog,
                    );
                }
                let mut b = [0u8; 1];
                // Waits until the parent closes the pipe (the child's own
                // write end is closed above).
                let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut b);
                // SAFETY: ends the child without running the test harness.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(r);
                let pid = child.as_raw();
                let mut got = Ok(Vec::new());
                for _ in 0..200 {
                    got = read_filters(pid);
                    if !matches!(&got, Ok(f) if f.is_empty()) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                drop(w);
                let _ = nix::sys::wait::waitpid(child, None);
                let filters = got.unwrap();
                assert_eq!(filters, vec![prog.to_vec()]);
                let c = count(&filters, X86).unwrap();
                assert_eq!(c.allowed, c.total - 1);
                // A process without a filter: everything, nothing stopped.
                let mut plain = std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap();
                let p = process_syscalls(plain.id() as i32, true).unwrap();
                let _ = plain.kill();
                let _ = plain.wait();
                assert_eq!(p.count.filters, 0);
                assert_eq!(p.count.allowed, p.count.total);
                assert_eq!(p.threads, 1);
            }
        }
    }
}
