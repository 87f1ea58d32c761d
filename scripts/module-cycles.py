#!/usr/bin/env python3
"""Module dependency graph of a crate from its paths to other modules
(`crate::`, `super::`, `self::` and child-module paths, in use lines and
inline; test modules left out); fails on a cycle.

    scripts/module-cycles.py SRC-DIR [--depth N] [--files] [-v]

Depth 1 compares the top-level modules; depth N also compares, at each
level up to N, the sibling modules under one parent (`engine::containers`
with `engine::ops`), a directory module standing for all its files.
--files also compares every file's module with every other, leaving out
a module's edges to its own ancestors and descendants. A path to an item resolves to the longest module
prefix it names. -v prints the edges."""
import os, re, sys

args = [a for a in sys.argv[1:] if not a.startswith('-')]
root = args[0]
depth = 1
if '--depth' in sys.argv:
    depth = int(sys.argv[sys.argv.index('--depth') + 1])
    args.remove(str(depth))
verbose = '-v' in sys.argv

files = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'):
            continue
        rel = os.path.relpath(os.path.join(dp, f), root)[:-3].split(os.sep)
        if rel[-1] == 'mod':
            rel = rel[:-1]
        if rel in (['lib'], ['main']):
            rel = []
        files['::'.join(rel)] = os.path.join(dp, f)
mods = set(files)


def strip(text):
    text = re.sub(r'//[^\n]*', '', text)
    i = text.find('#[cfg(test)]\nmod tests')
    return text[:i] if i >= 0 else text


def paths(text):
    out = []
    # `prefix::{a, b::c}` groups (one level)
    for m in re.finditer(r'((?:[a-z_][a-z0-9_]*::)+)\{([^{}]*)\}', text):
        out += [m.group(1) + p.strip() for p in m.group(2).split(',') if p.strip()]
    out += re.findall(r'(?<![A-Za-z0-9_:])((?:[a-z_][a-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*)', text)
    return out


edges = {}
for m, fn in files.items():
    segs = m.split('::') if m else []
    for p in paths(strip(open(fn).read())):
        s = p.split('::')
        if s[0] == 'crate':
            base, s = [], s[1:]
        elif s[0] == 'super':
            base = segs[:]
            while s and s[0] == 'super':
                base, s = base[:-1], s[1:]
        elif s[0] == 'self':
            base, s = segs[:], s[1:]
        elif '::'.join(segs + [s[0]]) in mods:
            base = segs[:]
        else:
            continue
        full = base + s
        for k in range(len(full), -1, -1):
            t = '::'.join(full[:k])
            if t in mods:
                if t != m:
                    edges.setdefault(m, set()).add(t)
                break


def sccs(g):
    idx, low, st, on, out, n = {}, {}, [], set(), [], [0]

    def sc(v):
        idx[v] = low[v] = n[0]
        n[0] += 1
        st.append(v)
        on.add(v)
        for w in sorted(g.get(v, [])):
            if w not in idx:
                sc(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            c = []
            while True:
                w = st.pop()
                on.discard(w)
                c.append(w)
                if w == v:
                    break
            if len(c) > 1:
                out.append(sorted(c))

    for v in sorted(g):
        if v not in idx:
            sc(v)
    return out


bad = False
for d in range(1, depth + 1):
    g = {}
    for a, ts in edges.items():
        for b in ts:
            if not a or not b:
                continue
            ca, cb = '::'.join(a.split('::')[:d]), '::'.join(b.split('::')[:d])
            # siblings under one parent only; the rest is seen a level up
            if ca != cb and ca.split('::')[:-1] == cb.split('::')[:-1]:
                g.setdefault(ca, set()).add(cb)
    if verbose:
        for a in sorted(g):
            print(f"{a:26} -> {', '.join(sorted(g[a]))}")
    cycles = sccs(g)
    print(f"depth {d} cycles:", cycles if cycles else "none")
    bad |= bool(cycles)
if '--files' in sys.argv:
    def related(a, b):
        return a == b or b.startswith(a + '::') or a.startswith(b + '::')
    g = {a: {b for b in ts if a and b and not related(a, b)} for a, ts in edges.items()}
    if verbose:
        for a in sorted(g):
            print(f"{a:26} -> {', '.join(sorted(g[a]))}")
    cycles = sccs(g)
    print("file-level cycles:", cycles if cycles else "none")
    bad |= bool(cycles)
sys.exit(1 if bad else 0)
