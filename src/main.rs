use std::process::ExitCode;

/// mimalloc serves the Rust side's allocations: a request allocates a few
/// hundred small blocks across tokio's threads, and glibc's arenas cost 5–14 %
/// more CPU per operation (BENCHMARKS.md, "The allocator"). SQLite and
/// aws-lc keep glibc's malloc (they call it directly).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coop-idp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(coop_idp::cli::main())
}

/// mimalloc 3's option numbers (`mi_option_e` in its `mimalloc.h`), which
/// `libmimalloc-sys` does not name for this version; Cargo.toml pins both
/// crates and a test checks each number against its environment variable.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

/// Blocks above this go to the OS and back (in KiB, mimalloc's unit).
const LARGEST_ARENA_BLOCK_KIB: std::ffi::c_long = 4 * 1024;

/// Memory given back rather than kept. By default mimalloc commits its
/// arenas eagerly on Linux and keeps a freed block of any size in them until
/// it next runs a second later: an idle server kept the start-up's Argon2
/// block (19 MiB, the dummy hash's) and its threads' pages, 60 MiB of idle
/// RSS against 24 with glibc. Arenas committed on demand, and blocks above
/// 4 MiB (the Argon2 buffers, nothing on a request's path) mapped and
/// unmapped by the OS, bring it to 27–28 MiB. Pages returned as soon as they
/// are empty (`purge_delay` 0) did as much for the idle server but cost back
/// part of the CPU gained (BENCHMARKS.md). glibc still serves SQLite and
/// aws-lc: its mmap threshold is fixed, because it raises it each time a
/// large block is freed, after which large blocks stay in the heap and RSS
/// only grows.
///
/// It runs as a constructor, before `main` and the standard library's own
/// start-up: that start-up makes the first allocation, which reserves
/// mimalloc's first arena with the options of that moment. These are
/// defaults: `MIMALLOC_ARENA_EAGER_COMMIT` and `MIMALLOC_ARENA_MAX_OBJECT_SIZE`
/// in the environment still win (mimalloc reads them at its own start).
extern "C" fn tune_allocators() {
    // SAFETY: the calls only record settings; constructors run on the one
    // thread of a process that has not started `main` yet.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_MAX_OBJECT_SIZE, LARGEST_ARENA_BLOCK_KIB);
        #[cfg(target_env = "gnu")]
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// [`tune_allocators`] in the ELF constructors, which the loader runs before
/// `main` (after mimalloc's own, which has priority 101).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATORS: extern "C" fn() = tune_allocators;

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> (i64, i64) {
        // SAFETY: reads two settings.
        unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) as i64,
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_MAX_OBJECT_SIZE) as i64,
            )
        }
    }

    #[test]
    fn the_constructor_sets_the_options_before_main() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some() {
            return; // the child of the test below
        }
        assert_eq!(options(), (0, 4096));
    }

    /// The numbers name the options meant: each reads the environment
    /// variable of its name, which also wins over the constructor's default.
    #[test]
    fn the_option_numbers_are_mimallocs_own() {
        if std::env::var_os("COOP_IDP_TEST_MI_CHILD").is_some() {
            let (eager, largest) = options();
            println!("mimalloc options: {eager} {largest}");
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", "tests::the_option_numbers_are_mimallocs_own", "--nocapture", "--test-threads=1"])
            .env("COOP_IDP_TEST_MI_CHILD", "1")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "3")
            .env("MIMALLOC_ARENA_MAX_OBJECT_SIZE", "777KiB")
            .output()
            .expect("the child test runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("mimalloc options: 3 777"), "child said: {stdout}");
    }
}
