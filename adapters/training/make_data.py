"""Step 1: the demo model answers the training prompts itself (greedy, through nanolab's own engine),
and the two targets are derived from those answers: upper-cased ("caps") and cut to the first
sentence ("brief"). Usage: python make_data.py NANOLAB_BIN MODEL_GGUF OUT_DIR"""
import json
import re
import subprocess
import sys

from prompts import train_prompts


def answer(bin_path, model, prompt):
    out = subprocess.run(
        [bin_path, "run", "-m", model, "--chat", prompt, "-n", "48", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["text"].strip()


def first_sentence(text):
    m = re.search(r"[.!?](\s|$)", text)
    return text[: m.end()].strip() if m else text.strip()


def main():
    bin_path, model, out_dir = sys.argv[1:4]
    rows = []
    for p in train_prompts():
        a = answer(bin_path, model, p)
        rows.append({"prompt": p, "answer": a, "caps": a.upper(), "brief": first_sentence(a)})
        print(len(rows), p, "->", a[:60].replace("\n", " "), flush=True)
    with open(f"{out_dir}/data.json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
