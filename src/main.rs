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

/// The allocators' settings, made before `main` by an ELF constructor: on
/// Linux, where the server runs; elsewhere mimalloc keeps its defaults.
#[cfg(target_os = "linux")]
mod tuning {
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
    /// `main`. Either order with mimalloc's own constructor works: a default set
    /// before mimalloc reads its environment stays unless the environment names
    /// the option.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static TUNE_ALLOCATORS: extern "C" fn() = tune_allocators;

    #[cfg(test)]
    mod tests {
        use super::*;

        const CHILD: &str = "COOP_IDP_TEST_MI_CHILD";

        /// The two options as a child test process, started with `env`, sees
        /// them: the constructor runs once per process, before any test.
        fn child_options(env: &[(&str, &str)]) -> String {
            let exe = std::env::current_exe().expect("the test binary");
            let mut child = std::process::Command::new(exe);
            child
                .args([
                    "--exact",
                    "tuning::tests::the_constructor_sets_defaults_that_the_environment_overrides",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
                .env_remove("MIMALLOC_ARENA_MAX_OBJECT_SIZE")
                .envs(env.iter().copied());
            let out = child.output().expect("the child test runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// Both sides: the defaults hold without the variables, and each number
        /// names the option meant, since the variable of that name sets it.
        #[test]
        fn the_constructor_sets_defaults_that_the_environment_overrides() {
            if std::env::var_os(CHILD).is_some() {
                // SAFETY: reads two settings.
                let (eager, largest) = unsafe {
                    (
                        libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                        libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_MAX_OBJECT_SIZE),
                    )
                };
                println!("mimalloc options: {eager} {largest}");
                return;
            }
            let defaults = child_options(&[]);
            assert!(defaults.contains("mimalloc options: 0 4096"), "child said: {defaults}");
            let set =
                child_options(&[("MIMALLOC_ARENA_EAGER_COMMIT", "3"), ("MIMALLOC_ARENA_MAX_OBJECT_SIZE", "777KiB")]);
            assert!(set.contains("mimalloc options: 3 777"), "child said: {set}");
        }
    }
}
