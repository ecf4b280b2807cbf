//! A download onto a disk that fills up: `kadswarm get` into a 2 MiB tmpfs, from a seeder of
//! 8 MiB on loopback. The full disk is the torrent's error: `get` exits 1 with one line naming
//! the file and "No space left on device", and once the tmpfs is grown a re-run resumes,
//! fetching only the pieces that were not already written and verified.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::swarm::{assert_same_tree, done_event, get_args, make_payload, MIB, TRANSFER_LIMIT};
use common::{free_port, ip, s, skip, Proc, TempDir};

const TEST: &str = "disk_full";

/// A tmpfs mounted on a directory, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when the mount is refused (not root, no CAP_SYS_ADMIN in this container).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|st| st.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Grows (or shrinks) the tmpfs in place, keeping what is on it.
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "cannot remount {} with size={size}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_full_disk_fails_the_download_with_exit_1_and_a_rerun_resumes() {
    if !is_root() {
        return skip(TEST, "mounting a tmpfs needs root");
    }
    let src = TempDir::new("diskfull-src");
    let payload = make_payload(&src.0, "payload", 8 * MIB, 12);
    // The mount point lives inside a scratch directory; the guard is dropped first.
    let scratch = TempDir::new("diskfull-out");
    let out = scratch.0.join("mnt");
    std::fs::create_dir_all(&out).unwrap();
    let Some(tmpfs) = Tmpfs::mount(&out, "2m") else {
        return skip(TEST, "mount -t tmpfs failed (no CAP_SYS_ADMIN?)");
    };

    let seed_addr = std::net::SocketAddr::from((ip(250), free_port(ip(250))));
    let seed_args = [
        s("seed"),
        payload.display().to_string(),
        s("--bind"),
        seed_addr.to_string(),
        s("--no-dht"),
        s("--no-lsd"),
        s("--piece-length"),
        s(65_536),
    ];
    let mut seeder = Proc::kadswarm("kadswarm seed", &seed_args);
    let magnet = seeder.wait_magnet();
    seeder.wait_tcp_listening(seed_addr);

    let get = |name: &str| {
        let bind = std::net::SocketAddr::from((ip(251), free_port(ip(251))));
        let mut args = get_args(&magnet, &out, bind);
        args.extend([s("--peer"), seed_addr.to_string(), s("--no-dht"), s("--no-lsd")]);
        Proc::kadswarm(name, &args)
    };

    // First run: the 2 MiB fill up long before the 8 MiB are in.
    let mut first = get("kadswarm get (disk full)");
    let status = first.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "a full disk must exit 1\n{}", first.dump());
    let errors: Vec<String> = first.stderr_lines().into_iter().filter(|l| l.starts_with("kadswarm: error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected\n{}", first.dump());
    assert!(
        errors[0].starts_with("kadswarm: error: writing ") && errors[0].ends_with(": No space left on device"),
        "the error does not name the write and the disk error: {}",
        errors[0]
    );
    assert!(done_event(&first).is_none(), "a download onto a full disk claimed to be done");
    seeder.assert_running();

    // Room again: the re-run keeps what was written and verified, and fetches the rest.
    tmpfs.resize("32m");
    let mut second = get("kadswarm get (resumed)");
    let status = second.wait_exit(TRANSFER_LIMIT);
    assert_eq!(status.code(), Some(0), "the re-run did not complete\n{}", second.dump());
    let events = second.events();
    let checked = events.iter().find(|e| e["event"] == "checked").expect("a checked event");
    let have = checked["have_pieces"].as_u64().expect("have_pieces");
    let pieces = checked["pieces"].as_u64().expect("pieces");
    assert!(have >= 1, "no piece of the first run survived: {checked}");
    assert!(have < pieces, "the first run cannot have fit every piece: {checked}");
    let done = done_event(&second).expect("a done event");
    assert_eq!(done["fetched_pieces"].as_u64(), Some(pieces - have), "pieces fetched again: {done}");
    assert_same_tree(&payload, &out.join("payload"));
    drop(tmpfs);
}
