"""Step 2: train a rank-8 LoRA (q/k/v/o projections) on the demo model for one target, on CPU,
and save it as Hugging Face PEFT writes it (adapter_config.json + adapter_model.safetensors).
nanolab's own importer then converts the folder to GGUF (see adapters/README.md).
Usage: python train.py MODEL_DIR GGUF_NAME DATA_JSON TARGET OUT_DIR [STEPS]"""
import json
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    model_dir, gguf_name, data_path, target, out_dir = sys.argv[1:6]
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else 120
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_name, torch_dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.print_trainable_parameters()
    rows = json.load(open(data_path))
    examples = []
    for r in rows:
        # The exact text nanolab's engine feeds the model for --chat (llama.cpp's built-in ChatML
        # template, which does not add the Jinja template's default system message).
        prompt = f"<|im_start|>user\n{r['prompt']}<|im_end|>\n<|im_start|>assistant\n"
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(r[target] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        examples.append((p_ids, a_ids))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    t0 = time.time()
    for step in range(steps):
        batch = random.sample(examples, 4)
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((4, width), tok.pad_token_id or 0)
        labels = torch.full((4, width), -100)
        mask = torch.zeros((4, width), dtype=torch.long)
        for i, (p, a) in enumerate(batch):
            seq = p + a
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(p): len(seq)] = torch.tensor(a)  # loss only on the answer
            mask[i, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"{target} step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.save_pretrained(out_dir)
    # Keep local paths out of the shipped config.
    cfg_path = f"{out_dir}/adapter_config.json"
    c = json.load(open(cfg_path))
    c["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    json.dump(c, open(cfg_path, "w"), indent=2)


if __name__ == "__main__":
    main()
