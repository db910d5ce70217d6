//! The expression language of FT.AGGREGATE's `APPLY` and `FILTER`, parsed with winnow.
//!
//! ```text
//! or   := and ( "||" and )*          and := cmp ( "&&" cmp )*
//! cmp  := sum ( ("=="|"!="|"<="|">="|"<"|">") sum )?
//! sum  := prod ( ("+"|"-") prod )*   prod := pow ( ("*"|"/"|"%") pow )*
//! pow  := unary ( "^" pow )?         (right-associative, as RediSearch's)
//! unary:= "!" unary | "-" unary | primary
//! primary := number | 'string' | "string" | @field | name "(" args ")" | "(" or ")"
//! number  := [0-9.]+ ( [eE] [+-]? [0-9]+ )?
//! ```
//!
//! Values are numbers or strings as in RediSearch; a missing field is null, and null
//! propagates through arithmetic.

use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{alt, cut_err, delimited, fail, opt, preceded, repeat, separated};
use winnow::error::{StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{none_of, one_of, take_while};

use crate::args::parse_f64;
use crate::error::{QueryError, Result};
use crate::MAX_DEPTH;

/// A value while evaluating.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Number(f64),
    Str(String),
}

impl Scalar {
    /// The number this value reads as, if any (strings that spell numbers count).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => Some(*n),
            Scalar::Str(s) => parse_f64(s.as_bytes()),
            Scalar::Null => None,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Scalar::Null => false,
            Scalar::Number(n) => *n != 0.0,
            Scalar::Str(s) => !s.is_empty(),
        }
    }

    fn text(&self) -> String {
        match self {
            Scalar::Null => String::new(),
            Scalar::Number(n) => format_number(*n),
            Scalar::Str(s) => s.clone(),
        }
    }
}

/// Numbers as RediSearch prints them: integers without a point, others with up to 17
/// significant digits trimmed of trailing zeros.
pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Upper,
    Lower,
    Abs,
    Floor,
    Ceil,
    Sqrt,
    Log,
    Log2,
    Exp,
    Strlen,
    Exists,
    /// `substr(s, offset, count)`: `count` characters from `offset` (from the end when
    /// negative); a negative `count` stops that many characters before the end.
    Substr,
    /// `contains(s, sub)`: how many times `sub` occurs in `s`, overlaps counted.
    Contains,
    /// `startswith(s, prefix)`: 1 or 0.
    StartsWith,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Scalar),
    Field(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

impl Expr {
    /// Evaluates against a row; `field` looks a `@name` up.
    pub fn eval(&self, field: &dyn Fn(&str) -> Option<Scalar>) -> Scalar {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Field(name) => field(name).unwrap_or(Scalar::Null),
            Expr::Not(e) => bool_value(!e.eval(field).truthy()),
            Expr::Neg(e) => match e.eval(field).as_number() {
                Some(n) => Scalar::Number(-n),
                None => Scalar::Null,
            },
            Expr::Binary(op, a, b) => binary(*op, a.eval(field), || b.eval(field)),
            Expr::Call(f, args) => {
                let values: Vec<Scalar> = args.iter().map(|a| a.eval(field)).collect();
                call(*f, &values)
            }
        }
    }

    /// Whether the row passes, for FILTER.
    pub fn test(&self, field: &dyn Fn(&str) -> Option<Scalar>) -> bool {
        self.eval(field).truthy()
    }

    /// Every `@name` the expression reads, so that a shard can fetch them for a router
    /// that evaluates the expression without the documents.
    pub fn fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Field(name) => out.push(name),
            Expr::Not(e) | Expr::Neg(e) => e.fields(out),
            Expr::Binary(_, a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
        }
    }
}

fn bool_value(b: bool) -> Scalar {
    Scalar::Number(if b { 1.0 } else { 0.0 })
}

fn binary(op: BinaryOp, a: Scalar, b: impl FnOnce() -> Scalar) -> Scalar {
    match op {
        BinaryOp::Or => {
            if a.truthy() {
                return bool_value(true);
            }
            bool_value(b().truthy())
        }
        BinaryOp::And => {
            if !a.truthy() {
                return bool_value(false);
            }
            bool_value(b().truthy())
        }
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let b = b();
            let ordering = match (a.as_number(), b.as_number()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => Some(a.text().cmp(&b.text())),
            };
            let Some(ordering) = ordering else {
                return bool_value(false);
            };
            use std::cmp::Ordering::{Equal, Greater, Less};
            bool_value(match op {
                BinaryOp::Eq => ordering == Equal,
                BinaryOp::Ne => ordering != Equal,
                BinaryOp::Lt => ordering == Less,
                BinaryOp::Le => ordering != Greater,
                BinaryOp::Gt => ordering == Greater,
                BinaryOp::Ge => ordering != Less,
                BinaryOp::Or
                | BinaryOp::And
                | BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Mod
                | BinaryOp::Pow => false,
            })
        }
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Mod
        | BinaryOp::Pow => {
            let (Some(x), Some(y)) = (a.as_number(), b().as_number()) else {
                return Scalar::Null;
            };
            Scalar::Number(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Mod => x % y,
                BinaryOp::Pow => x.powf(y),
                BinaryOp::Or
                | BinaryOp::And
                | BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => return Scalar::Null,
            })
        }
    }
}

fn call(f: Function, args: &[Scalar]) -> Scalar {
    let first = args.first().cloned().unwrap_or(Scalar::Null);
    let math = |g: fn(f64) -> f64| match first.as_number() {
        Some(n) => Scalar::Number(g(n)),
        None => Scalar::Null,
    };
    match f {
        Function::Upper => Scalar::Str(first.text().to_uppercase()),
        Function::Lower => Scalar::Str(first.text().to_lowercase()),
        Function::Strlen => Scalar::Number(first.text().chars().count() as f64),
        Function::Exists => bool_value(first != Scalar::Null),
        Function::Abs => math(f64::abs),
        Function::Floor => math(f64::floor),
        Function::Ceil => math(f64::ceil),
        Function::Sqrt => math(f64::sqrt),
        Function::Log => math(f64::ln),
        Function::Log2 => math(f64::log2),
        Function::Exp => math(f64::exp),
        Function::Substr => substr(args),
        Function::Contains => {
            let (text, sub) = (first.text(), arg_text(args, 1));
            Scalar::Number(if sub.is_empty() {
                text.chars().count() as f64 + 1.0
            } else {
                occurrences(&text, &sub) as f64
            })
        }
        Function::StartsWith => bool_value(first.text().starts_with(&arg_text(args, 1))),
    }
}

fn arg_text(args: &[Scalar], at: usize) -> String {
    args.get(at).map(Scalar::text).unwrap_or_default()
}

/// Occurrences of `sub` in `text`, each search resuming one character after the last
/// match's start (RediSearch's `contains("aaa", "aa")` is 2).
fn occurrences(text: &str, sub: &str) -> usize {
    let mut count = 0;
    let mut from = 0;
    while let Some(at) = text[from..].find(sub) {
        count += 1;
        let start = from + at;
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    count
}

/// RediSearch's `substr`, over characters: offsets past either end are clamped, and a
/// negative count ends that many characters before the end.
fn substr(args: &[Scalar]) -> Scalar {
    let number = |at: usize| args.get(at).and_then(Scalar::as_number);
    let (Some(text), Some(offset), Some(count)) = (args.first(), number(1), number(2)) else {
        return Scalar::Null;
    };
    let chars: Vec<char> = text.text().chars().collect();
    let len = chars.len() as i64;
    let mut start = offset as i64;
    if start < 0 {
        start += len;
    }
    let start = start.clamp(0, len);
    let end = if count < 0.0 {
        len.saturating_add(count as i64)
    } else {
        start.saturating_add(count as i64).min(len)
    };
    let (start, end) = (start as usize, end.max(start) as usize);
    Scalar::Str(chars[start..end].iter().collect())
}

/// Longest APPLY/FILTER expression. Operator chains build left-deep trees that are
/// evaluated (and dropped) recursively, so the length bounds the depth: at most about a
/// thousand operators, far inside a worker thread's stack.
pub const MAX_EXPR_LEN: usize = 2048;

/// Parses an APPLY or FILTER expression.
pub fn parse_expr(text: &str) -> Result<Expr> {
    if text.len() > MAX_EXPR_LEN {
        return Err(QueryError::QueryTooLong(MAX_EXPR_LEN));
    }
    delimited(multispace0, |i: &mut &str| or_expr(i, 0), multispace0)
        .parse(text)
        .map_err(|e| {
            QueryError::Aggregate(format!(
                "Invalid expression `{text}` at position {}",
                e.offset() + 1
            ))
        })
}

type In<'a> = &'a str;

fn ws(i: &mut In<'_>) -> ModalResult<()> {
    multispace0.void().parse_next(i)
}

fn chain(
    i: &mut In<'_>,
    depth: usize,
    next: fn(&mut In<'_>, usize) -> ModalResult<Expr>,
    ops: &[(&'static str, BinaryOp)],
) -> ModalResult<Expr> {
    let mut left = next(i, depth)?;
    loop {
        let checkpoint = *i;
        ws(i)?;
        let op = ops.iter().find(|(token, _)| i.starts_with(token));
        let Some((token, op)) = op else {
            *i = checkpoint;
            return Ok(left);
        };
        // "<" must not swallow the start of "<=", nor "!" the start of "!=": the tables
        // list longer tokens first.
        *i = &i[token.len()..];
        ws(i)?;
        let right = cut_err(|i: &mut In<'_>| next(i, depth)).parse_next(i)?;
        left = Expr::Binary(*op, Box::new(left), Box::new(right));
    }
}

fn or_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    chain(i, depth, and_expr, &[("||", BinaryOp::Or)])
}

fn and_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    chain(i, depth, cmp_expr, &[("&&", BinaryOp::And)])
}

fn cmp_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    chain(
        i,
        depth,
        sum_expr,
        &[
            ("==", BinaryOp::Eq),
            ("!=", BinaryOp::Ne),
            ("<=", BinaryOp::Le),
            (">=", BinaryOp::Ge),
            ("<", BinaryOp::Lt),
            (">", BinaryOp::Gt),
        ],
    )
}

fn sum_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    chain(
        i,
        depth,
        prod_expr,
        &[("+", BinaryOp::Add), ("-", BinaryOp::Sub)],
    )
}

fn prod_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    chain(
        i,
        depth,
        pow_expr,
        &[
            ("*", BinaryOp::Mul),
            ("/", BinaryOp::Div),
            ("%", BinaryOp::Mod),
        ],
    )
}

fn pow_expr(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    let base = unary(i, depth)?;
    let checkpoint = *i;
    ws(i)?;
    if !i.starts_with('^') {
        *i = checkpoint;
        return Ok(base);
    }
    *i = &i[1..];
    ws(i)?;
    // Right-associative: `2 ^ 3 ^ 2` is 2 ^ 9. Each `^` is a level of nesting.
    let exponent = cut_err(|i: &mut In<'_>| pow_expr(i, depth + 1)).parse_next(i)?;
    Ok(Expr::Binary(
        BinaryOp::Pow,
        Box::new(base),
        Box::new(exponent),
    ))
}

fn unary(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    if depth > MAX_DEPTH {
        return cut_err(fail.context(StrContext::Label("nesting depth"))).parse_next(i);
    }
    alt((
        preceded(('!', ws), |i: &mut In<'_>| unary(i, depth + 1)).map(|e| Expr::Not(Box::new(e))),
        preceded(('-', ws), |i: &mut In<'_>| unary(i, depth + 1)).map(|e| Expr::Neg(Box::new(e))),
        |i: &mut In<'_>| primary(i, depth),
    ))
    .parse_next(i)
}

fn primary(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    alt((
        delimited(
            ('(', ws),
            |i: &mut In<'_>| or_expr(i, depth + 1),
            (
                ws,
                cut_err(')'.context(StrContext::Expected(StrContextValue::CharLiteral(')')))),
            ),
        ),
        preceded(
            '@',
            take_while(1.., |c: char| c.is_alphanumeric() || c == '_'),
        )
        .map(|f: &str| Expr::Field(f.to_owned())),
        string.map(|s| Expr::Literal(Scalar::Str(s))),
        (
            take_while(1.., |c: char| c.is_ascii_digit() || c == '.'),
            opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digit1)),
        )
            .take()
            .verify_map(|s: &str| s.parse::<f64>().ok())
            .map(|n| Expr::Literal(Scalar::Number(n))),
        |i: &mut In<'_>| function(i, depth),
    ))
    .parse_next(i)
}

fn string(i: &mut In<'_>) -> ModalResult<String> {
    alt((
        delimited('\'', repeat(0.., none_of(['\''])), cut_err('\'')),
        delimited('"', repeat(0.., none_of(['"'])), cut_err('"')),
    ))
    .parse_next(i)
}

fn function(i: &mut In<'_>, depth: usize) -> ModalResult<Expr> {
    let name = take_while(1.., |c: char| c.is_ascii_alphanumeric() || c == '_').parse_next(i)?;
    let f = match name.to_ascii_lowercase().as_str() {
        "upper" => Function::Upper,
        "lower" => Function::Lower,
        "abs" => Function::Abs,
        "floor" => Function::Floor,
        "ceil" => Function::Ceil,
        "sqrt" => Function::Sqrt,
        "log" => Function::Log,
        "log2" => Function::Log2,
        "exp" => Function::Exp,
        "strlen" => Function::Strlen,
        "exists" => Function::Exists,
        "substr" => Function::Substr,
        "contains" => Function::Contains,
        "startswith" => Function::StartsWith,
        _ => return fail.parse_next(i),
    };
    let args: Vec<Expr> = delimited(
        (ws, '(', ws),
        separated(0.., |i: &mut In<'_>| or_expr(i, depth + 1), (ws, ',', ws)),
        (ws, cut_err(')')),
    )
    .parse_next(i)?;
    let _ = opt(ws).parse_next(i)?;
    Ok(Expr::Call(f, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, row: &[(&str, Scalar)]) -> Scalar {
        let e = parse_expr(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        e.eval(&|name| row.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn arithmetic_precedence_and_comparisons() {
        assert_eq!(eval("1 + 2 * 3", &[]), Scalar::Number(7.0));
        assert_eq!(eval("(1 + 2) * 3", &[]), Scalar::Number(9.0));
        assert_eq!(
            eval("@price * 2", &[("price", Scalar::Str("21".into()))]),
            Scalar::Number(42.0)
        );
        assert_eq!(
            eval("@a >= 3 && @a < 4", &[("a", Scalar::Number(3.0))]),
            Scalar::Number(1.0)
        );
        assert_eq!(
            eval("@a != 'x' || 0", &[("a", Scalar::Str("x".into()))]),
            Scalar::Number(0.0)
        );
        assert_eq!(
            eval("-@a", &[("a", Scalar::Number(2.0))]),
            Scalar::Number(-2.0)
        );
        assert_eq!(eval("!0", &[]), Scalar::Number(1.0));
    }

    #[test]
    fn functions_and_nulls() {
        assert_eq!(
            eval("upper(@c)", &[("c", Scalar::Str("ab".into()))]),
            Scalar::Str("AB".into())
        );
        assert_eq!(eval("floor(2.7) + abs(-1)", &[]), Scalar::Number(3.0));
        assert_eq!(eval("@missing + 1", &[]), Scalar::Null);
        assert_eq!(eval("exists(@missing)", &[]), Scalar::Number(0.0));
    }

    #[test]
    fn errors_and_bounds() {
        assert!(parse_expr("1 +").is_err());
        assert!(parse_expr("nosuch(1)").is_err());
        assert!(parse_expr("(1").is_err());
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse_expr(&deep).is_err());
        let long = "1+".repeat(2000) + "1";
        assert!(matches!(
            parse_expr(&long),
            Err(QueryError::QueryTooLong(_))
        ));
        let chain = "1+".repeat(1000) + "1";
        assert_eq!(
            parse_expr(&chain).unwrap().eval(&|_| None),
            Scalar::Number(1001.0)
        );
    }

    #[test]
    fn powers_exponents_and_string_functions() {
        assert_eq!(eval("2 ^ 3 ^ 2", &[]), Scalar::Number(512.0));
        assert_eq!(eval("2 * 3 ^ 2", &[]), Scalar::Number(18.0));
        assert_eq!(eval("(2 * 3)^2", &[]), Scalar::Number(36.0));
        assert_eq!(eval("1e3 + 2.5E-1", &[]), Scalar::Number(1000.25));
        assert_eq!(eval("1.5e+2", &[]), Scalar::Number(150.0));
        assert!(parse_expr("1e").is_err());
        let hello = [("s", Scalar::Str("hello".into()))];
        assert_eq!(eval("substr(@s, 1, 3)", &hello), Scalar::Str("ell".into()));
        assert_eq!(eval("substr(@s, -2, 5)", &hello), Scalar::Str("lo".into()));
        assert_eq!(eval("substr(@s, 2, -1)", &hello), Scalar::Str("ll".into()));
        assert_eq!(eval("substr(@s, 1, -9)", &hello), Scalar::Str("".into()));
        assert_eq!(eval("substr(@s, 9, 2)", &hello), Scalar::Str("".into()));
        assert_eq!(eval("substr(@s, 1)", &hello), Scalar::Null);
        assert_eq!(eval("contains(@s, 'l')", &hello), Scalar::Number(2.0));
        assert_eq!(eval("contains(@s, '')", &hello), Scalar::Number(6.0));
        assert_eq!(eval("contains('aaa', 'aa')", &[]), Scalar::Number(2.0));
        assert_eq!(eval("contains('éé', 'é')", &[]), Scalar::Number(2.0));
        assert_eq!(eval("startswith(@s, 'he')", &hello), Scalar::Number(1.0));
        assert_eq!(eval("startswith(@s, 'lo')", &hello), Scalar::Number(0.0));
        let deep = "2^".repeat(500) + "1";
        assert!(parse_expr(&deep).is_err());
    }

    #[test]
    fn numbers_print_like_redisearch() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(-0.5), "-0.5");
    }

    #[test]
    fn fields_lists_every_reference() {
        let e = parse_expr("upper(@a) == 'X' && -@b > @c * 2").unwrap();
        let mut out = Vec::new();
        e.fields(&mut out);
        assert_eq!(out, ["a", "b", "c"]);
    }
}
