#!/usr/bin/env python3
"""The house's rules, checked from the source text:

1. no import circle: within each crate, the graph of modules (one node per source file) with an
   edge for every `use crate::…`, `use super::…` or path `crate::x::…` naming another module has
   no cycle (a module may use its own children and its parent's items freely only when that does
   not close a circle);
2. no function over MAX_FN_LINES lines outside tests.

Prints what breaks a rule and exits 1, or prints a summary and exits 0.
"""
import os
import re
import sys

MAX_FN_LINES = 120
CRATES = {"core": "core/src", "protocol": "protocol/src", "node": "node/src", "testkit": "testkit/src"}


def module_files(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            mods[tuple(rel)] = path
    return mods


def strip_tests(text):
    """The text without `#[cfg(test)]` items (a module or function that follows the attribute)."""
    out = []
    i = 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = text.find("{", j)
        semi = text.find(";", j)
        if k < 0 or (0 <= semi < k):
            i = semi + 1
            continue
        depth = 0
        m = k
        while m < len(text):
            if text[m] == "{":
                depth += 1
            elif text[m] == "}":
                depth -= 1
                if depth == 0:
                    break
            m += 1
        out.append("\n" * text[j:m + 1].count("\n"))
        i = m + 1
    return "".join(out)


def strip_comments_and_strings(text):
    """The text with comments removed and string and character literals emptied (lines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text[i:j].count("\n"))
            i = j
        elif c == "r" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and re.match(r'r#*"', text[i:]):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text[i:end].count("\n"))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text[i:j].count("\n"))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_paths(text):
    """Every path named by a `use` item or written inline as crate::a::b / super::a."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand(m.group(1).strip()))
    for m in re.finditer(r"(?<![:\w])((?:crate|super)(?:::\w+)+)", text):
        paths.append(m.group(1).split("::"))
    return paths


def expand(tree):
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        tree = re.sub(r"\bas\w+$", "", tree)
        return [tree.split("::")]
    head, rest = tree.split("{", 1)
    rest = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for c in rest:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        cur += c
    if cur:
        parts.append(cur)
    prefix = head[:-2].split("::") if head.endswith("::") else []
    out = []
    for p in parts:
        for sub in expand(p):
            out.append(prefix + [s for s in sub if s != "self"] if sub != ["self"] else prefix)
    return out


def resolve(path, here, mods):
    if not path:
        return None
    if path[0] == "crate":
        base, rest = [], path[1:]
    elif path[0] == "super":
        base = list(here)
        rest = path
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    else:
        return None
    best = tuple(base)
    cur = list(base)
    for seg in rest:
        cur.append(seg)
        if tuple(cur) in mods:
            best = tuple(cur)
        else:
            break
    return best


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def long_functions(path, text):
    found = []
    lines = text.split("\n")
    fn = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")
    for i, line in enumerate(lines):
        m = fn.match(line)
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            for c in lines[j]:
                if c == "{":
                    depth += 1
                    started = True
                elif c == "}":
                    depth -= 1
            if started and depth == 0:
                break
            if not started and lines[j].rstrip().endswith(";"):
                break
            j += 1
        if started and j - i + 1 > MAX_FN_LINES:
            found.append((path, i + 1, m.group(6), j - i + 1))
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    failures = 0
    total_edges = 0
    for crate, src in CRATES.items():
        src = os.path.join(root, src)
        if not os.path.isdir(src):
            continue
        mods = module_files(src)
        graph = {}
        for mod, path in mods.items():
            with open(path, encoding="utf-8") as f:
                text = strip_comments_and_strings(strip_tests(f.read()))
            for name, at, fname, n in long_functions(path, text):
                print(f"long function: {os.path.relpath(name, root)}:{at} {fname} is {n} lines (at most {MAX_FN_LINES})")
                failures += 1
            for p in use_paths(text):
                target = resolve(p, mod, mods)
                if target is None or target == mod:
                    continue
                # a module's own ancestors are its house: using a parent's items is not a circle
                # unless the parent uses the child back, which the cycle search reports.
                graph.setdefault(mod, set()).add(target)
        # an edge to an ancestor only counts when it names the ancestor's own items (always so here)
        for comp in cycles(graph):
            names = sorted("::".join(c) or "(crate root)" for c in comp)
            # a parent that declares `mod child;` and re-exports is not an import; we only record
            # `use` edges, so a cycle is a real circle
            print(f"import circle in {crate}: " + " <-> ".join(names))
            failures += 1
        total_edges += sum(len(v) for v in graph.values())
    if failures:
        print(f"{failures} rule(s) broken")
        sys.exit(1)
    print(f"architecture: no import circle ({total_edges} module edges), no function over {MAX_FN_LINES} lines")


if __name__ == "__main__":
    main()
