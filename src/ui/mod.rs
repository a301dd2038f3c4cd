//! The window (egui). Work in progress.
pub mod screenshot {
    pub fn capture(_out: &std::path::Path, _model: Option<std::path::PathBuf>) -> anyhow::Result<()> {
        anyhow::bail!("todo")
    }
}
pub fn run(_model: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
