//! Sizes and colours the panels share, in one place: panel sizes in points, and the colour
//! ramps that mark token probability and KL divergence in both themes.

use egui::Color32;

/// Library panel (left), default width.
pub const LIBRARY_WIDTH: f32 = 260.0;
/// Lab panel (right), default width before it is clamped to the window.
pub const LAB_WIDTH: f32 = 540.0;
/// Graphs panel (bottom), default height.
pub const GRAPHS_HEIGHT: f32 = 220.0;
/// Combo boxes and progress bars in a lane or the lab.
pub const CONTROL_WIDTH: f32 = 220.0;
/// Wider pickers and progress bars in the lab's quality tab.
pub const WIDE_CONTROL_WIDTH: f32 = 260.0;
/// Room kept right of the prompt box for Run all and Stop.
pub const PROMPT_BUTTONS_WIDTH: f32 = 170.0;

/// KL values of the colour legend, nats.
pub const KL_LEGEND: [f64; 5] = [0.01, 0.1, 0.5, 1.0, 3.0];

/// Background for a token by its KL(A||B), on a log scale: none below 0.01 nats, pale yellow
/// around 0.05, orange around 0.5, red from 5 up.
pub fn kl_colour(kl: f64, dark: bool) -> Color32 {
    if kl < 0.01 {
        return Color32::TRANSPARENT;
    }
    let t = ((kl / 0.01).log10() / 500f64.log10()).clamp(0.0, 1.0) as f32;
    let lerp = |a: f32, b: f32| (a + (b - a) * t) as u8;
    if dark {
        Color32::from_rgb(lerp(70.0, 200.0), lerp(64.0, 40.0), lerp(20.0, 30.0))
    } else {
        Color32::from_rgb(lerp(255.0, 240.0), lerp(246.0, 80.0), lerp(190.0, 60.0))
    }
}

/// Background for a token by its probability: warm when unlikely, none when certain.
pub fn prob_colour(p: f32, dark: bool) -> Color32 {
    let a = ((1.0 - p).clamp(0.0, 1.0) * 160.0) as u8;
    if dark {
        Color32::from_rgba_unmultiplied(220, 90, 40, a)
    } else {
        Color32::from_rgba_unmultiplied(255, 140, 60, a)
    }
}
