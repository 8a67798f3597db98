//! SQLite: a commit's frames reach the write-ahead log in one write.
//!
//! SQLite writes each frame of a commit to the WAL as two `pwrite`s, its
//! 24-byte header then its page, and a refresh grant's commit carries about
//! ten frames: twenty system calls a refresh, each also walking the page
//! cache for the one or two pages it touches, a third of the group writer's
//! CPU (docs/benchmarks/history.md). This VFS is the default one (`unix`)
//! with the WAL file's writes gathered in memory while they follow one
//! another, and written at once when the commit frame is complete.
//!
//! Why this is safe. Other connections learn of new frames only from the
//! WAL index in shared memory, which SQLite updates after it has written
//! every frame of the commit (`walFrames`): the buffer is written out within
//! the write of the commit frame's page, so before that. A transaction whose
//! frames are still in the buffer has not committed, exactly as if the
//! process had stopped between two of SQLite's own writes. The connection
//! that owns the buffer sees its own frames: every other operation on the
//! file (read, size, sync, truncate, close) writes the buffer out first.
//! Nothing changes on disk but the number of system calls: the bytes and
//! their offsets are SQLite's, and `synchronous` keeps its meaning.
//!
//! The WAL format tells a commit frame from the others: its header's second
//! field is the database size after the commit, zero in the other frames
//! (<https://sqlite.org/fileformat2.html#walformat>). When SQLite rewrites
//! headers in place (a page written twice in one transaction, then
//! `walRewriteChecksums`), the commit frame's header is written alone, not
//! after the frame before it: it is then written out at once.
//!
//! Only the group writer's connection (`group_commit.rs`, which also runs
//! the bulk transactions of `bulk_write.rs`) opens the database through this
//! VFS; the others keep `unix`.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the group writer opens its connection with.
const VFS_NAME_C: &CStr = c"coop-idp-wal";
pub(super) const VFS_NAME: &str = match VFS_NAME_C.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the VFS name is ASCII"),
};

/// The buffer is written out when it reaches this size, commit or not (a
/// bulk transaction spilling its cache): a bound on the memory it holds.
const FLUSH_AT: usize = 1 << 20;

/// Memory the buffer keeps between commits: a refresh batch's frames (about
/// 150 KB for 4 refreshes) fit; a bulk transaction's megabyte is given back.
const RETAINED: usize = 256 << 10;

/// The largest write the default VFS makes whole: it masks a write's length
/// to 17 bits (`seekAndWriteFd`), so a longer one is cut short and fails as
/// "disk full". 124 KiB: 4 KiB under its limit.
const WRITE_CHUNK: usize = 124 << 10;

/// Bytes of a WAL frame header.
const FRAME_HEADER: c_int = 24;

#[cfg(test)]
thread_local! {
    /// Writes made to WAL files through this VFS by this thread, for the
    /// tests (SQLite calls the VFS on the thread that runs the statement).
    static WAL_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The buffer's capacity after this thread's last flush, for the tests.
    static KEPT_AFTER_FLUSH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Registers the VFS once per process (not as the default); later calls
/// return the first outcome.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are
            // thread-safe once SQLite is initialised (which
            // sqlite3_vfs_find does). The VFS struct is leaked: SQLite keeps
            // a pointer to it for the life of the process.
            unsafe {
                let base = ffi::sqlite3_vfs_find(std::ptr::null());
                if base.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mut vfs: ffi::sqlite3_vfs = std::ptr::read(base);
                vfs.pNext = std::ptr::null_mut();
                vfs.zName = VFS_NAME_C.as_ptr();
                vfs.szOsFile = c_int::try_from(REAL_OFFSET).map_err(|e| e.to_string())? + (*base).szOsFile;
                vfs.xOpen = Some(open);
                BASE.set(Base(base)).map_err(|_| "the WAL VFS was set up twice".to_string())?;
                let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("registering the WAL VFS failed (SQLite code {rc})"));
                }
                Ok(())
            }
        })
        .clone()
}

/// WAL writes made through this VFS by this thread so far (tests).
#[cfg(test)]
fn wal_writes() -> u64 {
    WAL_WRITES.get()
}

/// The default VFS this one wraps.
struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: the pointer is SQLite's static `unix` VFS, never freed, and only
// read after registration.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}
static BASE: OnceLock<Base> = OnceLock::new();

/// A WAL file: SQLite's handle (with our methods), the buffer, then the
/// default VFS's own file at `REAL_OFFSET`. Other files are the default
/// VFS's own, at offset 0 of the same allocation.
#[repr(C)]
struct WalFile {
    handle: ffi::sqlite3_file,
    pending: *mut Pending,
}

/// Where the wrapped file starts: after `WalFile`, aligned for any field.
const REAL_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// Writes not yet made: `bytes` go at `start`.
#[derive(Default)]
struct Pending {
    start: i64,
    bytes: Vec<u8>,
    /// End of the last write received (buffered or not): a commit frame's
    /// header that starts there follows the frames before it.
    last_end: i64,
    /// Offset of a commit frame's header held in the buffer: the write of
    /// its page ends the commit.
    commit_header_at: Option<i64>,
}

unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated szOsFile bytes for `file`, REAL_OFFSET of
    // them ours (`register`).
    unsafe { file.cast::<u8>().add(REAL_OFFSET).cast() }
}

unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the default VFS set pMethods on a successful open; its method
    // tables are static.
    unsafe { &*(*real(file)).pMethods }
}

unsafe fn pending<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Pending {
    // SAFETY: set by `open` for every WAL file, freed by `close`; SQLite
    // uses a file from one thread at a time.
    unsafe { &mut *(*file.cast::<WalFile>()).pending }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Base(base)) = BASE.get() else { return ffi::SQLITE_ERROR };
    // SAFETY: SQLite's contract for xOpen: `file` has szOsFile bytes; the
    // base's xOpen is called on its own VFS with room for its file.
    unsafe {
        let Some(base_open) = (**base).xOpen else { return ffi::SQLITE_ERROR };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(*base, name, file, flags, out_flags);
        }
        let inner = real(file);
        (*file).pMethods = std::ptr::null();
        let rc = base_open(*base, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*inner).pMethods.is_null()
                && let Some(close) = (*(*inner).pMethods).xClose
            {
                close(inner);
            }
            return rc;
        }
        (*file.cast::<WalFile>()).pending = Box::into_raw(Box::default());
        (*file).pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// Writes the buffer out; SQLITE_OK when it was empty.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open WAL file of ours.
    unsafe {
        let pending = pending(file);
        if pending.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(file).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut rc = ffi::SQLITE_OK;
        let mut at = pending.start;
        for chunk in pending.bytes.chunks(WRITE_CHUNK) {
            rc = write(real(file), chunk.as_ptr().cast(), chunk.len() as c_int, at);
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        // Written or not, these frames are done with: on failure SQLite
        // fails the commit, and they are never published.
        pending.bytes.clear();
        pending.bytes.shrink_to(RETAINED);
        pending.commit_header_at = None;
        #[cfg(test)]
        {
            WAL_WRITES.set(WAL_WRITES.get() + 1);
            KEPT_AFTER_FLUSH.set(pending.bytes.capacity());
        }
        rc
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    unsafe {
        let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        let state = pending(file);
        if !state.bytes.is_empty() && offset != state.start + state.bytes.len() as i64 {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let state = pending(file);
        let follows = offset == state.last_end;
        let ends_commit = state.commit_header_at.take() == Some(offset - i64::from(FRAME_HEADER));
        if state.bytes.is_empty() {
            state.start = offset;
        }
        state.bytes.extend_from_slice(bytes);
        state.last_end = offset + i64::from(amount);
        let commit_header = amount == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        if commit_header && follows {
            // Its page comes next: the commit is written with it.
            state.commit_header_at = Some(offset);
            return ffi::SQLITE_OK;
        }
        if commit_header || ends_commit || state.bytes.len() >= FLUSH_AT {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

/// Declares a method that writes the buffer out, then calls the wrapped
/// file's method of the same name with the same arguments.
macro_rules! flushed_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is an open WAL file of ours.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods(file).$method {
                    Some(method) => method(real(file) $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

/// Declares a method that calls the wrapped file's method directly.
macro_rules! passed_on {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: `file` is an open WAL file of ours.
            unsafe {
                match methods(file).$method {
                    Some(method) => method(real(file) $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

flushed_then!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flushed_then!(truncate, xTruncate, (size: i64));
flushed_then!(sync, xSync, (flags: c_int));
flushed_then!(file_size, xFileSize, (size: *mut i64));
flushed_then!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
flushed_then!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));
passed_on!(lock, xLock, (level: c_int), c_int, ffi::SQLITE_IOERR_LOCK);
passed_on!(unlock, xUnlock, (level: c_int), c_int, ffi::SQLITE_IOERR_UNLOCK);
passed_on!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), c_int, ffi::SQLITE_IOERR);
passed_on!(sector_size, xSectorSize, (), c_int, 4096);
passed_on!(device_characteristics, xDeviceCharacteristics, (), c_int, 0);
passed_on!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), c_int, ffi::SQLITE_IOERR);
passed_on!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), c_int, ffi::SQLITE_IOERR);
passed_on!(shm_unmap, xShmUnmap, (delete: c_int), c_int, ffi::SQLITE_OK);
passed_on!(unfetch, xUnfetch, (offset: i64, page: *mut c_void), c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is an open WAL file of ours.
    unsafe {
        if let Some(barrier) = methods(file).xShmBarrier {
            barrier(real(file));
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open WAL file of ours; SQLite closes it once.
    unsafe {
        let written = flush(file);
        let closed = match methods(file).xClose {
            Some(close) => close(real(file)),
            None => ffi::SQLITE_OK,
        };
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).pending));
        (*wal).pending = std::ptr::null_mut();
        (*file).pMethods = std::ptr::null();
        if written != ffi::SQLITE_OK { written } else { closed }
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rusqlite::{Connection, OpenFlags, params};

    type Rows = Vec<(i64, String, Vec<u8>)>;

    fn writer(path: &std::path::Path) -> Connection {
        register().expect("register");
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME).expect("open");
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL").expect("synchronous");
        conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no autocheckpoint");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS t_v ON t(v);",
        )
        .expect("schema");
        conn
    }

    fn rows(conn: &Connection) -> Rows {
        let mut statement = conn.prepare("SELECT id, k, v FROM t ORDER BY id").expect("prepare");
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    }

    fn insert(conn: &Connection, from: i64, n: i64, size: usize) {
        for i in from..from + n {
            let blob: Vec<u8> = (0..size).map(|b| (i as usize * 31 + b) as u8).collect();
            conn.execute("INSERT INTO t (id, k, v) VALUES (?1, ?2, ?3)", params![i, format!("key-{i}"), blob])
                .expect("insert");
        }
    }

    fn integrity(path: &std::path::Path) -> String {
        let conn = Connection::open(path).expect("open");
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check")
    }

    #[test]
    fn a_commit_is_one_write_and_is_seen_at_once_by_another_connection() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        let reader = Connection::open(&path).expect("reader");
        let mut next = 0;
        for round in 0..40 {
            let n = 1 + round % 7;
            let before = wal_writes();
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            insert(&conn, next, n, 100 + 300 * (round as usize % 5));
            conn.execute_batch("COMMIT").expect("commit");
            next += n;
            // Several pages (table, two indexes, some split), one write.
            assert_eq!(wal_writes() - before, 1, "round {round}");
            assert_eq!(rows(&reader), rows(&conn), "round {round}");
            assert_eq!(rows(&reader).len() as i64, next);
        }
        // A commit longer than the default VFS writes whole: cut in pieces.
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        insert(&conn, next, 400, 1000);
        conn.execute_batch("COMMIT").expect("commit");
        next += 400;
        assert_eq!(rows(&reader), rows(&conn));
        assert_eq!(rows(&reader).len() as i64, next);
        // The plain VFS would have made two writes per frame.
        let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).expect("checkpoint");
        assert!(frames > 80, "{frames} frames for 40 commits");
        assert_eq!(integrity(&path), "ok");
    }

    /// The buffer keeps what a batch of refreshes needs between commits and
    /// gives back what a bulk transaction grew it to.
    #[test]
    fn the_buffer_keeps_a_batchs_worth_and_gives_back_a_bulk_transactions() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        let commit = |from: i64, n: i64| {
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            insert(&conn, from, n, 1000);
            conn.execute_batch("COMMIT").expect("commit");
            KEPT_AFTER_FLUSH.get()
        };
        // About 40 pages of frames, 160 KB: kept for the next commit.
        let kept = commit(0, 150);
        assert!((150_000..=RETAINED).contains(&kept), "a batch's worth is kept: {kept}");
        // About 3 MB: flushed on the way at FLUSH_AT, then given back.
        let kept = commit(150, 3000);
        assert!(kept <= RETAINED, "a bulk transaction's memory is given back: {kept}");
        assert_eq!(rows(&Connection::open(&path).expect("reader")).len(), 3150);
    }

    #[test]
    fn a_committed_transaction_survives_the_process_stopping_without_a_close() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        insert(&conn, 0, 10, 500);
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        insert(&conn, 10, 5, 500);
        // Not committed: these frames may be in the buffer, and must not count.
        let expected = rows(&Connection::open(&path).expect("open"));
        // As if the process ended here: no close, no flush.
        std::mem::forget(conn);
        let after = Connection::open(&path).expect("reopen");
        assert_eq!(rows(&after), expected);
        assert_eq!(rows(&after).len(), 10);
        assert_eq!(integrity(&path), "ok");
    }

    #[test]
    fn a_transaction_larger_than_the_cache_rewrites_frames_and_stays_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        // A tiny cache spills pages to the WAL before the commit; writing
        // them again in the same transaction rewrites frames in place and
        // then the checksums of the frames after (SQLite's walRewriteChecksums).
        conn.pragma_update(None, "cache_size", 2).expect("cache");
        let reader = Connection::open(&path).expect("reader");
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        insert(&conn, 0, 300, 900);
        conn.execute("UPDATE t SET v = zeroblob(700) WHERE id % 3 = 0", []).expect("update");
        assert_eq!(rows(&reader).len(), 0, "nothing is visible before the commit");
        conn.execute_batch("COMMIT").expect("commit");
        assert_eq!(rows(&reader), rows(&conn));
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        insert(&conn, 300, 200, 900);
        conn.execute_batch("ROLLBACK").expect("rollback");
        assert_eq!(rows(&reader).len(), 300);
        insert(&conn, 300, 3, 10);
        assert_eq!(rows(&reader), rows(&conn));
        drop(conn);
        assert_eq!(integrity(&path), "ok");
        assert_eq!(rows(&Connection::open(&path).expect("reopen")).len(), 303);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert { n: i64, size: usize },
        Update { every: i64, size: usize },
        Delete { every: i64 },
        RolledBack { n: i64 },
        Spilling { n: i64 },
        Checkpoint(&'static str),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1i64..20, 1usize..2000).prop_map(|(n, size)| Step::Insert { n, size }),
            2 => (1i64..5, 1usize..3000).prop_map(|(every, size)| Step::Update { every, size }),
            1 => (2i64..6).prop_map(|every| Step::Delete { every }),
            1 => (1i64..30).prop_map(|n| Step::RolledBack { n }),
            1 => (20i64..120).prop_map(|n| Step::Spilling { n }),
            1 => prop_oneof![Just("PASSIVE"), Just("RESTART"), Just("TRUNCATE")].prop_map(Step::Checkpoint),
        ]
    }

    fn apply(conn: &Connection, step: &Step, next: &mut i64) {
        match *step {
            Step::Insert { n, size } => {
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                insert(conn, *next, n, size);
                conn.execute_batch("COMMIT").expect("commit");
                *next += n;
            }
            Step::Update { every, size } => {
                conn.execute(
                    "UPDATE t SET v = CAST(zeroblob(?1) || k AS BLOB) WHERE id % ?2 = 0",
                    params![size, every],
                )
                .expect("update");
            }
            Step::Delete { every } => {
                conn.execute("DELETE FROM t WHERE id % ?1 = 1", params![every]).expect("delete");
            }
            Step::RolledBack { n } => {
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                insert(conn, *next, n, 1500);
                conn.execute_batch("ROLLBACK").expect("rollback");
            }
            Step::Spilling { n } => {
                conn.pragma_update(None, "cache_size", 2).expect("cache");
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                insert(conn, *next, n, 800);
                conn.execute("UPDATE t SET v = CAST(zeroblob(10) || k AS BLOB) WHERE id % 4 = 0", []).expect("update");
                conn.execute_batch("COMMIT").expect("commit");
                conn.pragma_update(None, "cache_size", -2000).expect("cache");
                *next += n;
            }
            Step::Checkpoint(mode) => {
                conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())).expect("checkpoint");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Any sequence of commits, rollbacks, spills and checkpoints leaves
        /// the database, as every other connection reads it after each step,
        /// as the default VFS leaves it.
        #[test]
        fn the_wal_vfs_leaves_what_the_default_one_leaves(steps in proptest::collection::vec(step(), 1..25)) {
            let dir = tempfile::tempdir().expect("dir");
            let ours = writer(&dir.path().join("ours.db"));
            let plain = Connection::open(dir.path().join("plain.db")).expect("plain");
            plain.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).expect("wal");
            plain.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL);
                 CREATE INDEX t_v ON t(v);",
            ).expect("schema");
            let reader = Connection::open(dir.path().join("ours.db")).expect("reader");
            let (mut a, mut b) = (0, 0);
            for step in &steps {
                apply(&ours, step, &mut a);
                apply(&plain, step, &mut b);
                prop_assert_eq!(rows(&reader), rows(&plain), "after {:?}", step);
            }
            drop(ours);
            prop_assert_eq!(integrity(&dir.path().join("ours.db")), "ok");
        }
    }
}
