//! A located YAML node tree for the project file: every node keeps the line
//! and column it was written at, so a semantic error found after parsing
//! (unknown key, bad duration, cycle...) can name where it is.
//!
//! Events come from `granit-parser` (re-exported by `serde-saphyr`), the same
//! parser `nbpipe-params` builds parameter values with, so both agree on what
//! is valid YAML. This tree only describes *structure*: scalars keep their
//! text and whether they were plain; typing parameter values is left to
//! `nbpipe_params::parse_yaml` (YAML 1.1, like papermill). Aliases are
//! expanded and `<<` merge keys applied with PyYAML's precedence (a mapping's
//! own keys win, then earlier merge sources), so paths through this tree and
//! through the parsed parameter values lead to the same nodes.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 256;
/// Limit on nodes built, counting alias expansions ("billion laughs").
const MAX_NODES: usize = 1_000_000;

/// Where something is in the file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    pub line: usize,
    pub column: usize,
}

impl Loc {
    fn of(span: &Span) -> Loc {
        Loc {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A YAML node with its location.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub loc: Loc,
    /// The explicit tag (`!!str`, `!foo`...), as `handle` + `suffix`.
    pub tag: Option<String>,
    pub kind: Kind,
}

/// A node's content.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A scalar's text after escapes and folding; `plain` when unquoted.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Map),
}

/// A mapping after merge keys were applied.
#[derive(Debug, Clone, Default)]
pub(crate) struct Map {
    /// The effective entries: own keys in file order, then merged keys the
    /// mapping does not set itself.
    pub entries: Vec<(Node, Node)>,
    /// The first own key written twice, if any (PyYAML keeps the last value;
    /// the project schema rejects it).
    pub duplicate: Option<(String, Loc)>,
}

impl Node {
    /// The key text when this node is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// An untagged plain scalar that YAML reads as null (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        match &self.kind {
            Kind::Scalar { text, plain: true } => {
                self.tag.is_none() && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// `"a string"`, `"a list"`, `"a mapping"` for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Map {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v)
    }
}

/// A syntax error: the parser's message and where it happened.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

/// Parse one YAML document. An empty stream gives `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        last: Loc { line: 1, column: 1 },
    };
    match b.next()? {
        (Event::StreamStart, _) => {}
        (_, span) => return Err(b.err(Loc::of(&span), "expected the start of a YAML stream")),
    }
    let root = match b.next()? {
        (Event::StreamEnd, _) => return Ok(None),
        (Event::DocumentStart(..), _) => {
            let (ev, span) = b.next()?;
            let root = b.node(ev, span, 0)?;
            match b.next()? {
                (Event::DocumentEnd, _) => root,
                (_, span) => return Err(b.err(Loc::of(&span), "expected the end of the document")),
            }
        }
        (_, span) => return Err(b.err(Loc::of(&span), "expected a YAML document")),
    };
    match b.next()? {
        (Event::StreamEnd, _) => Ok(Some(root)),
        (_, span) => Err(b.err(
            Loc::of(&span),
            "expected a single YAML document, found another one (`---`)",
        )),
    }
}

struct Builder<'a> {
    parser: Parser<'a, StrInput<'a>>,
    /// Completed anchored nodes by anchor id.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    last: Loc,
}

fn full_tag(tag: Option<&Tag>) -> Option<String> {
    tag.map(|t| format!("{}{}", t.handle(), t.suffix()))
}

fn count(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(m) => {
            1 + m
                .entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
    }
}

/// `<<` as a key: a plain untagged `<<`, or anything tagged `!!merge`.
fn is_merge_key(n: &Node) -> bool {
    match (&n.kind, n.tag.as_deref()) {
        (_, Some("tag:yaml.org,2002:merge" | "!!merge")) => true,
        (Kind::Scalar { text, plain: true }, None) => text == "<<",
        _ => false,
    }
}

impl<'a> Builder<'a> {
    fn err(&self, loc: Loc, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            loc,
            message: message.into(),
        }
    }

    /// The next data event (comments and other presentation events skipped).
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        loop {
            match self.parser.next_event() {
                None => return Err(self.err(self.last, "unexpected end of the YAML text")),
                Some(Err(e)) => {
                    let m = e.marker();
                    let loc = Loc {
                        line: m.line(),
                        column: m.col() + 1,
                    };
                    return Err(self.err(loc, e.info()));
                }
                Some(Ok((ev, span))) => {
                    self.last = Loc::of(&span);
                    match ev {
                        Event::StreamStart
                        | Event::StreamEnd
                        | Event::DocumentStart(..)
                        | Event::DocumentEnd
                        | Event::Alias(_)
                        | Event::Scalar(..)
                        | Event::SequenceStart(..)
                        | Event::SequenceEnd
                        | Event::MappingStart(..)
                        | Event::MappingEnd => return Ok((ev, span)),
                        Event::UnresolvedAlias(name) => {
                            return Err(self.err(
                                Loc::of(&span),
                                format!("alias `*{name}` refers to no anchor defined before it"),
                            ))
                        }
                        _ => continue,
                    }
                }
            }
        }
    }

    fn counted(&mut self, n: usize, loc: Loc) -> Result<(), SyntaxError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(self.err(
                loc,
                "document too large (too many nodes after alias expansion)",
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), count(node)));
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let loc = Loc::of(&span);
        if depth > MAX_DEPTH {
            return Err(self.err(loc, "YAML nesting too deep"));
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.counted(1, loc)?;
                let node = Node {
                    loc,
                    tag: full_tag(tag.as_deref()),
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => {
                let Some((target, n)) = self.anchors.get(&id).cloned() else {
                    return Err(self.err(
                        loc,
                        "alias to an anchor that is not complete (recursive structures are not supported)",
                    ));
                };
                self.counted(n, loc)?;
                Ok(target)
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.counted(1, loc)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                let node = Node {
                    loc,
                    tag: full_tag(tag.as_deref()),
                    kind: Kind::Seq(items),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(_, anchor, tag) => {
                self.counted(1, loc)?;
                let map = self.mapping(depth)?;
                let node = Node {
                    loc,
                    tag: full_tag(tag.as_deref()),
                    kind: Kind::Map(map),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            _ => Err(self.err(loc, "unexpected YAML event")),
        }
    }

    /// A mapping's body after its start event.
    fn mapping(&mut self, depth: usize) -> Result<Map, SyntaxError> {
        let mut own: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        let mut duplicate = None;
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key = self.node(ev, span, depth + 1)?;
            let (ev, span) = self.next()?;
            let value = self.node(ev, span, depth + 1)?;
            if is_merge_key(&key) {
                // PyYAML: sources merge in order, a later `<<` overriding an
                // earlier one; within a list of sources the first wins.
                let sources = match value.kind {
                    Kind::Map(m) => vec![m],
                    Kind::Seq(items) => {
                        let mut maps = Vec::with_capacity(items.len());
                        for item in items {
                            match item.kind {
                                Kind::Map(m) => maps.push(m),
                                _ => return Err(self.err(item.loc, "`<<` merges only mappings")),
                            }
                        }
                        maps.reverse();
                        maps
                    }
                    _ => return Err(self.err(value.loc, "`<<` merges only mappings")),
                };
                for m in sources {
                    for (k, v) in m.entries {
                        set(&mut merged, k, v);
                    }
                }
                continue;
            }
            if let Kind::Scalar { text, .. } = &key.kind {
                let seen = own.iter().any(|(k, _)| k.scalar() == Some(text));
                if seen && duplicate.is_none() {
                    duplicate = Some((text.clone(), key.loc));
                }
            }
            set(&mut own, key, value);
        }
        for (k, v) in merged {
            if !own.iter().any(|(o, _)| same_key(o, &k)) {
                own.push((k, v));
            }
        }
        Ok(Map {
            entries: own,
            duplicate,
        })
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    matches!((a.scalar(), b.scalar()), (Some(x), Some(y)) if x == y)
}

/// Set `key` keeping the first position, taking the new value.
fn set(entries: &mut Vec<(Node, Node)>, key: Node, value: Node) {
    match entries.iter_mut().find(|(k, _)| same_key(k, &key)) {
        Some(slot) => slot.1 = value,
        None => entries.push((key, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let n = root("a: 1\nb:\n  - x\n  - {c: d}\n");
        let Kind::Map(m) = &n.kind else { panic!() };
        let b = m.get("b").unwrap();
        let Kind::Seq(items) = &b.kind else { panic!() };
        assert_eq!(items[0].loc, Loc { line: 3, column: 5 });
        let Kind::Map(inner) = &items[1].kind else {
            panic!()
        };
        assert_eq!(inner.entries[0].0.loc, Loc { line: 4, column: 6 });
    }

    #[test]
    fn merge_keys_follow_pyyaml_precedence() {
        let n = root("base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*o, *b]\n  x: 9\n");
        let Kind::Map(m) = &n.kind else { panic!() };
        let Kind::Map(mm) = &m.get("m").unwrap().kind else {
            panic!()
        };
        let get = |k: &str| mm.get(k).and_then(Node::scalar).map(str::to_owned);
        assert_eq!(get("x").as_deref(), Some("9"));
        assert_eq!(get("y").as_deref(), Some("3"));
        assert_eq!(get("z").as_deref(), Some("4"));
        assert!(mm.duplicate.is_none());
    }

    #[test]
    fn duplicate_own_keys_are_remembered() {
        let n = root("a: 1\nb: 2\na: 3\n");
        let Kind::Map(m) = &n.kind else { panic!() };
        assert_eq!(m.duplicate.as_ref().unwrap().1.line, 3);
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.loc.line >= 2, "{e:?}");
        let e = parse("a: *nope\n").unwrap_err();
        assert_eq!(e.loc.line, 1, "{e:?}");
    }

    #[test]
    fn empty_text_is_no_document() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }
}
