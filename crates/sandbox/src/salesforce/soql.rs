//! Parser for the small SOQL subset the sandbox answers:
//!
//! ```text
//! SELECT f1, f2 FROM Contact
//!   [WHERE cond [AND cond]…]          cond := field (= | != | <> | < | <= | > | >=) literal
//!                                            | field [NOT] IN (literal, …)
//!   [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n] [OFFSET n]
//! literal := 'text' | 2024-01-01T00:00:00Z (date-time, unquoted) | true | false | null | 123
//! ```
//!
//! Keywords are case-insensitive. Anything else (OR, parentheses, functions, relationship
//! fields, date literals such as `TODAY`, sub-queries) is refused with `MALFORMED_QUERY` and a
//! message naming what is supported. What it is not: the field/type checks and evaluation,
//! which are in `query.rs`.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select.htm

use chrono::{DateTime, Utc};

use super::errors::SfError;
use lexer::{Token, tokenize};

mod lexer;

const SUPPORTED: &str = "supported: SELECT <fields> FROM Contact [WHERE <field> <op> <value> [AND ...]] \
[ORDER BY <field> [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]";

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    DateTime(DateTime<Utc>),
    Bool(bool),
    Null,
    Number(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

/// `field op value`, or `field [NOT] IN (values)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    /// One value, or the list of an `IN`.
    pub values: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    pub field: String,
    pub descending: bool,
    /// SOQL's default: nulls first when ascending, last when descending.
    pub nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub fields: Vec<String>,
    pub object: String,
    /// Joined by AND.
    pub conditions: Vec<Condition>,
    pub order: Vec<OrderKey>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

fn unexpected(what: impl std::fmt::Display) -> SfError {
    SfError::malformed_query(format!("unexpected token: '{what}' ({SUPPORTED})"))
}

/// Parses a query of the supported subset.
pub fn parse(q: &str) -> Result<Query, SfError> {
    let mut p = Parser {
        toks: tokenize(q)?,
        pos: 0,
    };
    p.require("SELECT")?;
    let mut query = Query {
        fields: p.list(Parser::field)?,
        ..Query::default()
    };
    p.require("FROM")?;
    query.object = p.word()?;
    if p.keyword("WHERE") {
        query.conditions.push(p.condition()?);
        while p.keyword("AND") {
            query.conditions.push(p.condition()?);
        }
    }
    if p.keyword("ORDER") {
        p.require("BY")?;
        query.order = p.list(Parser::order_key)?;
    }
    if p.keyword("LIMIT") {
        query.limit = Some(p.count()?);
    }
    if p.keyword("OFFSET") {
        query.offset = Some(p.count()?);
    }
    match p.toks.get(p.pos) {
        Some(t) => Err(unexpected(t)),
        None => Ok(query),
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Result<Token, SfError> {
        let t = self.toks.get(self.pos).cloned().ok_or_else(|| {
            SfError::malformed_query(format!("unexpected end of query ({SUPPORTED})"))
        })?;
        self.pos += 1;
        Ok(t)
    }

    fn peek_is(&self, sym: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Token::Sym(s)) if *s == sym)
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let hit =
            matches!(self.toks.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw));
        self.pos += usize::from(hit);
        hit
    }

    fn require(&mut self, kw: &str) -> Result<(), SfError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(unexpected(self.next()?))
        }
    }

    fn word(&mut self) -> Result<String, SfError> {
        match self.next()? {
            Token::Word(w) => Ok(w),
            other => Err(unexpected(other)),
        }
    }

    /// A field name; functions such as `COUNT()` are refused.
    fn field(&mut self) -> Result<String, SfError> {
        let w = self.word()?;
        if self.peek_is("(") {
            return Err(SfError::malformed_query(format!(
                "functions such as {w}() are not supported ({SUPPORTED})"
            )));
        }
        Ok(w)
    }

    fn list<T>(&mut self, item: fn(&mut Self) -> Result<T, SfError>) -> Result<Vec<T>, SfError> {
        let mut out = vec![item(self)?];
        while self.peek_is(",") {
            self.pos += 1;
            out.push(item(self)?);
        }
        Ok(out)
    }

    fn condition(&mut self) -> Result<Condition, SfError> {
        let field = self.field()?;
        let op = if self.keyword("NOT") {
            self.require("IN")?;
            Op::NotIn
        } else if self.keyword("IN") {
            Op::In
        } else {
            match self.next()? {
                Token::Sym("=") => Op::Eq,
                Token::Sym("!=" | "<>") => Op::Ne,
                Token::Sym("<") => Op::Lt,
                Token::Sym("<=") => Op::Le,
                Token::Sym(">") => Op::Gt,
                Token::Sym(">=") => Op::Ge,
                other => return Err(unexpected(other)),
            }
        };
        let values = if matches!(op, Op::In | Op::NotIn) {
            self.require_sym("(")?;
            let values = self.list(Parser::literal)?;
            self.require_sym(")")?;
            values
        } else {
            vec![self.literal()?]
        };
        Ok(Condition { field, op, values })
    }

    fn require_sym(&mut self, sym: &str) -> Result<(), SfError> {
        match self.next()? {
            Token::Sym(s) if s == sym => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn literal(&mut self) -> Result<Literal, SfError> {
        match self.next()? {
            Token::Text(t) => Ok(Literal::Text(t)),
            Token::DateTime(d) => Ok(Literal::DateTime(d)),
            Token::Number(n) => Ok(Literal::Number(n)),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            other => Err(unexpected(other)),
        }
    }

    fn order_key(&mut self) -> Result<OrderKey, SfError> {
        let field = self.field()?;
        let descending = self.keyword("DESC");
        if !descending {
            self.keyword("ASC");
        }
        let nulls_last = if self.keyword("NULLS") {
            if self.keyword("LAST") {
                true
            } else {
                self.require("FIRST").map(|()| false)?
            }
        } else {
            descending
        };
        Ok(OrderKey {
            field,
            descending,
            nulls_last,
        })
    }

    fn count(&mut self) -> Result<usize, SfError> {
        match self.next()? {
            Token::Number(n) => n.parse().map_err(|_| unexpected(n)),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_shapes() {
        let q = parse("select Id, Email from Contact where Email = 'a\\'b@x.com' and SystemModstamp >= 2024-01-01T00:00:00Z order by SystemModstamp desc, Id limit 10 offset 5").unwrap();
        assert_eq!(q.fields, vec!["Id", "Email"]);
        assert_eq!(q.object, "Contact");
        assert_eq!(
            q.conditions[0].values,
            vec![Literal::Text("a'b@x.com".into())]
        );
        assert_eq!(q.conditions[1].op, Op::Ge);
        assert!(
            matches!(q.conditions[1].values[0], Literal::DateTime(d) if d.timestamp() == 1_704_067_200)
        );
        assert_eq!(
            q.order[0],
            OrderKey {
                field: "SystemModstamp".into(),
                descending: true,
                nulls_last: true
            }
        );
        assert_eq!(
            q.order[1],
            OrderKey {
                field: "Id".into(),
                descending: false,
                nulls_last: false
            }
        );
        assert_eq!((q.limit, q.offset), (Some(10), Some(5)));
    }

    #[test]
    fn in_lists_and_offsets_in_datetimes() {
        let q = parse("SELECT Id FROM Contact WHERE Id IN ('a','b') AND Title NOT IN ('x') AND SystemModstamp > 2024-01-01T01:00:00.000+01:00").unwrap();
        assert_eq!(q.conditions[0].values.len(), 2);
        assert_eq!(q.conditions[1].op, Op::NotIn);
        assert!(
            matches!(q.conditions[2].values[0], Literal::DateTime(d) if d.timestamp() == 1_704_067_200)
        );
    }

    #[test]
    fn unsupported_syntax_is_malformed_query() {
        for q in [
            "SELECT Id FROM Contact WHERE Email = 'a' OR Email = 'b'",
            "SELECT COUNT() FROM Contact",
            "SELECT Id FROM Contact WHERE CreatedDate = TODAY",
            "SELECT Id FROM Contact WHERE Email = 'open",
            "SELECT Id FROM Contact WHERE SystemModstamp > 2024-13-01T00:00:00Z",
            "SELECT Id Contact",
            "DELETE FROM Contact",
            "SELECT Id FROM Contact LIMIT",
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.code.as_str(), "MALFORMED_QUERY", "{q}");
        }
    }
}
