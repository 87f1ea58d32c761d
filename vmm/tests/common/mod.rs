//! Shared helpers of the guest-booting integration tests: find the kernel,
//! build the test /init and its initramfs, run `berth-vmm`, watch its serial log.
//!
//! A test that cannot run (no usable /dev/kvm, no kernel, no gcc) prints
//! `SKIPPED: <reason>` and passes.

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Generous: a boot takes ≈5 s on kvm_pvm hosts, well under 1 s on real KVM.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// Base kernel command line of the tests (the VMM adds host quirks).
pub const CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";

/// Kernel command line of a guest whose /init is the berth agent on a root
/// disk made by [`write_agent_rootfs`].
pub const AGENT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=-1 quiet root=/dev/vda ro rootfstype=ext4 init=/init";

static SERIAL: Mutex<()> = Mutex::new(());

/// One guest at a time: the host has 2 cores and the guest kernel is
/// emulated on kvm_pvm hosts.
pub fn serialize() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a test needs to boot a guest.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub workdir: PathBuf,
}

fn skip(reason: &str) -> Option<Guest> {
    skipped(reason);
    None
}

/// Prints the skip marker and appends it to `$BERTH_TEST_SKIPS`, which
/// scripts/test.sh lists in its summary (cargo hides a passing test's
/// output).
/// Under `CI=true` a skip fails the test, as berth_tests::skip does.
#[track_caller]
pub fn skipped(reason: &str) {
    println!("SKIPPED: {reason}");
    eprintln!("SKIPPED: {reason}");
    let fail_in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if let Some(path) = std::env::var_os("BERTH_TEST_SKIPS") {
        use std::io::Write;
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "vmm {test}: {reason}");
        }
    }
    if fail_in_ci {
        panic!("a test skipped under CI=true: {reason}");
    }
}

/// The guest kernel: $BERTH_KERNEL, or the newest ~/.cache/berth/kernel/*/vmlinux
/// (built by kernel-config/build-kernel.sh).
pub fn find_kernel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_KERNEL") {
        return Some(PathBuf::from(p));
    }
    let root = std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/berth")))?
        .join("kernel");
    fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("vmlinux"))
        .filter(|p| p.is_file())
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// Prepares a guest for test `name`, or prints why it cannot and returns None.
pub fn guest_or_skip(name: &str) -> Option<Guest> {
    if OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return skip("/dev/kvm is not available");
    }
    let Some(kernel) = find_kernel() else {
        return skip("no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)");
    };
    let workdir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vmm-{name}"));
    let _ = fs::remove_dir_all(&workdir);
    fs::create_dir_all(&workdir).unwrap();
    let init = workdir.join("init");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/init.c");
    let status = Command::new("gcc")
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-Os",
            "-fno-stack-protector",
        ])
        .arg("-fno-asynchronous-unwind-tables")
        .arg("-o")
        .arg(&init)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => return skip("cannot compile tests/guest/init.c with gcc -static"),
    }
    let initrd = workdir.join("initramfs.cpio");
    write_initramfs(&initrd, &fs::read(&init).unwrap()).unwrap();
    Some(Guest {
        kernel,
        initrd,
        workdir,
    })
}

/// A newc cpio with /dev, /dev/console and /init.
pub fn write_initramfs(path: &Path, init: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut ino = 1;
    let mut entry = |name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        let namesize = name.len() + 1;
        let header =
            format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino, mode, 0, 0, 1, 0, data.len(), 0, 0, rdev.0, rdev.1, namesize, 0
        );
        ino += 1;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    entry("dev", 0o040755, (0, 0), &[]);
    entry("dev/console", 0o020600, (5, 1), &[]);
    entry("init", 0o100755, (0, 0), init);
    entry("TRAILER!!!", 0, (0, 0), &[]);
    File::create(path)?.write_all(&out)
}

/// A running `berth-vmm`.
pub struct Vm {
    pub child: Child,
    pub serial: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
}

/// Starts `berth-vmm` on `guest` with `bt_mode=<mode>` and extra arguments.
pub fn start_vm(guest: &Guest, mode: &str, extra: &[&str]) -> Vm {
    start_vm_with_env(guest, mode, extra, &[])
}

/// [`start_vm`] with extra environment variables for `berth-vmm`.
pub fn start_vm_with_env(guest: &Guest, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Vm {
    let serial = guest.workdir.join("serial.log");
    let stderr = guest.workdir.join("vmm-stderr.log");
    // A previous run's log must not satisfy this run's waits.
    let _ = fs::remove_file(&serial);
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_berth-vmm"))
        .arg("--kernel")
        .arg(&guest.kernel)
        .arg("--initrd")
        .arg(&guest.initrd)
        .arg("--cmdline")
        .arg(format!("{CMDLINE} bt_mode={mode}"))
        .arg("--serial-log")
        .arg(&serial)
        .arg("--timings")
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn berth-vmm");
    Vm {
        child,
        serial,
        stderr,
        started,
    }
}

impl Vm {
    /// The serial log so far.
    pub fn serial_text(&self) -> String {
        fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Waits for a serial line starting with `prefix`; returns it and when it appeared.
    pub fn wait_for_line(&mut self, prefix: &str) -> (String, Duration) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self.serial_text().lines().find(|l| l.starts_with(prefix)) {
                return (line.to_string(), self.started.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "berth-vmm exited ({status}) before `{prefix}`\n{}",
                    self.report()
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("timed out waiting for `{prefix}`\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the VMM to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("berth-vmm did not exit\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Serial log and VMM stderr, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- serial ---\n{}\n--- berth-vmm stderr ---\n{}",
            self.serial_text(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Asserts a clean exit (status 0 after the guest's reboot) with `BERTH-VMM-DONE OK`.
    pub fn assert_clean_exit(&mut self) {
        let status = self.wait_exit();
        assert!(
            status.success(),
            "berth-vmm failed: {status}\n{}",
            self.report()
        );
        assert!(
            self.serial_text().contains("BERTH-VMM-DONE OK"),
            "guest did not finish\n{}",
            self.report()
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads one line (up to and including `\n`, or to EOF) byte by byte, so
/// nothing after it is consumed.
pub fn read_line(s: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b)? == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The disk of the `blk` guest mode: 4 MiB with `host-was-here` at 1 MiB,
/// which the guest prints as `BERTH-VMM-HOSTDATA host-was-here`.
pub fn blk_image(path: &Path) -> File {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.set_len(4 << 20).unwrap();
    let mut host_sector = [0u8; 512];
    host_sector[..13].copy_from_slice(b"host-was-here");
    f.write_all_at(&host_sector, 1 << 20).unwrap();
    f
}

/// Asserts that the `blk` guest's pattern reached the first 64 KiB of `f`.
pub fn assert_blk_pattern(f: &File) {
    let mut got = vec![0u8; 64 * 1024];
    f.read_exact_at(&mut got, 0).unwrap();
    let want: Vec<u8> = (0..got.len() as u32).map(|i| (i * 31 + 7) as u8).collect();
    assert!(got == want, "pattern not found in the image");
}

/// Connects to guest vsock port 1024 through the muxer socket `uds`
/// (`CONNECT 1024`, answered `OK <hostport>`), sends `size` patterned bytes
/// and half-closes, and reads the echo to EOF. Returns (sent, echoed, time).
pub fn vsock_echo(uds: &Path, size: usize) -> (Vec<u8>, Vec<u8>, Duration) {
    let mut stream = std::os::unix::net::UnixStream::connect(uds).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"CONNECT 1024\n").unwrap();
    let ok = read_line(&mut stream).unwrap();
    assert!(
        ok.starts_with("OK ") && ok.ends_with('\n'),
        "handshake answer {ok:?}"
    );
    ok[3..].trim().parse::<u32>().expect("OK <hostport>");

    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
    let start = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let to_send = data.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(size);
    stream.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    (data, echoed, start.elapsed())
}

/// Whether /dev/kvm can be opened read-write.
pub fn kvm_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The static agent built by scripts/dev-build.sh (release, then debug).
pub fn find_agent() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    ["release", "debug"]
        .iter()
        .map(|p| {
            target
                .join("x86_64-unknown-linux-gnu")
                .join(p)
                .join("berth-agent")
        })
        .find(|p| p.is_file())
}

/// The guest root disk as host-core's machine.rs writes it: the agent as
/// /init and an empty /newroot on a small ext4 image in `dir`; `None`
/// when mkfs.ext4 fails.
pub fn write_agent_rootfs(agent: &Path, dir: &Path) -> Option<PathBuf> {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("newroot")).unwrap();
    fs::copy(agent, tree.join("init")).unwrap();
    let img = dir.join("rootfs.ext4");
    let bytes = (fs::metadata(agent).unwrap().len() + (4 << 20)).div_ceil(1 << 20) << 20;
    File::create(&img).unwrap().set_len(bytes).unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal"])
        .args(["-E", "root_owner=0:0", "-L", "berth-root", "-d"])
        .arg(&tree)
        .arg(&img)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(img)
}
