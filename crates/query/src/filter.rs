//! The FT.SEARCH query language, parsed with winnow into a [`ParsedQuery`].
//!
//! ```text
//! query   := or ( "=>" knn-clause )?          the KNN clause is split off first (knn.rs)
//! or      := and ( "|" and )*
//! and     := unary ( ws unary )*               juxtaposition is AND
//! unary   := "-" unary | atom
//! atom    := "(" or ")" | "*" | "@" field ":" field-expr | word | "\"" phrase "\""
//! field-expr := "[" bound ","? bound "]"       numeric range, "(" makes a bound exclusive
//!             | "[" VECTOR_RANGE r $vec "]" ( "=>" "{" $attr: v ; ... "}" )?
//!             | "{" tag ( "|" tag )* "}"      a trailing "*" makes a tag a prefix
//!             | "(" or ")" | word            text, scoped to the field
//! ```
//!
//! Names are not checked here — that needs the schema, and is [`crate::plan::bind`]'s job.

use winnow::ascii::{multispace0, Caseless};
use winnow::combinator::{alt, cut_err, delimited, fail, opt, preceded, repeat, separated};
use winnow::error::{ContextError, ParseError, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{any, none_of, one_of, take_while};

use crate::args::parse_f64;
use crate::error::{QueryError, Result};
use crate::knn::{self, KnnClause};
use crate::{MAX_DEPTH, MAX_QUERY_LEN, MAX_TERMS};

/// A number written in the query or a `$parameter` to be bound from PARAMS.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Param(String),
}

/// One end of a numeric range.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub exclusive: bool,
    pub value: Value,
}

/// One alternative inside `{...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPattern {
    pub text: String,
    pub prefix: bool,
}

/// One word of a text predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextWord {
    pub text: String,
    pub prefix: bool,
}

/// The filter part of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    All,
    Numeric {
        field: String,
        lo: Bound,
        hi: Bound,
    },
    Tag {
        field: String,
        tags: Vec<TagPattern>,
    },
    /// Words that must all occur (in `field`, or in any TEXT field).
    Text {
        field: Option<String>,
        words: Vec<TextWord>,
    },
    VectorRange {
        field: String,
        radius: Value,
        vector_param: String,
        yield_as: Option<String>,
        epsilon: Option<Value>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    /// Predicates in the tree, for the term bound (and for what a cache keeps).
    pub fn terms(&self) -> usize {
        match self {
            Node::All | Node::Numeric { .. } | Node::VectorRange { .. } => 1,
            Node::Tag { tags, .. } => tags.len(),
            Node::Text { words, .. } => words.len(),
            Node::And(nodes) | Node::Or(nodes) => nodes.iter().map(Node::terms).sum(),
            Node::Not(node) => node.terms(),
        }
    }
}

/// A whole query string: the filter and, when there is one, the KNN clause.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedQuery {
    pub filter: Node,
    pub knn: Option<KnnClause>,
}

/// Parses a query string.
pub fn parse_query(text: &str) -> Result<ParsedQuery> {
    if text.len() > MAX_QUERY_LEN {
        return Err(QueryError::QueryTooLong(MAX_QUERY_LEN));
    }
    let (filter_text, knn_text) = split_knn(text);
    let filter = parse_filter(filter_text)?;
    if filter.terms() > MAX_TERMS {
        return Err(QueryError::TooManyTerms(MAX_TERMS));
    }
    let knn = knn_text.map(knn::parse_knn).transpose()?;
    Ok(ParsedQuery { filter, knn })
}

/// Splits at the first `=>` that does not open a `{...}` attribute block (those belong
/// to VECTOR_RANGE): what follows is the KNN clause.
fn split_knn(text: &str) -> (&str, Option<&str>) {
    for (pos, _) in text.match_indices("=>") {
        let rest = text[pos + 2..].trim();
        if !rest.starts_with('{') {
            return (&text[..pos], Some(rest));
        }
    }
    (text, None)
}

const DEPTH_LABEL: &str = "nesting depth";

fn parse_filter(text: &str) -> Result<Node> {
    let trimmed = text.trim();
    let error = |detail: String| QueryError::Filter {
        filter: trimmed.to_owned(),
        detail,
    };
    if trimmed.is_empty() {
        return Err(error("Empty expression".into()));
    }
    let mut parser = delimited(ws, |i: &mut &str| or_expr(i, 0), ws);
    parser
        .parse(trimmed)
        .map_err(|e| error(describe(trimmed, &e)))
}

/// Turns a winnow failure into the reference's wording.
fn describe(text: &str, e: &ParseError<&str, ContextError>) -> String {
    let offset = e.offset();
    let contexts: Vec<&StrContext> = e.inner().context().collect();
    if contexts
        .iter()
        .any(|c| matches!(c, StrContext::Label(l) if *l == DEPTH_LABEL))
    {
        return format!("Nesting is deeper than {MAX_DEPTH} levels");
    }
    match text[offset..].chars().next() {
        None => {
            let wants_paren = contexts
                .iter()
                .any(|c| matches!(c, StrContext::Expected(StrContextValue::CharLiteral(')'))));
            if wants_paren {
                "Missing `)`".into()
            } else {
                "Unexpected end of expression".into()
            }
        }
        Some(c) => {
            let position = text[..offset].chars().count() + 1;
            format!("Unexpected character at position {position}: `{c}`")
        }
    }
}

type In<'a> = &'a str;

fn ws(i: &mut In<'_>) -> ModalResult<()> {
    multispace0.void().parse_next(i)
}

fn expected(c: char) -> StrContext {
    StrContext::Expected(StrContextValue::CharLiteral(c))
}

fn or_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    let first = and_expr(i, depth)?;
    let rest: Vec<Node> = repeat(
        0..,
        preceded((ws, '|', ws), cut_err(|i: &mut In<'_>| and_expr(i, depth))),
    )
    .parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        let mut all = vec![first];
        all.extend(rest);
        Node::Or(all)
    })
}

fn and_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    let first = unary(i, depth)?;
    let rest: Vec<Node> =
        repeat(0.., preceded(ws, |i: &mut In<'_>| unary(i, depth))).parse_next(i)?;
    Ok(if rest.is_empty() {
        first
    } else {
        let mut all = vec![first];
        all.extend(rest);
        Node::And(all)
    })
}

fn unary(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    if depth > MAX_DEPTH {
        return cut_err(fail.context(StrContext::Label(DEPTH_LABEL))).parse_next(i);
    }
    alt((
        preceded(
            '-',
            cut_err(preceded(ws, |i: &mut In<'_>| unary(i, depth + 1))),
        )
        .map(|n| Node::Not(Box::new(n))),
        |i: &mut In<'_>| atom(i, depth),
    ))
    .parse_next(i)
}

fn atom(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    alt((
        |i: &mut In<'_>| group(i, depth),
        '*'.value(Node::All),
        |i: &mut In<'_>| field_expr(i, depth),
        phrase.map(|words| Node::Text { field: None, words }),
        text_word.map(|w| Node::Text {
            field: None,
            words: vec![w],
        }),
    ))
    .parse_next(i)
}

fn group(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    '('.parse_next(i)?;
    ws(i)?;
    let inner = cut_err(|i: &mut In<'_>| or_expr(i, depth + 1)).parse_next(i)?;
    ws(i)?;
    cut_err(')'.context(expected(')'))).parse_next(i)?;
    Ok(inner)
}

fn name(i: &mut In<'_>) -> ModalResult<String> {
    take_while(1.., |c: char| c.is_alphanumeric() || c == '_')
        .map(str::to_owned)
        .parse_next(i)
}

fn param(i: &mut In<'_>) -> ModalResult<String> {
    preceded('$', cut_err(name)).parse_next(i)
}

fn number(i: &mut In<'_>) -> ModalResult<f64> {
    take_while(1.., |c: char| {
        c.is_ascii_alphanumeric() || "+-.".contains(c)
    })
    .verify_map(|s: &str| parse_f64(s.as_bytes()))
    .context(StrContext::Label("number"))
    .parse_next(i)
}

fn value(i: &mut In<'_>) -> ModalResult<Value> {
    alt((param.map(Value::Param), number.map(Value::Number))).parse_next(i)
}

fn field_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Node> {
    '@'.parse_next(i)?;
    let field = cut_err(name).parse_next(i)?;
    ws(i)?;
    cut_err(':'.context(expected(':'))).parse_next(i)?;
    ws(i)?;
    let node = cut_err(alt((
        |i: &mut In<'_>| bracket_expr(i, &field),
        |i: &mut In<'_>| tag_set(i, &field),
        |i: &mut In<'_>| group(i, depth).map(|n| scope(n, &field)),
        phrase.map(|words| Node::Text {
            field: Some(field.clone()),
            words,
        }),
        text_word.map(|w| Node::Text {
            field: Some(field.clone()),
            words: vec![w],
        }),
    )))
    .parse_next(i)?;
    Ok(node)
}

/// `@f:(a b)` searches `f` for the words of the group.
fn scope(node: Node, field: &str) -> Node {
    match node {
        Node::Text { field: None, words } => Node::Text {
            field: Some(field.to_owned()),
            words,
        },
        Node::And(nodes) => Node::And(nodes.into_iter().map(|n| scope(n, field)).collect()),
        Node::Or(nodes) => Node::Or(nodes.into_iter().map(|n| scope(n, field)).collect()),
        Node::Not(node) => Node::Not(Box::new(scope(*node, field))),
        other @ (Node::All
        | Node::Numeric { .. }
        | Node::Tag { .. }
        | Node::Text { .. }
        | Node::VectorRange { .. }) => other,
    }
}

fn bracket_expr(i: &mut In<'_>, field: &str) -> ModalResult<Node> {
    '['.parse_next(i)?;
    ws(i)?;
    if opt(Caseless("VECTOR_RANGE")).parse_next(i)?.is_some() {
        return cut_err(|i: &mut In<'_>| vector_range(i, field)).parse_next(i);
    }
    let lo = cut_err(bound).parse_next(i)?;
    (ws, opt(','), ws).void().parse_next(i)?;
    let hi = cut_err(bound).parse_next(i)?;
    ws(i)?;
    cut_err(']'.context(expected(']'))).parse_next(i)?;
    Ok(Node::Numeric {
        field: field.to_owned(),
        lo,
        hi,
    })
}

fn bound(i: &mut In<'_>) -> ModalResult<Bound> {
    let exclusive = opt('(').parse_next(i)?.is_some();
    let value = value(i)?;
    Ok(Bound { exclusive, value })
}

fn vector_range(i: &mut In<'_>, field: &str) -> ModalResult<Node> {
    ws(i)?;
    let radius = value(i)?;
    ws(i)?;
    let vector_param = param(i)?;
    ws(i)?;
    ']'.context(expected(']')).parse_next(i)?;
    let attributes: Option<Vec<(String, String)>> = opt(preceded(
        (ws, "=>", ws, '{', ws),
        cut_err(
            (
                separated(0.., attribute, (ws, ';', ws)),
                ws,
                opt(';'),
                ws,
                '}'.context(expected('}')),
            )
                .map(|(attrs, ..)| attrs),
        ),
    ))
    .parse_next(i)?;
    let mut yield_as = None;
    let mut epsilon = None;
    for (key, v) in attributes.unwrap_or_default() {
        match key.to_ascii_uppercase().as_str() {
            "YIELD_DISTANCE_AS" => yield_as = Some(v),
            "EPSILON" => match parse_f64(v.as_bytes()) {
                Some(e) => epsilon = Some(Value::Number(e)),
                None => return cut_err(fail.context(StrContext::Label("epsilon"))).parse_next(i),
            },
            _ => return cut_err(fail.context(StrContext::Label("attribute"))).parse_next(i),
        }
    }
    Ok(Node::VectorRange {
        field: field.to_owned(),
        radius,
        vector_param,
        yield_as,
        epsilon,
    })
}

fn attribute(i: &mut In<'_>) -> ModalResult<(String, String)> {
    let key = preceded('$', name).parse_next(i)?;
    (ws, ':', ws).void().parse_next(i)?;
    let v = take_while(1.., |c: char| !c.is_whitespace() && c != ';' && c != '}').parse_next(i)?;
    Ok((key, v.to_owned()))
}

fn tag_set(i: &mut In<'_>, field: &str) -> ModalResult<Node> {
    '{'.parse_next(i)?;
    ws(i)?;
    let tags: Vec<TagPattern> = cut_err(separated(1.., tag, (ws, '|', ws))).parse_next(i)?;
    ws(i)?;
    cut_err('}'.context(expected('}'))).parse_next(i)?;
    Ok(Node::Tag {
        field: field.to_owned(),
        tags,
    })
}

/// One tag: anything up to an unescaped `|` or `}`, trimmed; `\` escapes one character.
fn tag(i: &mut In<'_>) -> ModalResult<TagPattern> {
    let chars: Vec<(char, bool)> = repeat(
        1..,
        alt((
            preceded('\\', any).map(|c| (c, true)),
            none_of(['|', '}', '{', '\\']).map(|c| (c, false)),
        )),
    )
    .parse_next(i)?;
    let start = chars
        .iter()
        .position(|(c, escaped)| *escaped || !c.is_whitespace())
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|(c, escaped)| *escaped || !c.is_whitespace())
        .map_or(start, |p| p + 1);
    let mut kept = &chars[start..end];
    let prefix = matches!(kept.last(), Some(('*', false)));
    if prefix {
        kept = &kept[..kept.len() - 1];
    }
    if kept.is_empty() {
        return fail.context(StrContext::Label("tag")).parse_next(i);
    }
    Ok(TagPattern {
        text: kept.iter().map(|(c, _)| c).collect(),
        prefix,
    })
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace())
}

fn text_word(i: &mut In<'_>) -> ModalResult<TextWord> {
    let text: String = repeat(1.., alt((preceded('\\', any), one_of(word_char)))).parse_next(i)?;
    let prefix = opt('*').parse_next(i)?.is_some();
    Ok(TextWord { text, prefix })
}

fn phrase(i: &mut In<'_>) -> ModalResult<Vec<TextWord>> {
    let body: String = delimited(
        '"',
        repeat(0.., none_of(['"'])),
        cut_err('"'.context(expected('"'))),
    )
    .parse_next(i)?;
    Ok(body
        .split(|c: char| !word_char(c))
        .filter(|w| !w.is_empty())
        .map(|w| TextWord {
            text: w.to_owned(),
            prefix: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str) -> Node {
        parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}")).filter
    }

    fn num(field: &str, lo: (bool, f64), hi: (bool, f64)) -> Node {
        Node::Numeric {
            field: field.into(),
            lo: Bound {
                exclusive: lo.0,
                value: Value::Number(lo.1),
            },
            hi: Bound {
                exclusive: hi.0,
                value: Value::Number(hi.1),
            },
        }
    }

    fn tag(field: &str, tags: &[(&str, bool)]) -> Node {
        Node::Tag {
            field: field.into(),
            tags: tags
                .iter()
                .map(|(t, p)| TagPattern {
                    text: (*t).into(),
                    prefix: *p,
                })
                .collect(),
        }
    }

    #[test]
    fn wildcard_and_knn() {
        let q = parse_query("*=>[KNN 10 @vec $vec AS score]").unwrap();
        assert_eq!(q.filter, Node::All);
        let knn = q.knn.unwrap();
        assert_eq!(knn.field, "vec");
        assert_eq!(knn.alias.as_deref(), Some("score"));
        assert_eq!(filter("(*)"), Node::All);
    }

    #[test]
    fn numeric_ranges() {
        let inf = f64::INFINITY;
        assert_eq!(
            filter("@price:[0 100]"),
            num("price", (false, 0.0), (false, 100.0))
        );
        assert_eq!(
            filter("@price:[(0 (10]"),
            num("price", (true, 0.0), (true, 10.0))
        );
        assert_eq!(
            filter("@n:[1.5 +inf]"),
            num("n", (false, 1.5), (false, inf))
        );
        assert_eq!(
            filter("@n:[-inf, inf]"),
            num("n", (false, -inf), (false, inf))
        );
        assert_eq!(
            filter("@n:[$lo $hi]"),
            Node::Numeric {
                field: "n".into(),
                lo: Bound {
                    exclusive: false,
                    value: Value::Param("lo".into())
                },
                hi: Bound {
                    exclusive: false,
                    value: Value::Param("hi".into())
                },
            }
        );
    }

    #[test]
    fn tags_prefixes_and_escapes() {
        assert_eq!(
            filter("@cat:{a | b}"),
            tag("cat", &[("a", false), ("b", false)])
        );
        assert_eq!(filter("@cat:{ele*}"), tag("cat", &[("ele", true)]));
        assert_eq!(
            filter("@cat:{new york}"),
            tag("cat", &[("new york", false)])
        );
        assert_eq!(filter(r"@cat:{a\-b\|c}"), tag("cat", &[("a-b|c", false)]));
        assert_eq!(filter(r"@cat:{a\*}"), tag("cat", &[("a*", false)]));
    }

    #[test]
    fn boolean_structure() {
        let q = filter("(@category:{electronics} @price:[0 1000]) | -@cat:{x}");
        let Node::Or(alts) = q else { panic!("{q:?}") };
        assert!(matches!(&alts[0], Node::And(v) if v.len() == 2));
        assert!(matches!(&alts[1], Node::Not(_)));
        let q = filter("(@category:{electronics} @title:(smartphone))");
        let Node::And(parts) = q else { panic!("{q:?}") };
        assert_eq!(
            parts[1],
            Node::Text {
                field: Some("title".into()),
                words: vec![TextWord {
                    text: "smartphone".into(),
                    prefix: false
                }]
            }
        );
    }

    #[test]
    fn vector_range_with_attributes() {
        let q = filter("@v:[VECTOR_RANGE 0.5 $blob]=>{$YIELD_DISTANCE_AS: dist; $EPSILON: 0.01}");
        assert_eq!(
            q,
            Node::VectorRange {
                field: "v".into(),
                radius: Value::Number(0.5),
                vector_param: "blob".into(),
                yield_as: Some("dist".into()),
                epsilon: Some(Value::Number(0.01)),
            }
        );
        // LangChain's spelling, combined with a KNN afterwards.
        let q = parse_query("@v:[VECTOR_RANGE $r $vec]=>{$yield_distance_as: distance}").unwrap();
        assert!(q.knn.is_none());
        assert!(
            matches!(q.filter, Node::VectorRange { yield_as: Some(ref d), .. } if d == "distance")
        );
    }

    #[test]
    fn syntax_errors_use_reference_wording() {
        let e = |q: &str| parse_query(q).unwrap_err().to_string();
        assert_eq!(
            e("(*=>[KNN 10 @vec $BLOB]"),
            "Invalid filter expression: `(*`. Missing `)`"
        );
        assert_eq!(
            e("*)=>[KNN 10 @vec $BLOB]"),
            "Invalid filter expression: `*)`. Unexpected character at position 2: `)`"
        );
        assert!(e("(*)=[KNN 10 @vec $BLOB]").starts_with("Invalid filter expression:"));
        assert!(e("@price:[a b]").starts_with("Invalid filter expression:"));
        assert!(e("@price:[nan 1]").starts_with("Invalid filter expression:"));
        assert!(e("@cat:{}").starts_with("Invalid filter expression:"));
        assert!(e("").starts_with("Invalid filter expression:"));
    }

    #[test]
    fn bounds_are_errors_not_stack_overflows() {
        let deep = format!("{}*{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            parse_query(&deep),
            Err(QueryError::QueryTooLong(_))
        ));
        let deep = format!("{}*{}", "(".repeat(200), ")".repeat(200));
        let err = parse_query(&deep).unwrap_err().to_string();
        assert!(err.contains("Nesting is deeper"), "{err}");
        let negations = format!("{}*", "-".repeat(500));
        assert!(parse_query(&negations).is_err());
        let many = "@t:{a} ".repeat(MAX_TERMS + 1);
        assert!(matches!(
            parse_query(&many),
            Err(QueryError::TooManyTerms(_))
        ));
        let fine = format!("{}*{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(parse_query(&fine).unwrap().filter, Node::All);
    }
}
