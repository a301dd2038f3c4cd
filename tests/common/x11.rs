//! Helpers for tests that run the real window as a process under Xvfb (no egui in the test).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nanolab::ui::state;

/// Child processes killed and reaped when the test ends, passed or not.
pub struct Killer(pub Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts Xvfb on `display` (1280x800) and gives it a second to come up.
pub fn xvfb(display: &str) -> Child {
    let child = Command::new("Xvfb")
        .args([display, "-screen", "0", "1280x800x24"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (scripts/setup.sh --test installs it)");
    std::thread::sleep(Duration::from_secs(1));
    child
}

/// Clicks "Run all", at the bottom right of the 1280x800 window (see screenshots/).
pub fn click_run_all(display: &str) {
    click(display, 1185, 758);
}

/// Clicks at `x`, `y` of the screen (the window fills it at 0, 0).
pub fn click(display: &str, x: u32, y: u32) {
    let click = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["mousemove", &x.to_string(), &y.to_string(), "click", "1"])
        .status()
        .expect("xdotool (scripts/setup.sh --test installs it)");
    assert!(click.success());
}

/// Waits up to 90 s for the window's state file to hold a state for which `f` is true.
pub fn wait_state(path: &Path, what: &str, f: impl Fn(&state::State) -> bool) -> state::State {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(s) = serde_json::from_str::<state::State>(&text) {
                if f(&s) {
                    return s;
                }
            }
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks the window named "nanolab" on `display` to close, as a window manager's close button
/// does (a WM_DELETE_WINDOW client message; Xvfb runs no window manager to send it).
pub fn close_window(display: &str) {
    let found = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["search", "--name", "^nanolab$"])
        .output()
        .expect("xdotool (scripts/setup.sh --test installs it)");
    let id = String::from_utf8_lossy(&found.stdout)
        .split_whitespace()
        .next()
        .expect("the nanolab window")
        .to_string();
    // python3-xlib comes from the system's packages (scripts/setup.sh --test).
    let script = "import sys\n\
        from Xlib import X, display\n\
        from Xlib.protocol import event\n\
        d = display.Display(sys.argv[1])\n\
        w = d.create_resource_object('window', int(sys.argv[2]))\n\
        msg = event.ClientMessage(window=w, client_type=d.intern_atom('WM_PROTOCOLS'),\n\
            data=(32, [d.intern_atom('WM_DELETE_WINDOW'), X.CurrentTime, 0, 0, 0]))\n\
        w.send_event(msg, event_mask=X.NoEventMask)\n\
        d.flush()\n";
    let sent = Command::new("/usr/bin/python3")
        .args(["-c", script, display, &id])
        .status()
        .expect("/usr/bin/python3 with python3-xlib");
    assert!(sent.success(), "WM_DELETE_WINDOW not sent");
}
