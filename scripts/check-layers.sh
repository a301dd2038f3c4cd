#!/usr/bin/env bash
# Checks that the module graph of src/ is one-way (no dependency cycles between top-level modules)
# and that the layer rules hold:
#   * `ui` and `cli` never import each other (the binary, src/main.rs, is the only place with both);
#   * `ui`, `serve` and `lab` sit side by side: `ui` and `serve` never import each other, and `lab`
#     (the headless workflows both front ends drive) imports none of `ui`, `serve`, `cli`;
#   * `gguf`, `metrics`, `paths`, `protocol` and `process` are leaves: they import only each other;
#   * only `engine` names `llama_cpp_2` / `llama_cpp_sys_2`;
#   * nothing below `ui` names `egui` / `eframe` (or an `egui_*` crate).
# A file belongs to its top-level module: src/foo.rs and src/foo/** are `foo`; src/main.rs is `main`.
# Edges come from every `crate::foo` path (`use crate::{foo, bar}` too, and `super::` chains that climb
# out of a module) in code; comments, doc comments and string literals are ignored.
# Also checks that ARCHITECTURE.md has a line for every file of src/.
# Prints each offending file:line and exits 1 on a violation; prints the layers on success.
# Needs only python3. Usage: scripts/check-layers.sh [SRC_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# ARCHITECTURE.md keeps a line for every file of src/.
if [[ -z "${1:-}" ]]; then
  missing=$(find src -name '*.rs' | sort | while read -r f; do grep -qF "\`$f\`" ARCHITECTURE.md || echo "  $f"; done)
  if [[ -n "$missing" ]]; then
    printf 'check-layers: ARCHITECTURE.md has no line for:\n%s\n' "$missing" >&2
    exit 1
  fi
fi
# Files by concern: none over 600 lines (architecture issue, item 5).
long=$(find src -name '*.rs' -exec wc -l {} + | awk '$2 != "total" && $1 > 600 {print "  " $2 ": " $1 " lines"}')
if [ -n "$long" ]; then
  echo "check-layers: files over 600 lines (split them by concern):" >&2
  echo "$long" >&2
  exit 1
fi

exec python3 - "${1:-src}" <<'PY'
import os
import re
import sys

SRC = sys.argv[1]
LEAVES = {"gguf", "metrics", "paths", "protocol", "process"}
LLAMA_OK = {"engine"}
SIBLINGS = {("ui", "serve"), ("serve", "ui"), ("lab", "ui"), ("lab", "serve"), ("lab", "cli"), ("serve", "cli")}
EGUI_OK = {"ui", "main"}


def strip(text):
    """Blanks out comments and string/char literals, keeping newlines (so line numbers hold)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            m = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'").match(text, i)
            if m:  # a char literal; otherwise a lifetime or label, left as is
                out.append(blank(m.group(0)))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_path(rel):
    """src-relative file -> module path: foo.rs -> [foo], foo/mod.rs -> [foo], foo/bar.rs -> [foo, bar]."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def group_items(code, open_brace):
    """Top-level items of `{...}` starting at open_brace: [(first identifier, offset)]."""
    depth, j, start, items = 0, open_brace, open_brace + 1, []
    while j < len(code):
        ch = code[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(start)
                break
        elif ch == "," and depth == 1:
            items.append(start)
            start = j + 1
        j += 1
    result = []
    for s in items:
        m = re.compile(r"\s*([A-Za-z_]\w*)").match(code, s)
        if m:
            result.append((m.group(1), m.start(1)))
    return result


files = []
for root, _dirs, names in os.walk(SRC):
    for name in names:
        if name.endswith(".rs"):
            files.append(os.path.join(root, name))
files.sort()

top_modules = set()
for f in files:
    rel = os.path.relpath(f, SRC)
    if rel not in ("lib.rs", "main.rs"):
        top_modules.add(module_path(rel)[0])

edges = {}  # (from, to) -> [file:line]
violations = []
nodes = set()

CRATE = re.compile(r"(?<![\w$:])(crate|nanolab)::")
SUPER = re.compile(r"(?<![\w$:])((?:super::)+)")
LLAMA = re.compile(r"\b(llama_cpp_2|llama_cpp_sys_2)\b")
EGUI = re.compile(r"\b(egui(?:_[a-z0-9_]+)?|eframe)\b")

for f in files:
    rel = os.path.relpath(f, SRC)
    if rel == "lib.rs":
        continue
    if rel == "main.rs":
        me, path = "main", []
    else:
        path = module_path(rel)
        me = path[0]
    nodes.add(me)
    with open(f, encoding="utf-8") as fh:
        code = strip(fh.read())

    def line_of(pos):
        return code.count("\n", 0, pos) + 1

    def add(target, pos):
        if target in top_modules and target != me:
            edges.setdefault((me, target), []).append(f"{f}:{line_of(pos)}")

    for m in CRATE.finditer(code):
        if m.group(1) == "nanolab" and me != "main":
            continue
        k = m.end()
        while k < len(code) and code[k] in " \t\n":
            k += 1
        if k < len(code) and code[k] == "{":
            for ident, pos in group_items(code, k):
                add(ident, pos)
        else:
            mm = re.compile(r"[A-Za-z_]\w*").match(code, k)
            if mm:
                add(mm.group(0), mm.start())
    for m in SUPER.finditer(code):
        ups = m.group(1).count("super::")
        if me == "main" or ups < len(path):
            continue  # stays inside this top-level module
        mm = re.compile(r"[A-Za-z_]\w*").match(code, m.end())
        if mm:
            add(mm.group(0), mm.start())
    if me not in LLAMA_OK:
        for m in LLAMA.finditer(code):
            violations.append(f"{f}:{line_of(m.start())}: `{me}` names {m.group(1)} (only engine may link llama.cpp)")
    if me not in EGUI_OK:
        for m in EGUI.finditer(code):
            violations.append(f"{f}:{line_of(m.start())}: `{me}` names {m.group(1)} (only ui may use egui)")

graph = {n: set() for n in nodes | top_modules}
for (a, b) in edges:
    graph[a].add(b)

for (a, b), where in sorted(edges.items()):
    if {a, b} == {"ui", "cli"}:
        for w in where:
            violations.append(f"{w}: `{a}` imports `{b}` (ui and cli are siblings; only main.rs sees both)")
    if (a, b) in SIBLINGS:
        for w in where:
            violations.append(f"{w}: `{a}` imports `{b}` (`{a}` must not depend on the front end `{b}`)")
    if a in LEAVES and b not in LEAVES:
        for w in where:
            violations.append(f"{w}: `{a}` imports `{b}` (`{a}` is a leaf: it may use only {', '.join(sorted(LEAVES))})")

# Strongly connected components (Tarjan); any with more than one module is a cycle.
index, low, on_stack, stack, sccs, counter = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = set()
        while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.add(w)
            if w == v:
                break
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        visit(v)
for comp in sccs:
    if len(comp) > 1:
        names = ", ".join(sorted(comp))
        for (a, b), where in sorted(edges.items()):
            if a in comp and b in comp:
                for w in where:
                    violations.append(f"{w}: `{a}` imports `{b}` (cycle among {names})")

if violations:
    print("check-layers: the module graph breaks the layer rules:", file=sys.stderr)
    for v in violations:
        print("  " + v, file=sys.stderr)
    sys.exit(1)

# Floors: a module sits one floor above the highest module it imports.
floor = {}


def floor_of(v):
    if v not in floor:
        floor[v] = 1 + max((floor_of(w) for w in graph[v]), default=0)
    return floor[v]


for v in graph:
    floor_of(v)
print("check-layers: one-way module graph; layers, top to bottom:")
for f in sorted(set(floor.values()), reverse=True):
    members = sorted(v for v in floor if floor[v] == f)
    deps = sorted({w for v in members for w in graph[v]})
    print(f"  {f}: {', '.join(members)}" + (f"  (uses {', '.join(deps)})" if deps else ""))
PY

