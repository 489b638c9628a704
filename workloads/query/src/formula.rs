//! Formulas across a trend's series: `A / B`, `(A - B) * 100 / A`, `-A + 2.5`.
//!
//! Letters name series in request order (A is the first). The formula is parsed once and
//! evaluated per bucket; a division by zero gives no value (`null`) for that bucket.

use cairn_common::http::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Series(usize),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    series: usize,
}

fn err(reason: impl Into<String>) -> ApiError {
    ApiError::invalid("formula", reason)
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn expr(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.term()?;
        loop {
            self.skip_ws();
            let op = match self.chars.peek() {
                Some((_, '+')) => Op::Add,
                Some((_, '-')) => Op::Sub,
                _ => return Ok(left),
            };
            self.chars.next();
            left = Expr::Bin(Box::new(left), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, ApiError> {
        let mut left = self.factor()?;
        loop {
            self.skip_ws();
            let op = match self.chars.peek() {
                Some((_, '*')) => Op::Mul,
                Some((_, '/')) => Op::Div,
                _ => return Ok(left),
            };
            self.chars.next();
            left = Expr::Bin(Box::new(left), op, Box::new(self.factor()?));
        }
    }

    fn factor(&mut self) -> Result<Expr, ApiError> {
        self.skip_ws();
        match self.chars.next() {
            Some((_, '-')) => Ok(Expr::Neg(Box::new(self.factor()?))),
            Some((_, '(')) => {
                let e = self.expr()?;
                self.skip_ws();
                match self.chars.next() {
                    Some((_, ')')) => Ok(e),
                    _ => Err(err("a parenthesis is not closed")),
                }
            }
            Some((_, c)) if c.is_ascii_alphabetic() => {
                let i = (c.to_ascii_uppercase() as u8 - b'A') as usize;
                if i >= self.series {
                    return Err(err(format!(
                        "{c} names no series: there are {} (A to {})",
                        self.series,
                        (b'A' + self.series.saturating_sub(1) as u8) as char
                    )));
                }
                Ok(Expr::Series(i))
            }
            Some((_, c)) if c.is_ascii_digit() || c == '.' => {
                let mut text = c.to_string();
                while let Some((_, d)) = self.chars.peek().copied().filter(|(_, d)| d.is_ascii_digit() || *d == '.') {
                    text.push(d);
                    self.chars.next();
                }
                text.parse().map(Expr::Num).map_err(|_| err(format!("{text} is not a number")))
            }
            Some((pos, c)) => Err(err(format!("unexpected {c:?} at position {pos}"))),
            None => Err(err("the formula ends too early")),
        }
    }
}

/// Parses `text` for `series` series.
pub fn parse(text: &str, series: usize) -> Result<Expr, ApiError> {
    if text.len() > 200 {
        return Err(err("at most 200 characters"));
    }
    let mut p = Parser { chars: text.char_indices().peekable(), series };
    let e = p.expr()?;
    p.skip_ws();
    if let Some((pos, c)) = p.chars.next() {
        return Err(err(format!("unexpected {c:?} at position {pos}")));
    }
    Ok(e)
}

impl Expr {
    /// The value for one bucket, given each series' value there.
    pub fn eval(&self, values: &[f64]) -> Option<f64> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Series(i) => values.get(*i).copied(),
            Expr::Neg(e) => e.eval(values).map(|v| -v),
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(values)?, b.eval(values)?);
                let v = match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div if b == 0.0 => return None,
                    Op::Div => a / b,
                };
                v.is_finite().then_some(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_parentheses_and_unary_minus() {
        let v = [10.0, 4.0, 2.0];
        assert_eq!(parse("A / B", 3).unwrap().eval(&v), Some(2.5));
        assert_eq!(parse("a - b * c", 3).unwrap().eval(&v), Some(2.0));
        assert_eq!(parse("(A - B) * 100 / A", 3).unwrap().eval(&v), Some(60.0));
        assert_eq!(parse("-A + 2.5", 3).unwrap().eval(&v), Some(-7.5));
        assert_eq!(parse("A / (B - 4)", 3).unwrap().eval(&v), None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["A +", "D", "A ; DROP", "(A", "A B", "1..2", ""] {
            let e = parse(bad, 3).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("formula"), "{bad}");
        }
    }
}
