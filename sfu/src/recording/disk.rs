//! The disk-space floor, checked away from the media task.
//!
//! `statvfs` on a slow or hung file system (NFS, a throttled volume) can block for seconds; the
//! media task forwards every call's packets and must never wait on it (security review
//! finding 16). So a [`DiskWatch`] owns one small thread that polls the free space of a
//! recording directory and publishes "below the floor" in an atomic the media task reads for
//! free. A failed check counts as below the floor (finding 27): a recording that cannot tell
//! how much room is left stops rather than filling the disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Free bytes of the file system holding `directory`, or why they are unknown.
pub fn free_bytes(directory: &Path) -> std::io::Result<u64> {
    fs4::available_space(directory)
}

/// `Err(reason)` when `directory` has fewer than `floor` free bytes, or its free space cannot
/// be read (fail closed). Blocking: call it off the media task.
pub fn check_floor(directory: &Path, floor: u64) -> Result<(), String> {
    match free_bytes(directory) {
        Ok(free) if free >= floor => Ok(()),
        Ok(free) => Err(format!(
            "only {free} bytes free in {} (floor {floor})",
            directory.display()
        )),
        Err(error) => Err(format!(
            "cannot read the free space of {}: {error}",
            directory.display()
        )),
    }
}

#[derive(Debug, Default)]
struct Flags {
    below: AtomicBool,
    stop: AtomicBool,
}

/// Polls one directory's free space on its own thread until dropped.
#[derive(Debug)]
pub struct DiskWatch {
    flags: Arc<Flags>,
    thread: Option<JoinHandle<()>>,
}

impl DiskWatch {
    /// Starts watching `directory` every `interval` against `floor` bytes. The first check
    /// runs at once.
    pub fn start(directory: PathBuf, floor: u64, interval: Duration) -> std::io::Result<Self> {
        let flags = Arc::new(Flags::default());
        let thread_flags = flags.clone();
        let thread = std::thread::Builder::new()
            .name("sfu-disk-watch".into())
            .spawn(move || {
                while !thread_flags.stop.load(Ordering::Acquire) {
                    let below = check_floor(&directory, floor).is_err();
                    thread_flags.below.store(below, Ordering::Release);
                    // Woken early by `Drop`.
                    std::thread::park_timeout(interval);
                }
            })?;
        Ok(Self {
            flags,
            thread: Some(thread),
        })
    }

    /// Whether the last check found the directory below the floor (or could not check).
    pub fn below_floor(&self) -> bool {
        self.flags.below.load(Ordering::Acquire)
    }
}

impl Drop for DiskWatch {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Release);
        // Not joined: the thread may be inside a slow statvfs, and dropping happens on the
        // media task. It exits on its next wake-up.
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_fails_closed() {
        let missing = std::env::temp_dir().join("switchboard-no-such-dir/deeper");
        assert!(check_floor(&missing, 0).is_err());
        let watch = DiskWatch::start(missing, 0, Duration::from_millis(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !watch.below_floor() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            watch.below_floor(),
            "an unreadable directory is below the floor"
        );
    }

    #[test]
    fn a_directory_with_room_is_above_a_zero_floor() {
        let dir = std::env::temp_dir();
        assert!(check_floor(&dir, 0).is_ok());
        assert!(check_floor(&dir, u64::MAX).is_err());
    }
}
