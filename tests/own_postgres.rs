//! A PostgreSQL server of the test's own (the installed server binaries,
//! run as the `postgres` user, since initdb refuses root), so a test can
//! restart it under load: `bench/chaos.sh` crashes it mid-run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server in a directory of its own, stopped when dropped.
pub(crate) struct OwnPostgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// `listen_addresses`: loopback, and whatever else a test gives.
    listen: String,
    /// Whether it serves TLS (and takes no other connection over TCP).
    tls: bool,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL version with pg_ctl")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(status.success(), "{tool} {args:?} failed");
}

impl OwnPostgres {
    /// initdb and start on a free port of loopback.
    pub(crate) fn start() -> OwnPostgres {
        OwnPostgres::start_listening(&[])
    }

    /// The same, listening on `also` as well (addresses a test made).
    pub(crate) fn start_listening(also: &[&str]) -> OwnPostgres {
        OwnPostgres::start_with(also, None)
    }

    /// Serving TLS with `cert` and `key` (PEM), and refusing any TCP
    /// client that does not use it.
    pub(crate) fn start_tls(cert: &Path, key: &Path) -> OwnPostgres {
        OwnPostgres::start_with(&[], Some((cert, key)))
    }

    fn start_with(also: &[&str], tls: Option<(&Path, &Path)>) -> OwnPostgres {
        let bin = bin_dir();
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(data.path())
            .status()
            .unwrap();
        assert!(status.success());
        let dir = data.path().to_str().unwrap().to_string();
        as_postgres(
            &bin,
            "initdb",
            &["-D", &dir, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        // Clients on the subnets of the extra addresses are trusted too.
        let hba = data.path().join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        for address in also {
            let subnet = address.rsplit_once('.').unwrap().0;
            rules.push_str(&format!("host all all {subnet}.0/24 trust\n"));
        }
        if let Some((cert, key)) = tls {
            // Over TCP, TLS only: `hostssl` lines, no `host` ones.
            rules =
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n"
                    .into();
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let target = data.path().join(to);
                std::fs::copy(from, &target).unwrap();
                let owner_only =
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
                std::fs::set_permissions(&target, owner_only).unwrap();
            }
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        std::fs::write(&hba, rules).unwrap();
        let listen = std::iter::once("127.0.0.1")
            .chain(also.iter().copied())
            .collect::<Vec<_>>()
            .join(",");
        let server = OwnPostgres {
            bin,
            data,
            port,
            listen,
            tls: tls.is_some(),
        };
        server.run();
        server
    }

    fn run(&self) {
        let dir = self.data.path().to_str().unwrap();
        let options = format!(
            "-p {} -k {dir} -c listen_addresses={} -c max_connections=400 -c fsync=off -c ssl={}",
            self.port,
            self.listen,
            if self.tls { "on" } else { "off" }
        );
        as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                dir,
                "-o",
                &options,
                "-l",
                &format!("{dir}/log"),
                "-w",
                "start",
            ],
        );
    }

    /// Its URL, on the `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id (the first line of `postmaster.pid`).
    pub(crate) fn postmaster_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.data.path().join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Crashes it (immediate shutdown: no checkpoint, as a power cut) and starts it again.
    pub(crate) fn crash_and_restart(&self) {
        let dir = self.data.path().to_str().unwrap();
        as_postgres(&self.bin, "pg_ctl", &["-D", dir, "-m", "immediate", "-w", "stop"]);
        self.run();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let dir = self.data.path().to_str().unwrap_or_default().to_string();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &dir, "-m", "immediate", "stop"])
            .status();
    }
}
