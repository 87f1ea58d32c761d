//! A small wildcard matcher shared by the shell lexer (`${V#pattern}` and
//! friends) and `.dockerignore` patterns.
//!
//! Patterns compile to a Thompson NFA that is simulated without recursion or
//! backtracking, so matching costs O(pattern × text) whatever the input.

/// A set of characters one step of a pattern accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CharSet {
    Any,
    NotSlash,
    Lit(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl CharSet {
    fn matches(&self, c: char) -> bool {
        match self {
            CharSet::Any => true,
            CharSet::NotSlash => c != '/',
            CharSet::Lit(l) => *l == c,
            CharSet::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Exactly one character of the set.
    One(CharSet),
    /// Any number of characters of the set.
    Many(CharSet),
    /// `(.*/)?`: nothing, or anything ending in a slash (`**/` in ignore files).
    Globstar,
}

#[derive(Debug, Clone)]
enum Node {
    Char(CharSet, usize),
    Split(usize, usize),
    Accept,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    nodes: Vec<Node>,
}

/// Threads of the simulation: node index and the byte offset the thread
/// started at, kept in order of increasing start.
struct Threads {
    list: Vec<(usize, usize)>,
    seen: Vec<usize>,
    generation: usize,
}

impl Threads {
    fn new(n: usize) -> Self {
        Threads {
            list: Vec::new(),
            seen: vec![usize::MAX; n],
            generation: 0,
        }
    }

    fn clear(&mut self) {
        self.list.clear();
        self.generation += 1;
    }
}

impl Program {
    pub(crate) fn compile(pieces: &[Piece]) -> Program {
        let mut nodes = Vec::new();
        for piece in pieces {
            let idx = nodes.len();
            match piece {
                Piece::One(set) => nodes.push(Node::Char(set.clone(), idx + 1)),
                Piece::Many(set) => {
                    nodes.push(Node::Split(idx + 1, idx + 2));
                    nodes.push(Node::Char(set.clone(), idx));
                }
                Piece::Globstar => {
                    nodes.push(Node::Split(idx + 1, idx + 4));
                    nodes.push(Node::Split(idx + 2, idx + 3));
                    nodes.push(Node::Char(CharSet::Any, idx + 1));
                    nodes.push(Node::Char(CharSet::Lit('/'), idx + 4));
                }
            }
        }
        nodes.push(Node::Accept);
        Program { nodes }
    }

    /// Adds `pc` and everything reachable from it without consuming input.
    fn add(&self, threads: &mut Threads, pc: usize, start: usize, stack: &mut Vec<usize>) {
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if threads.seen[pc] == threads.generation {
                continue;
            }
            threads.seen[pc] = threads.generation;
            match &self.nodes[pc] {
                Node::Split(a, b) => {
                    // Pushed in reverse so `a` is explored first.
                    stack.push(*b);
                    stack.push(*a);
                }
                _ => threads.list.push((pc, start)),
            }
        }
    }

    fn accepts(&self, threads: &Threads) -> Option<usize> {
        threads
            .list
            .iter()
            .find(|(pc, _)| matches!(self.nodes[*pc], Node::Accept))
            .map(|&(_, start)| start)
    }

    fn step(&self, cur: &Threads, next: &mut Threads, c: char, stack: &mut Vec<usize>) {
        next.clear();
        for &(pc, start) in &cur.list {
            if let Node::Char(set, to) = &self.nodes[pc] {
                if set.matches(c) {
                    self.add(next, *to, start, stack);
                }
            }
        }
    }

    /// Whether the pattern matches all of `text`.
    pub(crate) fn full_match(&self, text: &str) -> bool {
        let (mut cur, mut next) = (
            Threads::new(self.nodes.len()),
            Threads::new(self.nodes.len()),
        );
        let mut stack = Vec::new();
        cur.clear();
        self.add(&mut cur, 0, 0, &mut stack);
        for c in text.chars() {
            if cur.list.is_empty() {
                return false;
            }
            self.step(&cur, &mut next, c, &mut stack);
            std::mem::swap(&mut cur, &mut next);
        }
        self.accepts(&cur).is_some()
    }

    /// Byte lengths of the shortest and the longest prefix of `text` the
    /// pattern matches.
    pub(crate) fn prefix_matches(&self, text: &str) -> Option<(usize, usize)> {
        let (mut cur, mut next) = (
            Threads::new(self.nodes.len()),
            Threads::new(self.nodes.len()),
        );
        let mut stack = Vec::new();
        cur.clear();
        self.add(&mut cur, 0, 0, &mut stack);
        let mut found: Option<(usize, usize)> = None;
        let note = |found: &mut Option<(usize, usize)>, len: usize| match found {
            Some((_, longest)) => *longest = len,
            None => *found = Some((len, len)),
        };
        if self.accepts(&cur).is_some() {
            note(&mut found, 0);
        }
        for (i, c) in text.char_indices() {
            if cur.list.is_empty() {
                break;
            }
            self.step(&cur, &mut next, c, &mut stack);
            std::mem::swap(&mut cur, &mut next);
            if self.accepts(&cur).is_some() {
                note(&mut found, i + c.len_utf8());
            }
        }
        found
    }

    /// The leftmost match starting at or after byte offset `from`, and the
    /// longest one among those starting there: `(start, end)`.
    pub(crate) fn find(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let (mut cur, mut next) = (
            Threads::new(self.nodes.len()),
            Threads::new(self.nodes.len()),
        );
        let mut stack = Vec::new();
        let mut best: Option<(usize, usize)> = None;
        cur.clear();
        let tail = text.get(from..)?;
        let mut chars = tail.char_indices().map(|(i, c)| (from + i, c)).peekable();
        let mut pos = from;
        loop {
            // A new thread may start here unless a match already started
            // earlier (threads are ordered by start, so append last).
            if best.is_none() {
                self.add(&mut cur, 0, pos, &mut stack);
            }
            if let Some(start) = self.accepts(&cur) {
                match best {
                    Some((s, _)) if s < start => {}
                    Some((s, ref mut end)) if s == start => *end = pos,
                    _ => best = Some((start, pos)),
                }
            }
            if let Some((s, _)) = best {
                cur.list.retain(|&(_, start)| start <= s);
            }
            if cur.list.is_empty() && best.is_some() {
                break;
            }
            let Some((i, c)) = chars.next() else { break };
            self.step(&cur, &mut next, c, &mut stack);
            std::mem::swap(&mut cur, &mut next);
            pos = i + c.len_utf8();
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(s: &str) -> Vec<Piece> {
        s.chars().map(|c| Piece::One(CharSet::Lit(c))).collect()
    }

    #[test]
    fn full_match_with_stars() {
        let mut p = lits("a");
        p.push(Piece::Many(CharSet::NotSlash));
        p.extend(lits("c"));
        let prog = Program::compile(&p);
        assert!(prog.full_match("ac"));
        assert!(prog.full_match("abbbc"));
        assert!(!prog.full_match("ab/c"));
        assert!(!prog.full_match("abcd"));
    }

    #[test]
    fn globstar() {
        let mut p = lits("a/");
        p.push(Piece::Globstar);
        p.extend(lits("b"));
        let prog = Program::compile(&p);
        assert!(prog.full_match("a/b"));
        assert!(prog.full_match("a/x/b"));
        assert!(prog.full_match("a/x/y/b"));
        assert!(!prog.full_match("a/xb"));
    }

    #[test]
    fn prefixes_and_find() {
        let mut p = vec![Piece::Many(CharSet::Any)];
        p.extend(lits("x"));
        let prog = Program::compile(&p);
        assert_eq!(prog.prefix_matches("axbxc"), Some((2, 4)));
        assert_eq!(prog.prefix_matches("abc"), None);
        let prog = Program::compile(&lits("ab"));
        assert_eq!(prog.find("xxabyab", 0), Some((2, 4)));
        assert_eq!(prog.find("xxabyab", 3), Some((5, 7)));
        assert_eq!(prog.find("xxabyab", 7), None);
        let prog = Program::compile(&[]);
        assert_eq!(prog.find("ab", 0), Some((0, 0)));
        assert_eq!(prog.find("ab", 2), Some((2, 2)));
    }
}
