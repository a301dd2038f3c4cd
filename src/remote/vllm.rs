//! vLLM loads adapters while it runs when started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`:
//! a vLLM lane's adapter given as the path of a PEFT folder (`adapter_config.json` +
//! `adapter_model.safetensors`, what `nanolab adapters export --peft` writes) that the server
//! does not serve yet is loaded through `/v1/load_lora_adapter` under the folder's name, and is
//! then served as a model of that name. vLLM reads the folder itself, so the path must be one
//! the server sees (the same machine, or a shared disk).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{file_stem, post_json, status_error, EndpointInfo, RemoteError, ServerKind};
use crate::protocol::{AdapterSpec, RemoteSpec};

/// The adapters of a lane that vLLM should load: PEFT folders it does not serve, by name.
pub(super) fn to_load(info: &EndpointInfo, remote: &RemoteSpec, adapters: &[AdapterSpec]) -> Vec<(String, PathBuf)> {
    if info.kind != ServerKind::Vllm {
        return Vec::new();
    }
    adapters
        .iter()
        .filter(|a| is_peft_folder(&a.path))
        .filter_map(|a| {
            let name = file_stem(a.path.to_str()?).to_string();
            let served = info
                .models
                .iter()
                .any(|m| m.id == name && m.parent.as_deref().is_none_or(|p| p == remote.model));
            let path = std::fs::canonicalize(&a.path).unwrap_or_else(|_| a.path.clone());
            (!served).then_some((name, path))
        })
        .collect()
}

fn is_peft_folder(p: &Path) -> bool {
    p.is_dir() && p.join("adapter_config.json").is_file()
}

/// Loads each of `wanted` into the vLLM at `info.url`; true if any was loaded (probe again).
pub(super) fn load(info: &EndpointInfo, wanted: &[(String, PathBuf)], key: Option<&str>) -> Result<bool, RemoteError> {
    let url = format!("{}/v1/load_lora_adapter", info.url);
    for (name, path) in wanted {
        let body = json!({"lora_name": name, "lora_path": path.display().to_string()});
        let (status, text) = post_json(&url, &body, key)?;
        match status {
            s if s < 400 => {}
            404 | 405 => {
                return Err(RemoteError::Unsupported(format!(
                    "vLLM at {} does not load adapters while it runs (no /v1/load_lora_adapter): start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or serve {name} with --lora-modules {name}={}",
                    info.url,
                    path.display()
                )))
            }
            s => return Err(status_error(&url, s, &text, None)),
        }
    }
    Ok(!wanted.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteModel;

    #[test]
    fn only_peft_folders_vllm_does_not_serve_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let folder = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("adapter_config.json"), "{}").unwrap();
            p
        };
        let (new, served) = (folder("caps-peft"), folder("brief-peft"));
        let not_peft = dir.path().join("empty");
        std::fs::create_dir(&not_peft).unwrap();
        let info = |kind| EndpointInfo {
            url: "http://h".into(),
            kind,
            models: vec![
                RemoteModel {
                    id: "base".into(),
                    parent: None,
                },
                RemoteModel {
                    id: "brief-peft".into(),
                    parent: Some("base".into()),
                },
            ],
            adapters: Vec::new(),
        };
        let remote = RemoteSpec {
            url: "http://h".into(),
            model: "base".into(),
            api_key_env: None,
        };
        let a = |path: &Path| AdapterSpec {
            path: path.to_path_buf(),
            scale: 1.0,
        };
        let lane = [a(&new), a(&served), a(&not_peft), a(Path::new("smollm2-caps"))];
        let wanted = to_load(&info(ServerKind::Vllm), &remote, &lane);
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        assert_eq!(wanted[0].0, "caps-peft");
        assert!(wanted[0].1.is_absolute());
        assert!(to_load(&info(ServerKind::LlamaServer), &remote, &lane).is_empty());
    }
}
