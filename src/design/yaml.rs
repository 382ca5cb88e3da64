//! A YAML tree that remembers where every node came from, and a serde
//! deserializer over it.
//!
//! serde_yaml reports only the first error and forgets positions once a value
//! is parsed; validation needs the line of every field it complains about and
//! every unknown key at once, so the design loader parses into this tree first.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;
/// Aliases can multiply a small file into a huge tree ("billion laughs").
const MAX_NODES: usize = 1_000_000;

pub use crate::error::Span;

#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    /// Text and whether it was plain (unquoted): only plain scalars are
    /// numbers, booleans or null.
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
    /// A copy made by a YAML alias: its text stands elsewhere (at `span`).
    pub aliased: bool,
}

#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl Node {
    /// Parses one YAML document. An empty document is an empty mapping.
    pub fn parse(src: &str) -> Result<Node, SyntaxError> {
        Builder::default().run(src)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// Does any node along `path` come from an alias? Its text is elsewhere:
    /// an edit there would change every place that uses it.
    pub fn aliased_along(&self, path: &str) -> bool {
        let mut node = self;
        for part in path_parts(path) {
            if node.aliased {
                return true;
            }
            node = match (part, &node.kind) {
                (Part::Key(k), Kind::Map(entries)) => match entries.iter().find(|(key, _)| key.as_str() == Some(k)) {
                    Some(e) => &e.1,
                    None => return false,
                },
                (Part::Index(i), Kind::Seq(items)) => match items.get(i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        node.aliased
    }

    /// The node at a path such as `clouds[1].hosts[0].address`.
    pub fn lookup(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for part in path_parts(path) {
            node = match (part, &node.kind) {
                (Part::Key(k), Kind::Map(entries)) => &entries.iter().find(|(key, _)| key.as_str() == Some(k))?.1,
                (Part::Index(i), Kind::Seq(items)) => items.get(i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Drops the value at `path` so that deserialization can go on past a
    /// type error and report the next problem too: a map entry is removed (its
    /// default applies), a list item becomes an empty mapping. `false` when
    /// there is nothing to drop.
    pub fn prune(&mut self, path: &str) -> bool {
        let parts: Vec<Part> = path_parts(path).collect();
        let Some((last, parents)) = parts.split_last() else {
            return false;
        };
        let mut node = self;
        for part in parents {
            node = match (part, &mut node.kind) {
                (Part::Key(k), Kind::Map(entries)) => match entries.iter_mut().find(|(key, _)| key.as_str() == Some(k))
                {
                    Some((_, v)) => v,
                    None => return false,
                },
                (Part::Index(i), Kind::Seq(items)) => match items.get_mut(*i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, &mut node.kind) {
            (Part::Key(k), Kind::Map(entries)) => {
                let before = entries.len();
                entries.retain(|(key, _)| key.as_str() != Some(k));
                entries.len() != before
            }
            (Part::Index(i), Kind::Seq(items)) => match items.get_mut(*i) {
                Some(n) if !matches!(&n.kind, Kind::Map(e) if e.is_empty()) => {
                    n.kind = Kind::Map(Vec::new());
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Every scalar and key with its path, depth first, for checks that
    /// apply to all values alike.
    pub fn visit_scalars<'a>(&'a self, path: &str, f: &mut impl FnMut(&str, &'a Node)) {
        match &self.kind {
            Kind::Scalar(..) => f(path, self),
            Kind::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    n.visit_scalars(&format!("{path}[{i}]"), f);
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let key = k.as_str().unwrap_or("?");
                    let here = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    f(&here, k);
                    v.visit_scalars(&here, f);
                }
            }
            Kind::Null => {}
        }
    }

    /// The span of the deepest existing node along `path`: a missing field is
    /// reported at the mapping that should hold it.
    pub fn span_of(&self, path: &str) -> Span {
        let mut node = self;
        let mut span = self.span;
        for part in path_parts(path) {
            let next = match (part, &node.kind) {
                (Part::Key(k), Kind::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    // Point at the key, where a reader looks for a field.
                    .map(|(key, value)| (key.span, value)),
                (Part::Index(i), Kind::Seq(items)) => items.get(i).map(|n| (n.span, n)),
                _ => None,
            };
            match next {
                Some((s, n)) => {
                    span = s;
                    node = n;
                }
                None => break,
            }
        }
        span
    }
}

enum Part<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_parts(path: &str) -> impl Iterator<Item = Part<'_>> {
    path.split('.').filter(|s| !s.is_empty()).flat_map(|seg| {
        let (key, rest) = seg.split_once('[').unwrap_or((seg, ""));
        let key = (!key.is_empty()).then_some(Part::Key(key));
        let indexes = rest
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse().ok())
            .map(Part::Index);
        key.into_iter().chain(indexes)
    })
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Node>, usize)>,
    /// Each anchor's node and how many nodes it holds.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
}

impl Builder {
    /// A copy of the anchored node, counted before it is copied: a bomb is
    /// refused before it costs memory.
    fn alias(&mut self, id: usize) -> Result<Node, &'static str> {
        let size = self.anchors.get(&id).map(|(_, n)| *n).ok_or("unknown alias")?;
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err("document too large (aliases expand to too many nodes)");
        }
        let mut node = self.anchors[&id].0.clone();
        node.aliased = true;
        Ok(node)
    }

    /// A finished node: remembered under its anchor, then placed in its
    /// parent (an item, a key, or a key's value), or made the root.
    fn attach(&mut self, node: Node, anchor: usize, root: &mut Option<Node>) {
        if anchor != 0 {
            let size = count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => *root = Some(node),
            Some((parent, pending_key, _)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => unreachable!("only collections are pushed on the stack"),
            },
        }
    }

    fn run(mut self, src: &str) -> Result<Node, SyntaxError> {
        let mut parser = Parser::new_from_str(src);
        let mut root = None;
        loop {
            let (event, mark) = parser.next_token().map_err(|e| SyntaxError {
                span: Span {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                },
                message: e.info().to_string(),
            })?;
            let span = Span {
                line: mark.line(),
                col: mark.col() + 1,
            };
            let err = |message: &str| SyntaxError {
                span,
                message: message.to_string(),
            };
            self.nodes += 1;
            if self.nodes > MAX_NODES {
                return Err(err("document too large (aliases expand to too many nodes)"));
            }
            let done = match event {
                Event::StreamEnd => break,
                Event::DocumentStart if root.is_some() => return Err(err("only one YAML document is allowed")),
                Event::Scalar(text, style, anchor, _) => {
                    let plain = style == TScalarStyle::Plain;
                    let kind = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Kind::Null
                    } else {
                        Kind::Scalar(text, plain)
                    };
                    Some((
                        Node {
                            kind,
                            span,
                            aliased: false,
                        },
                        anchor,
                    ))
                }
                Event::Alias(id) => Some((self.alias(id).map_err(&err)?, 0)),
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(err("nesting too deep"));
                    }
                    let kind = if matches!(event, Event::SequenceStart(..)) {
                        Kind::Seq(Vec::new())
                    } else {
                        Kind::Map(Vec::new())
                    };
                    self.stack.push((
                        Node {
                            kind,
                            span,
                            aliased: false,
                        },
                        None,
                        anchor,
                    ));
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, _, anchor) = self.stack.pop().ok_or_else(|| err("unbalanced document"))?;
                    Some((node, anchor))
                }
                _ => None,
            };
            if let Some((node, anchor)) = done {
                self.attach(node, anchor, &mut root);
            }
        }
        Ok(root.unwrap_or(Node {
            kind: Kind::Map(Vec::new()),
            span: Span { line: 1, col: 1 },
            aliased: false,
        }))
    }
}

fn count(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// A deserialization error, located at the node it concerns.
#[derive(Debug, Clone)]
pub struct DeError {
    pub span: Option<Span>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            span: None,
            path: String::new(),
            message: msg.to_string(),
        }
    }
}

/// A key the schema does not know, with the keys it does know at that place.
#[derive(Debug, Clone)]
pub struct UnknownKey {
    pub span: Span,
    pub path: String,
    pub key: String,
    pub expected: Vec<&'static str>,
}

/// Deserializes `T` from `node`, collecting every unknown key instead of
/// stopping at the first.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<(T, Vec<UnknownKey>), DeError> {
    let unknown = RefCell::new(Vec::new());
    let de = De {
        node,
        path: "",
        unknown: &unknown,
    };
    let value = T::deserialize(de)?;
    Ok((value, unknown.into_inner()))
}

#[derive(Clone, Copy)]
struct De<'a> {
    node: &'a Node,
    path: &'a str,
    unknown: &'a RefCell<Vec<UnknownKey>>,
}

// `path` must outlive the borrow; children own their path strings, so the
// deserializer is built per child with a fresh String kept alive by the caller.
impl<'a> De<'a> {
    fn locate(&self, mut e: DeError) -> DeError {
        if e.span.is_none() {
            e.span = Some(self.node.span);
            e.path = self.path.to_string();
        }
        e
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            Kind::Scalar(s, plain) => Some((s.as_str(), *plain)),
            _ => None,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            Kind::Null => de::Unexpected::Unit,
            Kind::Scalar(s, _) => de::Unexpected::Str(s),
            Kind::Seq(_) => de::Unexpected::Seq,
            Kind::Map(_) => de::Unexpected::Map,
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "on" | "On" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "off" | "Off" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let s = s.replace('_', "");
    if let Some(hex) = s.strip_prefix("0x") {
        return i128::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return i128::from_str_radix(oct, 8).ok();
    }
    s.parse().ok()
}

macro_rules! deserialize_int {
    ($($method:ident => $visit:ident as $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let result = match self.scalar() {
                Some((s, true)) => match parse_int(s).and_then(|n| <$ty>::try_from(n).ok()) {
                    Some(n) => visitor.$visit(n),
                    None if parse_int(s).is_some() => Err(<DeError as de::Error>::custom(format!(
                        "{s} is out of range for this field ({} to {})", <$ty>::MIN, <$ty>::MAX
                    ))),
                    None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
                },
                _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            };
            result.map_err(|e| self.locate(e))
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for De<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Scalar(s, true) => {
                if let Some(b) = parse_bool(s) {
                    visitor.visit_bool(b)
                } else if let Some(n) = parse_int(s).and_then(|n| i64::try_from(n).ok()) {
                    visitor.visit_i64(n)
                } else if let Ok(f) = s.parse::<f64>() {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(s)
                }
            }
            Kind::Scalar(s, false) => visitor.visit_str(s),
            Kind::Seq(_) => return self.deserialize_seq(visitor),
            Kind::Map(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.scalar() {
            Some((s, true)) if parse_bool(s).is_some() => visitor.visit_bool(parse_bool(s).unwrap_or_default()),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    deserialize_int! {
        deserialize_i8 => visit_i8 as i8,
        deserialize_i16 => visit_i16 as i16,
        deserialize_i32 => visit_i32 as i32,
        deserialize_i64 => visit_i64 as i64,
        deserialize_u8 => visit_u8 as u8,
        deserialize_u16 => visit_u16 as u16,
        deserialize_u32 => visit_u32 as u32,
        deserialize_u64 => visit_u64 as u64,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.scalar() {
            Some((s, true)) => match s.parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
            },
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any scalar is text: `version: 15` is a fine string "15".
        let result = match self.scalar() {
            Some((s, _)) => visitor.visit_str(s),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.kind {
            Kind::Null => visitor.visit_unit(),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter().enumerate(),
                parent: self,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map_with(visitor, None)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.map_with(visitor, Some(fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match self.scalar() {
            Some((s, _)) => visitor.visit_enum(s.into_deserializer()),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl<'a> De<'a> {
    fn map_with<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, DeError> {
        let Kind::Map(entries) = &self.node.kind else {
            return Err(self.locate(de::Error::invalid_type(self.unexpected(), &visitor)));
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut kept = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                return Err(DeError {
                    span: Some(key.span),
                    path: self.path.to_string(),
                    message: "keys must be plain text".into(),
                });
            };
            if seen.contains(&name) {
                return Err(DeError {
                    span: Some(key.span),
                    path: join(self.path, name),
                    message: format!("duplicate key `{name}`"),
                });
            }
            seen.push(name);
            match fields {
                Some(fields) if !fields.contains(&name) => self.unknown.borrow_mut().push(UnknownKey {
                    span: key.span,
                    path: join(self.path, name),
                    key: name.to_string(),
                    expected: fields.to_vec(),
                }),
                _ => kept.push((key, value)),
            }
        }
        let result = visitor.visit_map(MapAccess {
            entries: kept.into_iter(),
            value: None,
            path: String::new(),
            parent: self,
        });
        result.map_err(|e| self.locate(e))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct SeqAccess<'a, I> {
    items: I,
    parent: De<'a>,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for SeqAccess<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.parent.path);
        let de = De {
            node,
            path: &path,
            unknown: self.parent.unknown,
        };
        seed.deserialize(de).map(Some).map_err(|e| de.locate(e))
    }
}

struct MapAccess<'a, I> {
    entries: I,
    value: Option<&'a Node>,
    path: String,
    parent: De<'a>,
}

impl<'de, 'a, I: Iterator<Item = (&'a Node, &'a Node)>> de::MapAccess<'de> for MapAccess<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        self.path = join(self.parent.path, key.as_str().unwrap_or_default());
        let de = De {
            node: key,
            path: &self.path,
            unknown: self.parent.unknown,
        };
        seed.deserialize(de).map(Some).map_err(|e| de.locate(e))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        let de = De {
            node,
            path: &self.path,
            unknown: self.parent.unknown,
        };
        seed.deserialize(de).map_err(|e| de.locate(e))
    }
}

/// Where a file pgha keeps (state, secrets) is not what it should be: the
/// line, and a message that never quotes a value (it may be a password).
#[derive(Debug, Clone)]
pub struct FileError {
    pub line: usize,
    pub message: String,
}

/// Reads a file pgha writes itself through the design's own parser, with its
/// depth and alias limits. Keys the type does not know are refused when
/// `strict`, skipped otherwise (a newer pgha's additions).
pub fn from_str<T: de::DeserializeOwned>(text: &str, strict: bool) -> Result<T, FileError> {
    let node = Node::parse(text).map_err(|e| FileError {
        line: e.span.line,
        message: "not YAML".into(),
    })?;
    let (value, unknown) = from_node::<T>(&node).map_err(|e| FileError {
        line: e.span.map_or(0, |s| s.line),
        message: if e.path.is_empty() {
            "not the expected shape".into()
        } else {
            format!("{} is not the expected shape", e.path)
        },
    })?;
    match unknown.first() {
        Some(k) if strict => Err(FileError {
            line: k.span.line,
            message: format!("unknown key {}", k.key),
        }),
        _ => Ok(value),
    }
}

/// Writes `value` as a YAML document (block style, keys sorted).
pub fn to_string<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    fn convert(v: serde_json::Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match v {
            serde_json::Value::Null => Yaml::Null,
            serde_json::Value::Bool(b) => Yaml::Boolean(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            serde_json::Value::String(s) => Yaml::String(s),
            serde_json::Value::Array(a) => Yaml::Array(a.into_iter().map(convert).collect()),
            serde_json::Value::Object(o) => {
                Yaml::Hash(o.into_iter().map(|(k, v)| (Yaml::String(k), convert(v))).collect())
            }
        }
    }
    let yaml = convert(serde_json::to_value(value)?);
    let mut out = String::new();
    yaml_rust2::YamlEmitter::new(&mut out).dump(&yaml)?;
    // The emitter opens with a document marker and ends without a newline.
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    Ok(format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        port: u16,
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn spans_are_one_based() {
        let n = Node::parse("a:\n  b: [1, 2]\n").unwrap();
        assert_eq!(n.span_of("a.b"), Span { line: 2, col: 3 });
        assert_eq!(n.lookup("a.b[1]").unwrap().span, Span { line: 2, col: 10 });
    }

    #[test]
    fn unknown_keys_are_all_collected() {
        let n = Node::parse("port: 5000\nnmae: x\nother: 1\n").unwrap();
        let (t, unknown) = from_node::<T>(&n).unwrap();
        assert_eq!(t.port, 5000);
        assert_eq!(t.name, None);
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[0].key, "nmae");
        assert_eq!(unknown[0].span.line, 2);
    }

    #[test]
    fn type_errors_carry_the_span() {
        let n = Node::parse("name: a\nport: lots\n").unwrap();
        let e = from_node::<T>(&n).unwrap_err();
        assert_eq!(e.span.unwrap().line, 2);
        assert_eq!(e.path, "port");
        let n = Node::parse("port: 70000\n").unwrap();
        let e = from_node::<T>(&n).unwrap_err();
        assert!(e.message.contains("out of range"), "{}", e.message);
    }

    #[test]
    fn quoted_numbers_are_not_numbers() {
        let n = Node::parse("port: '5000'\n").unwrap();
        assert!(from_node::<T>(&n).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(Node::parse(&src).is_err());
    }

    #[test]
    fn a_file_pgha_keeps_round_trips_and_names_only_lines() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Kept {
            name: String,
            count: u32,
            #[serde(default)]
            maybe: Option<String>,
            lists: std::collections::BTreeMap<String, Vec<String>>,
        }
        let kept = Kept {
            name: "a: b # not a comment".into(),
            count: 7,
            maybe: None,
            lists: [("dc1".to_string(), vec!["x".to_string(), "yes".to_string()])].into(),
        };
        let text = to_string(&kept).unwrap();
        assert!(!text.starts_with("---"), "{text}");
        assert_eq!(from_str::<Kept>(&text, true).unwrap(), kept, "{text}");
        let extra = format!("{text}newer: 1\n");
        assert_eq!(from_str::<Kept>(&extra, false).unwrap(), kept);
        let e = from_str::<Kept>(&extra, true).unwrap_err();
        assert_eq!(e.message, "unknown key newer");
        // A wrong value is named by line and field, never quoted.
        let e = from_str::<Kept>("name: s3cret\ncount: s3cret\nlists: {}\n", true).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }
}
