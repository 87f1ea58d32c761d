//! WinHvPlatform.dll and WinHvEmulation.dll, loaded at run time.
//!
//! Both DLLs exist only where the optional Windows feature "Windows
//! Hypervisor Platform" is enabled. Linking them at build time (what
//! `windows-sys` declares) would make `berth-vmm.exe` fail to start with a
//! loader error on every other Windows, before it can say what is missing.
//! So the functions berth uses are looked up with `LoadLibraryExW` (System32
//! only) and `GetProcAddress` on first use, and [`load`] turns a missing DLL,
//! a missing export or an absent hypervisor into one clear error.
//!
//! The wrappers below keep `windows-sys`' names and signatures, so the rest
//! of the backend reads like the C API; `signatures_match_windows_sys` makes
//! the compiler check each signature against `windows-sys`' declaration.
//! Called before a successful [`load`], a wrapper returns `E_FAIL`.

use std::ffi::c_void;
use std::sync::OnceLock;

use windows_sys::core::HRESULT;
use windows_sys::Win32::Foundation::{BOOL, E_FAIL};
use windows_sys::Win32::System::Hypervisor::{
    WHvCapabilityCodeHypervisorPresent, WHV_CAPABILITY_CODE, WHV_EMULATOR_CALLBACKS,
    WHV_EMULATOR_STATUS, WHV_INTERRUPT_CONTROL, WHV_MAP_GPA_RANGE_FLAGS, WHV_MEMORY_ACCESS_CONTEXT,
    WHV_PARTITION_HANDLE, WHV_PARTITION_PROPERTY_CODE, WHV_REGISTER_NAME, WHV_REGISTER_VALUE,
    WHV_TRANSLATE_GVA_FLAGS, WHV_TRANSLATE_GVA_RESULT, WHV_VP_EXIT_CONTEXT,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32,
};

const PLATFORM: &str = "WinHvPlatform.dll";
const EMULATION: &str = "WinHvEmulation.dll";

/// Declares the function table, its loader and one wrapper per function.
macro_rules! whp_functions {
    ($( $dll:ident fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ); )*) => {
        #[allow(non_snake_case)]
        struct Table {
            $( $name: unsafe extern "system" fn($($ty),*) -> HRESULT, )*
        }

        fn load_table() -> Result<Table, String> {
            Ok(Table {
                $( $name: {
                    // LoadLibraryExW of a loaded DLL only counts a reference.
                    let f = lookup(open($dll)?, concat!(stringify!($name), "\0"))?;
                    // SAFETY: the export of this name has the signature
                    // `windows-sys` declares for it (checked against the
                    // declaration by `signatures_match_windows_sys`).
                    unsafe {
                        std::mem::transmute::<
                            unsafe extern "system" fn() -> isize,
                            unsafe extern "system" fn($($ty),*) -> HRESULT,
                        >(f)
                    }
                }, )*
            })
        }

        $(
            /// The WHP function of this name (see the module docs).
            ///
            /// # Safety
            /// The contract of the Windows function of the same name.
            #[allow(non_snake_case)]
            pub unsafe fn $name($($arg: $ty),*) -> HRESULT {
                match TABLE.get() {
                    // SAFETY: forwarded under the caller's contract.
                    Some(Ok(t)) => unsafe { (t.$name)($($arg),*) },
                    _ => E_FAIL,
                }
            }
        )*

        /// Compile-time check of every signature above against `windows-sys`.
        #[cfg(test)]
        #[allow(dead_code)]
        fn signatures_match_windows_sys() {
            $( let _: unsafe extern "system" fn($($ty),*) -> HRESULT =
                windows_sys::Win32::System::Hypervisor::$name; )*
        }
    };
}

whp_functions! {
    PLATFORM fn WHvGetCapability(code: WHV_CAPABILITY_CODE, buffer: *mut c_void, size: u32, written: *mut u32);
    PLATFORM fn WHvCreatePartition(partition: *mut WHV_PARTITION_HANDLE);
    PLATFORM fn WHvSetupPartition(partition: WHV_PARTITION_HANDLE);
    PLATFORM fn WHvDeletePartition(partition: WHV_PARTITION_HANDLE);
    PLATFORM fn WHvSetPartitionProperty(partition: WHV_PARTITION_HANDLE, code: WHV_PARTITION_PROPERTY_CODE, buffer: *const c_void, size: u32);
    PLATFORM fn WHvMapGpaRange(partition: WHV_PARTITION_HANDLE, source: *const c_void, guest: u64, size: u64, flags: WHV_MAP_GPA_RANGE_FLAGS);
    PLATFORM fn WHvCreateVirtualProcessor(partition: WHV_PARTITION_HANDLE, vp: u32, flags: u32);
    PLATFORM fn WHvRunVirtualProcessor(partition: WHV_PARTITION_HANDLE, vp: u32, exit: *mut c_void, size: u32);
    PLATFORM fn WHvRequestInterrupt(partition: WHV_PARTITION_HANDLE, interrupt: *const WHV_INTERRUPT_CONTROL, size: u32);
    PLATFORM fn WHvGetVirtualProcessorRegisters(partition: WHV_PARTITION_HANDLE, vp: u32, names: *const WHV_REGISTER_NAME, count: u32, values: *mut WHV_REGISTER_VALUE);
    PLATFORM fn WHvSetVirtualProcessorRegisters(partition: WHV_PARTITION_HANDLE, vp: u32, names: *const WHV_REGISTER_NAME, count: u32, values: *const WHV_REGISTER_VALUE);
    PLATFORM fn WHvTranslateGva(partition: WHV_PARTITION_HANDLE, vp: u32, gva: u64, flags: WHV_TRANSLATE_GVA_FLAGS, result: *mut WHV_TRANSLATE_GVA_RESULT, gpa: *mut u64);
    EMULATION fn WHvEmulatorCreateEmulator(callbacks: *const WHV_EMULATOR_CALLBACKS, emulator: *mut *mut c_void);
    EMULATION fn WHvEmulatorDestroyEmulator(emulator: *const c_void);
    EMULATION fn WHvEmulatorTryMmioEmulation(emulator: *const c_void, context: *const c_void, vp_context: *const WHV_VP_EXIT_CONTEXT, access: *const WHV_MEMORY_ACCESS_CONTEXT, status: *mut WHV_EMULATOR_STATUS);
}

static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();

/// A loaded DLL (never unloaded: the table points into it).
type Module = windows_sys::Win32::Foundation::HMODULE;

fn open(name: &str) -> Result<Module, String> {
    let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
    // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the call.
    let module = unsafe {
        LoadLibraryExW(
            wide.as_ptr(),
            std::ptr::null_mut(),
            LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    };
    if module.is_null() {
        return Err(format!(
            "{name} cannot be loaded ({}): enable the optional Windows feature \
             \"Windows Hypervisor Platform\" and restart Windows",
            std::io::Error::last_os_error()
        ));
    }
    Ok(module)
}

fn lookup(module: Module, name: &str) -> Result<unsafe extern "system" fn() -> isize, String> {
    // SAFETY: `module` is a loaded DLL and `name` is NUL-terminated.
    unsafe { GetProcAddress(module, name.as_ptr()) }.ok_or_else(|| {
        format!(
            "this Windows Hypervisor Platform lacks {} (Windows 10 1803 or later is needed)",
            name.trim_end_matches('\0')
        )
    })
}

/// Loads both DLLs (once per process) and checks that the hypervisor runs.
pub fn load() -> Result<(), String> {
    if let Err(why) = TABLE.get_or_init(load_table) {
        return Err(why.clone());
    }
    let mut present: BOOL = 0;
    let mut written = 0u32;
    // SAFETY: a 4-byte buffer for a BOOL capability, and its size.
    let hr = unsafe {
        WHvGetCapability(
            WHvCapabilityCodeHypervisorPresent,
            (&mut present as *mut BOOL).cast(),
            std::mem::size_of::<BOOL>() as u32,
            &mut written,
        )
    };
    if hr < 0 || present == 0 {
        return Err(
            "the Windows Hypervisor Platform is installed but no hypervisor runs: \
                    enable virtualization in the firmware settings"
                .into(),
        );
    }
    Ok(())
}
