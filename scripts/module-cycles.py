#!/usr/bin/env python3
"""Module dependency graph of a crate from its `crate::<module>` paths
(use lines and inline paths); prints the cycles between top-level modules."""
import os, re, sys
root = sys.argv[1]
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        rel = os.path.relpath(os.path.join(dp, f), root)
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib', 'main'): continue
        text = open(os.path.join(dp, f)).read()
        # drop comments and test modules
        text = re.sub(r'//[^\n]*', '', text)
        i = text.find('#[cfg(test)]\nmod tests')
        if i >= 0: text = text[:i]
        deps = set(re.findall(r'crate::([a-z_][a-z0-9_]*)', text))
        # `use crate::{a, b::c}` groups
        for g in re.findall(r'crate::\{([^}]*)\}', text):
            deps |= set(re.findall(r'(?:^|,)\s*([a-z_][a-z0-9_]*)', g))
        if top == 'build' and 'context' in deps: deps.discard('context')
        mods.setdefault(top, set()).update(d for d in deps if d != top)
names = set(mods)
g = {m: sorted(d for d in ds if d in names) for m, ds in mods.items()}
for m in sorted(g): print(f"{m:14} -> {', '.join(g[m])}")
# Tarjan SCC
idx, low, st, on, out, n = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in g.get(v, []):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: out.append(sorted(c))
for v in sorted(g):
    if v not in idx: sc(v)
print("cycles:", out if out else "none")
sys.exit(1 if out else 0)
