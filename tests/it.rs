//! Every integration test in one binary, a module per area (one link of llama.cpp instead of
//! one per file). `cargo test --release --test it AREA::` runs one area.

mod common;
mod corpus;

mod adapters;
mod adapters_out;
mod arch_fixtures;
mod bad_input_corpus;
mod bench;
mod cli_bad_input;
mod demo_adapters;
mod engine;
mod engine_together;
mod eval;
mod models_fetch;
mod no_network;
mod quant_faults;
mod remote;
mod scene;
mod serve;
mod sim;
mod soak;
mod ui;
mod ui_lab;
mod ui_scene;
mod ui_state;
mod window_kill;
