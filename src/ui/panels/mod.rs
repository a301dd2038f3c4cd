//! Panels of the window. Each draws from state and pushes [`Command`]s; none does work.

pub mod graphs;
pub mod lab;
mod lane_stats;
pub mod lanes;
pub mod library;
pub mod prompt;
pub mod remote;
pub mod scene;
pub mod welcome;

/// A dismissable notice (not an error); returns true when dismissed.
pub fn notice_ui(ui: &mut egui::Ui, message: &str) -> bool {
    let mut dismissed = false;
    ui.horizontal(|ui| {
        // Wrapped as the banner's is: a long notice on one line ran under the lab panel, and
        // its Dismiss button with it.
        ui.add(egui::Label::new(message).wrap());
        if ui.small_button("Dismiss").clicked() {
            dismissed = true;
        }
    });
    dismissed
}

/// A dismissable error banner; returns true when dismissed.
pub fn banner_ui(ui: &mut egui::Ui, message: &str) -> bool {
    let mut dismissed = false;
    egui::Frame::new()
        .fill(ui.visuals().error_fg_color.gamma_multiply(0.15))
        .stroke(egui::Stroke::new(1.0, ui.visuals().error_fg_color))
        .inner_margin(6.0)
        .corner_radius(4.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().error_fg_color, "Error");
                ui.add(egui::Label::new(message).wrap());
                if ui.small_button("Dismiss").on_hover_text("Hide this message").clicked() {
                    dismissed = true;
                }
            });
        });
    dismissed
}
