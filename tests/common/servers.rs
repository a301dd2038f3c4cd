//! Real servers started by the tests on 127.0.0.1 with free ports: `nanolab serve` and
//! llama.cpp's llama-server (built from the same tree as `scripts/llama-tools.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `nanolab serve` child with its adapters folder and registry in a temporary directory.
pub struct Server {
    pub child: Child,
    pub addr: String,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, |_| {})
    }

    /// Starts a server; `prepare` may add files to the adapters folder (`dir/adapters`).
    pub fn start_with(extra: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let adapters = dir.path().join("adapters");
        std::fs::create_dir(&adapters).unwrap();
        std::fs::copy(super::caps_adapter(), adapters.join("smollm2-caps.gguf")).unwrap();
        prepare(dir.path());
        let mut child = Command::new(super::exe())
            .args(["-v", "serve", "--port", "0", "--model"])
            .arg(super::demo_model())
            .args(extra)
            .env("NANOLAB_REGISTRY", dir.path().join("registry.json"))
            .env("NANOLAB_ADAPTERS", &adapters)
            .env("NANOLAB_DEVICES", dir.path().join("devices"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("server did not start: {first:?}\n{}", stderr.lock().unwrap()))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        Server {
            child,
            addr,
            stderr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A llama-server child on the demo model with the demo adapters loaded unapplied.
pub struct LlamaServer {
    pub child: Child,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// llama-server's path (`NANOLAB_LLAMA_SERVER` overrides the build under target/).
pub fn llama_server_exe() -> PathBuf {
    super::llama_tool("llama-server", "NANOLAB_LLAMA_SERVER")
}

impl LlamaServer {
    /// Starts llama-server with `--lora ADAPTER --lora-init-without-apply` for each of
    /// `adapters` and waits for `/health`.
    pub fn start(adapters: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("llama-server.log");
        let mut cmd = Command::new(llama_server_exe());
        cmd.arg("-m")
            .arg(super::demo_model())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-t",
                "1",
                "-c",
                "2048",
                "-np",
                "2",
            ])
            .args(["--lora-init-without-apply", "--no-webui"]);
        // Loaded the way nanolab loads it (see `weight_repacking`).
        if !nanolab::engine::weight_repacking() {
            cmd.arg("--no-repack");
        }
        for a in adapters {
            cmd.arg("--lora").arg(a);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let up = super::wait_for(Duration::from_secs(60), || {
            let ok = agent
                .get(&format!("{}/health", s.url))
                .call()
                .is_ok_and(|r| r.status() == 200);
            ok.then_some(())
        });
        assert!(up.is_some(), "llama-server did not come up:\n{}", s.log());
        s
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
