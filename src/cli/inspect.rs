//! `nanolab inspect FILE`.

use crate::gguf::{self, FileKind, Summary};
use crate::metrics::mib;

use super::InspectArgs;

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let file = gguf::read(&args.file)?;
    let s = Summary::of(&file);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    print!("{}", render(&s));
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Human-readable summary.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let kind = match s.kind {
        FileKind::Model => "model",
        FileKind::Adapter => "adapter",
        FileKind::ControlVector => "control vector",
    };
    out += &format!("{}  ({kind}, GGUF v{})\n", s.path, s.gguf_version);
    out += &format!("  name            {}\n", opt(s.name.as_deref()));
    out += &format!("  architecture    {}\n", opt(s.architecture.as_deref()));
    out += &format!(
        "  parameters      {} ({:.1} M)\n",
        s.parameters,
        s.parameters as f64 / 1e6
    );
    out += &format!("  file size       {} ({} bytes)\n", mib(s.file_bytes), s.file_bytes);
    out += &format!(
        "  quantization    {}  ({:.2} bits per weight)\n",
        s.quant_label(),
        s.bits_per_weight
    );
    if s.kind == FileKind::Model {
        out += &format!("  context length  {}\n", opt(s.context_length));
        out += &format!(
            "  shape           n_embd {}, layers {}, heads {}, kv heads {}\n",
            opt(s.embedding_length),
            opt(s.block_count),
            opt(s.head_count),
            opt(s.head_count_kv)
        );
        out += &format!(
            "  tokenizer       {} (vocab {})\n",
            opt(s.tokenizer.as_deref()),
            opt(s.vocab_size)
        );
        out += &format!("  chat template   {}\n", if s.has_chat_template { "yes" } else { "no" });
    }
    out += &format!(
        "  tensors         {}   metadata keys {}\n",
        s.tensor_count, s.metadata_count
    );
    out += "  quant mix (by bytes)\n";
    for q in &s.quant_mix {
        out += &format!(
            "    {:<8} {:>5.1}%  {:>10}  {} tensors\n",
            q.ggml_type,
            q.fraction * 100.0,
            mib(q.bytes),
            q.tensors
        );
    }
    if let Some(a) = &s.adapter {
        out += &format!("  adapter type    {}\n", opt(a.adapter_type.as_deref()));
        out += &format!("  alpha           {}\n", opt(a.alpha));
        out += &format!(
            "  rank(s)         {}\n",
            a.ranks.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
        out += &format!("  base model      {}\n", opt(a.base_model.as_deref()));
        let kinds: std::collections::BTreeSet<&str> =
            a.targets.iter().filter_map(|t| t.split('.').rev().nth(1)).collect();
        out += &format!(
            "  targets         {} tensors ({})\n",
            a.targets.len(),
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        );
        if !a.alora_invocation_tokens.is_empty() {
            out += &format!("  aLoRA invocation tokens {:?}\n", a.alora_invocation_tokens);
        }
    }
    out
}
