//! The RDF form of registrar's own credentials and its canonical N-Quads (RDFC-1.0), as
//! the `eddsa-rdfc-2022` cryptosuite hashes them.
//!
//! registrar writes one credential shape, so instead of a general JSON-LD processor the
//! JSON is read with [`TERMS`]: the IRI (and datatype) that the shipped VC 2.0 and
//! OB 3.0.3 contexts give each term the credential uses (a test checks every entry
//! against the contexts, another the whole result against jsonld.js). A key the table
//! does not know is an error, never a silently dropped statement.
//!
//! Canonical blank node labels follow RDFC-1.0: each blank node's first-degree hash
//! (SHA-256 of its sorted quads with itself as `_:a`, other blank nodes as `_:z`), labels
//! `c14n0…` in hash order. The credential's blank nodes (subject, identifiers, criteria)
//! always differ in their first-degree quads; were two hashes equal (the N-degree case
//! this shape never needs), canonicalization is refused rather than guessed.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
const SEC: &str = "https://w3id.org/security#";
const XSD_DATETIME: &str = "http://www.w3.org/2001/XMLSchema#dateTime";

/// How a term's value becomes RDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node: an object (with or without `id`), or a string that is its IRI.
    Node,
    /// A string that is an IRI.
    Iri,
    /// A string that is a term of `vocab` (`assertionMethod` -> `…security#assertionMethod`).
    Vocab(&'static str),
    /// A literal, typed when given a datatype (booleans and strings alike).
    Literal(Option<&'static str>),
}

/// Every term of a registrar credential and its proof: term, IRI, how its value maps.
pub const TERMS: &[(&str, &str, Kind)] = &[
    ("name", "https://schema.org/name", Kind::Literal(None)),
    (
        "description",
        "https://schema.org/description",
        Kind::Literal(None),
    ),
    (
        "issuer",
        "https://www.w3.org/2018/credentials#issuer",
        Kind::Node,
    ),
    (
        "validFrom",
        "https://www.w3.org/2018/credentials#validFrom",
        Kind::Literal(Some(XSD_DATETIME)),
    ),
    (
        "validUntil",
        "https://www.w3.org/2018/credentials#validUntil",
        Kind::Literal(Some(XSD_DATETIME)),
    ),
    (
        "credentialSubject",
        "https://www.w3.org/2018/credentials#credentialSubject",
        Kind::Node,
    ),
    (
        "identifier",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#identifier",
        Kind::Node,
    ),
    (
        "identityHash",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#identityHash",
        Kind::Literal(None),
    ),
    (
        "identityType",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#identityType",
        Kind::Literal(None),
    ),
    (
        "hashed",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#hashed",
        Kind::Literal(Some("https://www.w3.org/2001/XMLSchema#boolean")),
    ),
    (
        "salt",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#salt",
        Kind::Literal(None),
    ),
    (
        "activityStartDate",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#activityStartDate",
        Kind::Literal(Some("https://www.w3.org/2001/XMLSchema#date")),
    ),
    (
        "activityEndDate",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#activityEndDate",
        Kind::Literal(Some("https://www.w3.org/2001/XMLSchema#date")),
    ),
    (
        "licenseNumber",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#licenseNumber",
        Kind::Literal(None),
    ),
    (
        "achievement",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#achievement",
        Kind::Node,
    ),
    (
        "achievementType",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#achievementType",
        Kind::Literal(None),
    ),
    (
        "criteria",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#Criteria",
        Kind::Node,
    ),
    (
        "narrative",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#narrative",
        Kind::Literal(None),
    ),
    (
        "cryptosuite",
        "https://w3id.org/security#cryptosuite",
        Kind::Literal(Some("https://w3id.org/security#cryptosuiteString")),
    ),
    (
        "created",
        "http://purl.org/dc/terms/created",
        Kind::Literal(Some(XSD_DATETIME)),
    ),
    (
        "verificationMethod",
        "https://w3id.org/security#verificationMethod",
        Kind::Iri,
    ),
    (
        "proofPurpose",
        "https://w3id.org/security#proofPurpose",
        Kind::Vocab(SEC),
    ),
];

/// The classes a registrar credential names in `type`, and their IRIs.
pub const TYPES: &[(&str, &str)] = &[
    (
        "VerifiableCredential",
        "https://www.w3.org/2018/credentials#VerifiableCredential",
    ),
    (
        "OpenBadgeCredential",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#OpenBadgeCredential",
    ),
    (
        "Profile",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#Profile",
    ),
    (
        "AchievementSubject",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#AchievementSubject",
    ),
    (
        "Achievement",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#Achievement",
    ),
    (
        "IdentityObject",
        "https://purl.imsglobal.org/spec/vc/ob/vocab.html#IdentityObject",
    ),
    (
        "DataIntegrityProof",
        "https://w3id.org/security#DataIntegrityProof",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Term {
    Iri(String),
    Blank(usize),
    Literal(String, Option<&'static str>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Quad {
    s: Term,
    p: String,
    o: Term,
}

/// The canonical N-Quads (RDFC-1.0) of `doc`, a credential or proof configuration of the
/// shape registrar writes. `@context` and `proof` are not part of it.
pub fn canonical_nquads(doc: &Value) -> Result<String, String> {
    let mut quads = BTreeSet::new();
    let mut blanks = 0usize;
    node(doc, &mut quads, &mut blanks, true)?;
    canonicalize(&quads.into_iter().collect::<Vec<_>>())
}

/// The statements of a node object; returns its subject.
fn node(
    v: &Value,
    quads: &mut BTreeSet<Quad>,
    blanks: &mut usize,
    top: bool,
) -> Result<Term, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a node object, found {v}"))?;
    let subject = match obj.get("id") {
        Some(Value::String(id)) => Term::Iri(id.clone()),
        Some(other) => return Err(format!("`id` must be a string, found {other}")),
        None => {
            *blanks += 1;
            Term::Blank(*blanks - 1)
        }
    };
    for (key, value) in obj {
        match key.as_str() {
            "id" => {}
            "@context" | "proof" if top => {}
            "type" => {
                for t in values(value) {
                    let name = t
                        .as_str()
                        .ok_or_else(|| format!("`type` values must be strings, found {t}"))?;
                    let iri = TYPES
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, iri)| *iri)
                        .ok_or_else(|| format!("type {name:?} is not in registrar's table"))?;
                    quads.insert(Quad {
                        s: subject.clone(),
                        p: RDF_TYPE.into(),
                        o: Term::Iri(iri.into()),
                    });
                }
            }
            _ => {
                let (_, iri, kind) = TERMS
                    .iter()
                    .find(|(t, _, _)| t == key)
                    .ok_or_else(|| format!("term {key:?} is not in registrar's table"))?;
                for item in values(value) {
                    let object = match (kind, item) {
                        (Kind::Node, Value::Object(_)) => node(item, quads, blanks, false)?,
                        (Kind::Node | Kind::Iri, Value::String(s)) => Term::Iri(s.clone()),
                        (Kind::Vocab(base), Value::String(s)) => Term::Iri(format!("{base}{s}")),
                        (Kind::Literal(dt), Value::String(s)) => Term::Literal(s.clone(), *dt),
                        (Kind::Literal(dt), Value::Bool(b)) => Term::Literal(b.to_string(), *dt),
                        (_, other) => {
                            return Err(format!(
                                "{key:?}: a value of this kind is not expected: {other}"
                            ));
                        }
                    };
                    quads.insert(Quad {
                        s: subject.clone(),
                        p: (*iri).into(),
                        o: object,
                    });
                }
            }
        }
    }
    Ok(subject)
}

fn values(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// RDFC-1.0 over a dataset of the default graph (first-degree hashes; see the module).
fn canonicalize(quads: &[Quad]) -> Result<String, String> {
    let mut mentions: BTreeMap<usize, Vec<&Quad>> = BTreeMap::new();
    for q in quads {
        for t in [&q.s, &q.o] {
            if let Term::Blank(b) = t {
                let list = mentions.entry(*b).or_default();
                if !list.iter().any(|seen| std::ptr::eq(*seen, q)) {
                    list.push(q);
                }
            }
        }
    }
    let mut hashed: Vec<(String, usize)> = mentions
        .iter()
        .map(|(b, qs)| {
            let mut lines: Vec<String> = qs
                .iter()
                .map(|q| {
                    line(q, &|n| {
                        if n == *b {
                            "a".to_string()
                        } else {
                            "z".to_string()
                        }
                    })
                })
                .collect();
            lines.sort();
            (hex(&sha256(lines.concat().as_bytes())), *b)
        })
        .collect();
    hashed.sort();
    if hashed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("two blank nodes of the credential cannot be told apart".into());
    }
    let labels: BTreeMap<usize, String> = hashed
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (*b, format!("c14n{i}")))
        .collect();
    let mut lines: Vec<String> = quads
        .iter()
        .map(|q| line(q, &|n| labels.get(&n).cloned().unwrap_or_default()))
        .collect();
    lines.sort();
    lines.dedup();
    Ok(lines.concat())
}

/// One N-Quads line in canonical form, blank nodes named by `label`.
fn line(q: &Quad, label: &dyn Fn(usize) -> String) -> String {
    let term = |t: &Term| match t {
        Term::Iri(i) => format!("<{}>", escape_iri(i)),
        Term::Blank(b) => format!("_:{}", label(*b)),
        Term::Literal(v, None) => format!("\"{}\"", escape_literal(v)),
        Term::Literal(v, Some(dt)) => format!("\"{}\"^^<{}>", escape_literal(v), escape_iri(dt)),
    };
    format!("{} <{}> {} .\n", term(&q.s), escape_iri(&q.p), term(&q.o))
}

/// Canonical N-Quads string escapes: `\b \t \n \f \r \" \\`, other controls as `\uXXXX`.
fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// IRIs as N-Quads writes them: characters an IRI may not hold as `\uXXXX`.
fn escape_iri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c as u32) <= 0x20 || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\') {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every term and type of the table means, in the shipped contexts, what the table
    /// says: its IRI is the `@id` some definition of that name gives, and a typed literal's
    /// datatype is that definition's `@type`.
    #[test]
    fn every_term_is_what_the_shipped_contexts_define() {
        let mut defs: Vec<(String, Value)> = Vec::new();
        fn collect(ctx: &Value, defs: &mut Vec<(String, Value)>) {
            if let Some(map) = ctx.as_object() {
                for (k, v) in map {
                    defs.push((k.clone(), v.clone()));
                    if let Some(inner) = v.get("@context") {
                        collect(inner, defs);
                    }
                }
            }
        }
        for (_, text) in super::super::CONTEXTS {
            let doc: Value = serde_json::from_str(text).expect("context JSON");
            collect(&doc["@context"], &mut defs);
        }
        let iri_of = |d: &Value| match d {
            Value::String(s) => Some(s.clone()),
            other => other["@id"].as_str().map(str::to_string),
        };
        for (term, iri, kind) in TERMS {
            let found: Vec<&Value> = defs
                .iter()
                .filter(|(k, d)| k == term && iri_of(d).as_deref() == Some(*iri))
                .map(|(_, d)| d)
                .collect();
            assert!(!found.is_empty(), "{term} -> {iri} is not in the contexts");
            let datatype = match kind {
                Kind::Literal(dt) => dt.map(str::to_string),
                Kind::Node | Kind::Iri => Some("@id".into()),
                Kind::Vocab(_) => Some("@vocab".into()),
            };
            let node_ok = |d: &&Value| {
                // A node term may leave its @type out (objects are nodes anyway).
                *kind == Kind::Node && d.get("@type").is_none()
            };
            assert!(
                found
                    .iter()
                    .any(|d| d["@type"].as_str().map(str::to_string) == datatype || node_ok(d)),
                "{term}: the contexts give it another @type than {datatype:?}"
            );
        }
        for (name, iri) in TYPES {
            assert!(
                defs.iter()
                    .any(|(k, d)| k == name && iri_of(d).as_deref() == Some(*iri)),
                "type {name} -> {iri} is not in the contexts"
            );
        }
    }

    /// The canonical N-Quads of a credential and a proof configuration are, byte for byte,
    /// what jsonld.js (`jsonld.canonize`, RDFC-1.0, with the shipped contexts) made of the
    /// same JSON — quotes, a backslash, a tab, a line break and an emoji included.
    #[test]
    fn canonical_form_is_what_jsonld_js_makes_of_the_same_credential() {
        for (json, nq) in [
            (
                include_str!("testdata/credential.json"),
                include_str!("testdata/credential.nq"),
            ),
            (
                include_str!("testdata/proof-config.json"),
                include_str!("testdata/proof-config.nq"),
            ),
        ] {
            let doc: Value = serde_json::from_str(json).expect("fixture");
            assert_eq!(canonical_nquads(&doc).expect("canonical"), nq);
        }
    }

    #[test]
    fn literals_escape_as_canonical_n_quads_do() {
        assert_eq!(
            escape_literal("a\"b\\c\nd\te\u{1}é"),
            "a\\\"b\\\\c\\nd\\te\\u0001é"
        );
    }

    #[test]
    fn an_unknown_term_is_an_error_not_a_dropped_statement() {
        let e = canonical_nquads(&serde_json::json!({"id": "urn:x", "nickname": "x"}))
            .expect_err("unknown term");
        assert!(e.contains("nickname"), "{e}");
    }
}
