//! Top-level layout: top bar, model library (left), prompt bar and graphs (bottom), lanes.

use super::{App, Command};
use crate::ui::panels;

impl App {
    /// Draws the window.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        ctx.set_theme(if self.state.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        if let Some(p) = &self.rt.dialogs.scene_problems {
            let mut cmds = Vec::new();
            panels::scene::problems_ui(&ctx, p, self.rt.tasks.scene.is_some(), &mut cmds);
            self.rt.pending.extend(cmds);
        }
        let presenter = self
            .state
            .scene
            .as_ref()
            .is_some_and(|s| s.arena.on && s.arena.presenter);
        if presenter {
            // The whole window for the answers and the votes.
            egui::Panel::top("presenter_bar").show(ui, |ui| {
                ui.horizontal(|ui| {
                    if ui.small_button("Leave presenter view").clicked() {
                        self.rt
                            .pending
                            .push(Command::Arena(crate::ui::app::scene::ArenaCommand::Presenter));
                    }
                });
            });
            egui::CentralPanel::default().show(ui, |ui| {
                let mut cmds = Vec::new();
                panels::scene::arena_ui(ui, self, &mut cmds);
                self.rt.pending.extend(cmds);
            });
            return;
        }
        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar_ui(ui));
        // The arena drives the prompts itself, and the library and lab name adapters: hidden
        // while it runs, so nothing on screen tells the stacks apart.
        let arena = self.arena_on();
        if self.state.show_library && !arena {
            let mut cmds = Vec::new();
            egui::Panel::left("library")
                .resizable(true)
                .default_size(crate::ui::theme::LIBRARY_WIDTH)
                .min_size(230.0)
                .show(ui, |ui| {
                    panels::library::library_ui(ui, &self.state, &self.rt, &mut cmds)
                });
            self.rt.pending.extend(cmds);
        }
        if self.state.lab.show && !arena {
            let compare = self.compare_lanes();
            let mut cmds = Vec::new();
            // At most half the window, so the lanes stay readable beside it.
            let max = (ui.available_width() * 0.5).max(380.0);
            egui::Panel::right("lab")
                .resizable(true)
                .default_size(crate::ui::theme::LAB_WIDTH.min(max))
                .min_size(360.0)
                .max_size(max)
                .show(ui, |ui| {
                    panels::lab::lab_ui(ui, &mut self.state, &self.rt, compare, &mut cmds)
                });
            self.rt.pending.extend(cmds);
        }
        if !arena {
            egui::Panel::bottom("prompt_bar").show(ui, |ui| {
                let busy = self.run_waits();
                let mut cmds = Vec::new();
                panels::prompt::prompt_ui(ui, &mut self.state, busy, &mut cmds);
                self.rt.pending.extend(cmds);
            });
        }
        if self.state.show_graphs && !self.state.lanes.is_empty() {
            egui::Panel::bottom("graphs")
                .resizable(true)
                .default_size(crate::ui::theme::GRAPHS_HEIGHT)
                .min_size(180.0)
                .show(ui, |ui| panels::graphs::graphs_ui(ui, &self.state, &self.rt));
        }
        if let Some(d) = &mut self.rt.dialogs.remote {
            let mut cmds = Vec::new();
            let can_add = self.state.lanes.len() < crate::ui::state::MAX_LANES;
            panels::remote::remote_dialog_ui(&ctx, d, can_add, &mut cmds);
            self.rt.pending.extend(cmds);
        }
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(msg) = self.rt.banner.clone() {
                if panels::banner_ui(ui, &msg) {
                    self.rt.pending.push(Command::DismissBanner);
                }
            }
            if let Some(msg) = self.rt.notice.clone() {
                if panels::notice_ui(ui, &msg) {
                    self.rt.pending.push(Command::DismissNotice);
                }
            }
            if let Some(t) = &self.rt.tasks.scene {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak(&t.what);
                });
            }
            if self.arena_on() {
                let mut cmds = Vec::new();
                panels::scene::arena_ui(ui, self, &mut cmds);
                self.rt.pending.extend(cmds);
            } else if self.state.lanes.is_empty()
                || !self.state.lanes.iter().any(crate::ui::state::State::runnable) && self.rt.engine.jobs.is_empty()
            {
                let mut cmds = Vec::new();
                panels::welcome::welcome_ui(ui, &self.rt, &mut cmds);
                self.rt.pending.extend(cmds);
            } else {
                let mut cmds = Vec::new();
                // Lanes narrower than their content scroll sideways instead of drawing over
                // the panels beside them.
                let rects = egui::ScrollArea::horizontal()
                    .id_salt("lanes_scroll")
                    .show(ui, |ui| {
                        panels::lanes::lanes_ui(ui, &mut self.state, &self.rt, &mut cmds)
                    })
                    .inner;
                self.rt.lanes.rects = rects;
                self.rt.pending.extend(cmds);
            }
        });
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("nanolab");
            ui.separator();
            ui.toggle_value(&mut self.state.show_library, "Library")
                .on_hover_text("Show or hide the model library");
            ui.toggle_value(&mut self.state.show_graphs, "Graphs")
                .on_hover_text("Show or hide latency, throughput and memory graphs");
            ui.toggle_value(&mut self.state.lab.show, "Lab")
                .on_hover_text("Compare lanes token by token, make and measure a quantization ladder, run prompt sets");
            let theme = if self.state.dark { "Light theme" } else { "Dark theme" };
            if ui
                .button(theme)
                .on_hover_text("Switch between dark and light")
                .clicked()
            {
                self.state.dark = !self.state.dark;
            }
            ui.separator();
            if ui.button("Open scene…").on_hover_text("Open a scene file: lanes, adapters, devices and prompts, every file checked by sha256").clicked() {
                self.rt.pending.push(Command::OpenSceneDialog);
            }
            if ui.button("Save scene…").on_hover_text("Save the lanes, adapters (with scales), devices, prompts and arena votes as one scene file").clicked() {
                self.rt.pending.push(Command::SaveSceneDialog);
            }
            let mut arena = self.arena_on();
            if ui
                .toggle_value(&mut arena, "Arena")
                .on_hover_text("Blind A/B: the lanes' answers as A, B, … in a shuffled order, names hidden until the vote (keys 1-4, space)")
                .clicked()
            {
                self.rt.pending.push(Command::Arena(crate::ui::app::scene::ArenaCommand::Toggle));
            }
            if self.arena_on() && ui.button("Presenter view").on_hover_text("The whole window, large text, only the votes").clicked() {
                self.rt.pending.push(Command::Arena(crate::ui::app::scene::ArenaCommand::Presenter));
            }
            ui.separator();
            self.serving_ui(ui);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let engine = match self.rt.engine.client.pid() {
                    Some(pid) => format!("engine pid {pid}"),
                    None => "engine idle".to_string(),
                };
                let restarts = self.rt.engine.client.restarts();
                let label = if restarts > 0 {
                    format!("{engine} (restarted {restarts} times)")
                } else {
                    engine
                };
                ui.weak(label).on_hover_text(format!(
                    "llama.cpp runs in a separate process so a crash never takes the window down.\n{}",
                    self.rt.engine.client.system_info()
                ));
            });
        });
    }

    fn serving_ui(&mut self, ui: &mut egui::Ui) {
        match &self.rt.tasks.serving {
            None => {
                if ui
                    .button("Serve lanes")
                    .on_hover_text(
                        "Serve the lanes over the OpenAI API on 127.0.0.1 (lane-1, lane-2, … with their stacks), \
                         for apps and tools to call; a separate engine runs the requests",
                    )
                    .clicked()
                {
                    self.rt.pending.push(Command::ServeLanes);
                }
            }
            Some(s) => {
                if ui.button("Stop serving").clicked() {
                    self.rt.pending.push(Command::StopServing);
                }
                match &s.url {
                    Some(url) => {
                        ui.label(format!("serving at {url}/v1")).on_hover_text(format!(
                            "Models: {}. Served by its own engine: requests appear in the Served requests graph, not in these lanes",
                            s.names.join(", ")
                        ));
                        match s.served.last() {
                            Some((1, _)) => ui.label("1 request answered"),
                            Some((n, _)) => ui.label(format!("{n} requests answered")),
                            None => ui.weak("no requests yet"),
                        };
                    }
                    None => {
                        ui.weak("starting the server…");
                    }
                }
            }
        }
    }
}
