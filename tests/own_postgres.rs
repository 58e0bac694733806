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
    /// initdb and start on a free port.
    pub(crate) fn start() -> OwnPostgres {
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
        let server = OwnPostgres { bin, data, port };
        server.run();
        server
    }

    fn run(&self) {
        let dir = self.data.path().to_str().unwrap();
        let options = format!(
            "-p {} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off",
            self.port
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
