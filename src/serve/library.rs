//! What `nanolab serve` serves: base models by file stem and adapters by name, and the parsing of
//! model names `BASE+ADAPTER[:SCALE][+ADAPTER[:SCALE]]…`. A name is only ever matched against
//! files found in the models and adapters folders; it is never joined onto a path, so no name
//! can reach a file outside them.

use std::path::{Path, PathBuf};

use crate::adapters::registry::Registry;
use crate::gguf::GgufFile;
use crate::protocol::{AdapterSpec, LaneAlias};

use super::openai::ApiError;

/// A base model being served.
#[derive(Debug, Clone)]
pub struct BaseModel {
    /// Its name in the API (the file stem, as `models list` shows it).
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Its GGUF header, for adapter compatibility checks.
    pub header: GgufFile,
    /// Seconds since the epoch of the file's mtime (OpenAI's `created`).
    pub created: u64,
}

/// One adapter file the server can apply.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterFile {
    /// Its name: the file stem.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// A lane alias resolved: the base model's index and its checked stack.
#[derive(Debug, Clone)]
struct Alias {
    name: String,
    base: usize,
    adapters: Vec<AdapterSpec>,
}

/// The models and adapter folders, read at start (models) and on each lookup (adapters, so
/// files added while the server runs are found), and the lane aliases.
pub struct Library {
    models: Vec<BaseModel>,
    registry: Registry,
    aliases: Vec<Alias>,
}

/// A parsed model name.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelName {
    /// The base model's name.
    pub base: String,
    /// Adapter names with their scales, in order.
    pub adapters: Vec<(String, f32)>,
}

/// Parses `BASE+ADAPTER[:SCALE]…`; names may hold letters, digits, `.`, `_` and `-` only.
pub fn parse_model_name(name: &str) -> Result<ModelName, ApiError> {
    let mut parts = name.split('+');
    let base = parts.next().unwrap_or_default();
    check_name(base, "model")?;
    let mut adapters = Vec::new();
    for part in parts {
        let (adapter, scale) = match part.rsplit_once(':') {
            Some((a, s)) => {
                let scale: f32 = s.parse().map_err(|_| {
                    ApiError::invalid(
                        Some("model"),
                        format!("adapter scale {s:?} in {name:?} is not a number"),
                    )
                })?;
                if !scale.is_finite() {
                    return Err(ApiError::invalid(
                        Some("model"),
                        format!("adapter scale {s:?} in {name:?} is not finite"),
                    ));
                }
                (a, scale)
            }
            None => (part, 1.0),
        };
        check_name(adapter, "adapter")?;
        adapters.push((adapter.to_string(), scale));
    }
    Ok(ModelName {
        base: base.to_string(),
        adapters,
    })
}

fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            Some("model"),
            format!("{what} name {name:?} is not a file stem (letters, digits, '.', '_', '-' only; no paths)"),
        ))
    }
}

fn mtime_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Library {
    /// Reads and checks every model file and every lane alias (its model joins the served
    /// models, its adapters must fit it); a file that is not usable is an error.
    pub fn open(model_files: &[PathBuf], lanes: &[LaneAlias], registry: Registry) -> anyhow::Result<Self> {
        let mut models: Vec<BaseModel> = Vec::new();
        let mut files: Vec<PathBuf> = model_files.to_vec();
        for l in lanes {
            if !files.contains(&l.model) {
                files.push(l.model.clone());
            }
        }
        for path in &files {
            let header = crate::gguf::validate_model_file(path).map_err(anyhow::Error::msg)?;
            let id = stem(path);
            if models.iter().any(|m| m.id == id) {
                anyhow::bail!("two models are named {id:?}; serve one of them");
            }
            models.push(BaseModel {
                id,
                path: path.clone(),
                header,
                created: mtime_secs(path),
            });
        }
        let mut aliases: Vec<Alias> = Vec::new();
        for l in lanes {
            check_name(&l.name, "lane").map_err(|e| anyhow::anyhow!(e.message))?;
            if models.iter().any(|m| m.id == l.name) || aliases.iter().any(|a| a.name == l.name) {
                anyhow::bail!("the lane name {:?} is used twice", l.name);
            }
            let base = models.iter().position(|m| m.path == l.model).unwrap_or_default();
            for a in &l.adapters {
                crate::adapters::validate_adapter_file(&a.path, &models[base].header).map_err(anyhow::Error::msg)?;
            }
            aliases.push(Alias {
                name: l.name.clone(),
                base,
                adapters: l.adapters.clone(),
            });
        }
        Ok(Self {
            models,
            registry,
            aliases,
        })
    }

    /// Lane aliases: name, base model and stack, in the order given.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &BaseModel, &[AdapterSpec])> {
        self.aliases
            .iter()
            .map(|a| (a.name.as_str(), &self.models[a.base], a.adapters.as_slice()))
    }

    /// A lane alias by name: its base model's index and its stack.
    pub fn alias(&self, name: &str) -> Option<(usize, Vec<AdapterSpec>)> {
        self.aliases
            .iter()
            .find(|a| a.name == name)
            .map(|a| (a.base, a.adapters.clone()))
    }

    /// The base models, in the order given.
    pub fn models(&self) -> &[BaseModel] {
        &self.models
    }

    /// A base model by name, with its index (the engine lane it runs on).
    pub fn model(&self, id: &str) -> Result<(usize, &BaseModel), ApiError> {
        self.models.iter().enumerate().find(|(_, m)| m.id == id).ok_or_else(|| {
            let names: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            ApiError::unknown_model(format!(
                "the model {id:?} does not exist; served models: {}",
                names.join(", ")
            ))
        })
    }

    /// Every adapter file in the registry's folders, sorted by path (the ids of
    /// `GET /lora-adapters`).
    pub fn adapter_files(&self) -> Vec<AdapterFile> {
        let mut v: Vec<AdapterFile> = Vec::new();
        for folder in self.registry.folders() {
            let Ok(rd) = std::fs::read_dir(&folder) else { continue };
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                if p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) {
                    v.push(AdapterFile {
                        name: stem(&p),
                        path: p,
                    });
                }
            }
        }
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v.dedup();
        v
    }

    /// Adapters that fit `base` (compatibility checked from the headers).
    pub fn fitting_adapters(&self, base: &BaseModel) -> Vec<AdapterFile> {
        self.adapter_files()
            .into_iter()
            .filter(|a| crate::adapters::validate_adapter_file(&a.path, &base.header).is_ok())
            .collect()
    }

    /// Static adapters pinned to `base` in the registry.
    pub fn static_pins(&self, base: &BaseModel) -> Vec<PathBuf> {
        self.registry.static_for(&base.path)
    }

    /// Resolves adapter names to files and checks each fits the base.
    pub fn resolve_adapters(&self, base: &BaseModel, names: &[(String, f32)]) -> Result<Vec<AdapterSpec>, ApiError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let files = self.adapter_files();
        let mut out = Vec::new();
        for (name, scale) in names {
            let Some(file) = files.iter().find(|f| &f.name == name) else {
                let known: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
                return Err(ApiError::unknown_model(format!(
                    "no adapter named {name:?} in the adapter folders; known: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            self.check_fits(base, &file.path)?;
            out.push(AdapterSpec {
                path: file.path.clone(),
                scale: *scale,
            });
        }
        Ok(out)
    }

    /// The compatibility message as a 400 when an adapter does not fit the base.
    pub fn check_fits(&self, base: &BaseModel, adapter: &Path) -> Result<(), ApiError> {
        crate::adapters::validate_adapter_file(adapter, &base.header)
            .map(|_| ())
            .map_err(|e| ApiError {
                code: Some("adapter_incompatible"),
                ..ApiError::invalid(Some("model"), format!("{e} (base model {})", base.id))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_scales_and_refuse_paths() {
        let n = parse_model_name("SmolLM2-135M-Instruct.Q4_1+smollm2-caps:0.5+brief").unwrap();
        assert_eq!(n.base, "SmolLM2-135M-Instruct.Q4_1");
        assert_eq!(
            n.adapters,
            vec![("smollm2-caps".to_string(), 0.5), ("brief".to_string(), 1.0)]
        );
        for bad in [
            "../etc/passwd",
            "a+../x",
            "a+/tmp/x",
            "a+..",
            "",
            "a+",
            "a+b:nan",
            "a+b:x",
            "a/b",
        ] {
            let e = parse_model_name(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
