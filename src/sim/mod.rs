//! The device and thermal simulator: what a model, quant and adapter stack would do on a phone
//! over time. No UI; fed from real model numbers.

mod calibration;
pub mod chart;
pub mod facts;
pub mod live;
pub mod model;
pub mod profile;

pub use model::{fit, project, sustained, ModelFacts, SustainedReport, Workload};
pub use profile::{DeviceProfile, ProfileError};
