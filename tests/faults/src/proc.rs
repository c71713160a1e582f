//! Running binaries with a time limit (a hung stage fails the test instead of the CI job),
//! and killing them without warning.

use std::fs::File;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A finished run: exit code, output, wall time.
#[derive(Debug)]
pub struct Finished {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

impl Finished {
    /// Panics with the run's stderr unless it exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: exit code {:?}, expected {code}; stderr:\n{}",
            self.code,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to the end (killed and failed after `limit`), capturing stdout and stderr.
pub fn run(cmd: &mut Command, limit: Duration) -> Finished {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let status = match wait_for(&mut child, limit) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
    };
    Finished {
        code: status.code(),
        stdout: String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default()).into_owned(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
}

/// SIGKILLs `child` (no chance to clean up) and reaps it.
pub fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping a killed child");
}
