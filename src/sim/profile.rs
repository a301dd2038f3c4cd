//! Device profiles: TOML files in `assets/devices/` (and the user's own), every number with a
//! source. A malformed profile gets an error naming the file and the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which OS thermal API the device mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    /// Android `PowerManager` thermal status 0-6.
    Android,
    /// iOS `ProcessInfo.ThermalState` nominal/fair/serious/critical.
    Ios,
    /// A desktop or board without an OS thermal API (Android-style status for display).
    Other,
}

/// Kind of accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Neural processing unit.
    Npu,
    /// GPU.
    Gpu,
    /// CPU cores.
    Cpu,
}

/// One compute unit (or runtime on it) of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    /// Id used on the command line (`gpu`, `npu`, `gpu-mlx`, …).
    pub id: String,
    /// Kind.
    pub kind: Kind,
    /// Effective compute for prefill, TFLOPS (2 FLOPs per parameter per token).
    pub compute_tflops: f64,
    /// Effective memory bandwidth seen by decode, GB/s.
    pub bandwidth_gbs: f64,
    /// Power while generating at full clock, W.
    pub power_w: f64,
    /// DVFS steps: at or above `[temp_c, factor]`, performance and power scale by `factor`.
    pub dvfs: Vec<[f64; 2]>,
}

/// The device's lumped thermal model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thermal {
    /// Heat capacity, J/K.
    pub heat_capacity_j_per_k: f64,
    /// Thermal resistance to ambient, K/W.
    pub resistance_k_per_w: f64,
    /// Ambient temperature, °C.
    pub ambient_c: f64,
    /// Power when not generating, W.
    pub idle_power_w: f64,
    /// A DVFS step is left only when the temperature falls this far below its threshold, K.
    pub hysteresis_c: f64,
    /// Temperatures (°C) at which the OS thermal state rises: Android status 1-6, iOS fair/serious/critical.
    pub state_thresholds_c: Vec<f64>,
}

/// Where a number comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Field path (`thermal.resistance_k_per_w`, `accelerators.gpu.bandwidth_gbs`).
    pub field: String,
    /// The source, or how the number was derived.
    pub text: String,
    /// Computed or fitted from other numbers rather than read from a source.
    #[serde(default)]
    pub derived: bool,
}

/// A device profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// Id (`pixel-9-pro`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// OS thermal API mirrored.
    pub os: Os,
    /// Memory an app can use, GiB.
    pub app_memory_gib: f64,
    /// Accelerators in routing preference order.
    pub accelerators: Vec<Accelerator>,
    /// Thermal model.
    pub thermal: Thermal,
    /// Power budget for routing: accelerators above it are avoided once the device is warm, W.
    pub power_budget_w: f64,
    /// Sources for every number.
    pub sources: Vec<Source>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not readable.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Not valid TOML or wrong fields.
    #[error("{path}: {detail}")]
    Parse {
        /// File.
        path: PathBuf,
        /// toml's message (names the field and line).
        detail: String,
    },
    /// Values that make no sense.
    #[error("{path}: field {field}: {detail}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Field.
        field: String,
        /// Why.
        detail: String,
    },
}

impl DeviceProfile {
    /// Parses and validates a profile.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ProfileError> {
        let p: DeviceProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string().trim().replace('\n', " "),
        })?;
        p.validate(path)?;
        Ok(p)
    }

    fn validate(&self, path: &Path) -> Result<(), ProfileError> {
        let bad = |field: &str, detail: &str| ProfileError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            detail: detail.to_string(),
        };
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field, &format!("must be a positive number, got {v}")))
            }
        };
        positive("app_memory_gib", self.app_memory_gib)?;
        positive("power_budget_w", self.power_budget_w)?;
        positive("thermal.heat_capacity_j_per_k", self.thermal.heat_capacity_j_per_k)?;
        positive("thermal.resistance_k_per_w", self.thermal.resistance_k_per_w)?;
        if self.accelerators.is_empty() {
            return Err(bad("accelerators", "at least one accelerator is needed"));
        }
        for a in &self.accelerators {
            let f = |name: &str| format!("accelerators.{}.{name}", a.id);
            positive(&f("compute_tflops"), a.compute_tflops)?;
            positive(&f("bandwidth_gbs"), a.bandwidth_gbs)?;
            positive(&f("power_w"), a.power_w)?;
            let mut last_t = f64::NEG_INFINITY;
            let mut last_f = 1.0;
            for [t, factor] in &a.dvfs {
                if *t <= last_t || *factor > last_f || *factor <= 0.0 {
                    return Err(bad(
                        &f("dvfs"),
                        "steps must rise in temperature and fall in factor (0-1]",
                    ));
                }
                last_t = *t;
                last_f = *factor;
            }
        }
        let n_states = if self.os == Os::Ios { 3 } else { 6 };
        if self.thermal.state_thresholds_c.len() != n_states
            || self.thermal.state_thresholds_c.windows(2).any(|w| w[1] <= w[0])
        {
            return Err(bad(
                "thermal.state_thresholds_c",
                &format!("needs {n_states} rising temperatures for this OS"),
            ));
        }
        Ok(())
    }

    /// Fields that must each have a source.
    pub fn numeric_fields(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "app_memory_gib",
            "power_budget_w",
            "thermal.heat_capacity_j_per_k",
            "thermal.resistance_k_per_w",
            "thermal.ambient_c",
            "thermal.idle_power_w",
            "thermal.hysteresis_c",
            "thermal.state_thresholds_c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in &self.accelerators {
            for f in ["compute_tflops", "bandwidth_gbs", "power_w", "dvfs"] {
                v.push(format!("accelerators.{}.{f}", a.id));
            }
        }
        v
    }

    /// Fields without a source.
    pub fn unsourced(&self) -> Vec<String> {
        self.numeric_fields()
            .into_iter()
            .filter(|f| !self.sources.iter().any(|s| &s.field == f && !s.text.trim().is_empty()))
            .collect()
    }

    /// An accelerator by id.
    pub fn accelerator(&self, id: &str) -> Option<&Accelerator> {
        self.accelerators.iter().find(|a| a.id == id)
    }
}

/// Profiles shipped with nanolab (compiled in, so the binary works from any folder).
pub const BUILTIN: &[(&str, &str)] = &[
    ("pixel-8.toml", include_str!("../../assets/devices/pixel-8.toml")),
    (
        "pixel-9-pro.toml",
        include_str!("../../assets/devices/pixel-9-pro.toml"),
    ),
    (
        "galaxy-s24-ultra.toml",
        include_str!("../../assets/devices/galaxy-s24-ultra.toml"),
    ),
    (
        "iphone-15-pro.toml",
        include_str!("../../assets/devices/iphone-15-pro.toml"),
    ),
    (
        "iphone-17-pro.toml",
        include_str!("../../assets/devices/iphone-17-pro.toml"),
    ),
    (
        "raspberry-pi-5.toml",
        include_str!("../../assets/devices/raspberry-pi-5.toml"),
    ),
];

/// The user's profile folder: `$NANOLAB_DEVICES`, else `devices/` in the config folder.
pub fn user_dir() -> PathBuf {
    crate::paths::config_path("NANOLAB_DEVICES", "devices")
}

/// Every profile: shipped ones, then the user's (`*.toml` in [`user_dir`]). Broken user files
/// are returned as errors beside the good profiles.
pub fn all() -> (Vec<DeviceProfile>, Vec<ProfileError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in BUILTIN {
        match DeviceProfile::parse(&PathBuf::from("assets/devices").join(name), text) {
            Ok(p) => ok.push(p),
            Err(e) => errors.push(e),
        }
    }
    if let Ok(rd) = std::fs::read_dir(user_dir()) {
        let mut paths: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            match load(&p) {
                Ok(profile) => ok.push(profile),
                Err(e) => errors.push(e),
            }
        }
    }
    (ok, errors)
}

/// Loads one profile file.
pub fn load(path: &Path) -> Result<DeviceProfile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    DeviceProfile::parse(path, &text)
}
