//! Helpers of the binary's tests: the `fugue` binary as a child process. The helpers the
//! server's tests share with these live in `fugue-testkit`.

pub use fugue_testkit::fakes;
pub use fugue_testkit::totp::{totp_code_in, wait_for_fresh_totp_step};
pub use fugue_testkit::{assert_problem, federated_pair, login_with};

/// The `fugue` binary under test, with every `FUGUE_*` variable, `RUST_LOG` and
/// `XDG_CONFIG_HOME` of the test environment removed and stdin closed, so only what a test
/// sets explicitly counts.
pub fn fugue() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fugue"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUGUE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null());
    cmd
}

/// [`fugue`] as a client of `server`, keeping its keys in `keystore`, with the test password.
pub fn fugue_as_client(server: &str, keystore: &std::path::Path) -> std::process::Command {
    let mut cmd = fugue();
    cmd.env("FUGUE_SERVER", server)
        .env("FUGUE_KEYSTORE", keystore)
        .env("FUGUE_PASSWORD", fugue_testkit::PASSWORD);
    cmd
}

/// Runs blocking process I/O off the runtime, which also serves the in-process servers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A long-running `fugue` child (`fugue events`) whose stdout lines arrive on a channel.
/// Killed and reaped on drop, so a failing test leaves no process behind (one left running
/// once held the cargo lock).
pub struct Watcher {
    child: std::process::Child,
    lines: Option<std::sync::mpsc::Receiver<String>>,
    /// Kept open while the child runs, so that its notices never fail to be written.
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl Watcher {
    /// Starts `cmd` and waits for the first line on its stderr, which must start with
    /// `banner` (for `fugue events`: it has connected and subscribed).
    pub async fn start(mut cmd: std::process::Command, banner: &str) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let _ = lines_tx.send(line.unwrap());
            }
        });
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        // The guard owns the child before anything can fail.
        let mut watcher = Self {
            child,
            lines: Some(lines),
            stderr: None,
        };
        let (stderr, first) = blocking(move || {
            let mut first = String::new();
            stderr.read_line(&mut first).unwrap();
            (stderr, first)
        })
        .await;
        watcher.stderr = Some(stderr);
        assert!(first.starts_with(banner), "{first}");
        watcher
    }

    /// The next line of stdout (at most 10 s away).
    pub async fn next(&mut self) -> String {
        self.until(|_| true).await.pop().unwrap()
    }

    /// The lines of stdout up to and including the first that `done` accepts (each at most
    /// 10 s after the one before).
    pub async fn until(&mut self, done: impl Fn(&str) -> bool + Send + 'static) -> Vec<String> {
        let lines = self.lines.take().unwrap();
        let (lines, seen) = blocking(move || {
            let mut seen: Vec<String> = Vec::new();
            while !seen.last().is_some_and(|l| done(l.as_str())) {
                match lines.recv_timeout(std::time::Duration::from_secs(10)) {
                    Ok(line) => seen.push(line),
                    Err(err) => panic!("no further line ({err}) after {seen:#?}"),
                }
            }
            (lines, seen)
        })
        .await;
        self.lines = Some(lines);
        seen
    }

    /// The child's stdin, when `cmd` had it piped.
    pub fn stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().unwrap()
    }

    /// SIGINT (Ctrl-C), then [`Watcher::wait`].
    pub async fn interrupt(self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        self.wait().await
    }

    /// Waits (at most 10 s) for the child to end; its exit status.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Still running: the test failed before it ended it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
