//! Row filters a steward writes when approving (e.g. `town = '桂城街道'`, or
//! `credit_code IN (…)` for the enterprises of an application list).
//!
//! A filter is one SQL boolean expression over the resource's own fields: comparisons,
//! AND / OR / NOT, IN lists, BETWEEN, LIKE, IS [NOT] NULL and literals. No functions, no
//! subqueries and no other tables, so what a grant admits can be read off its text and the
//! query engine can plan it on raw rows before anything else.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::AccessError;

const MAX_FILTER_BYTES: usize = 1 << 20;

/// Checks `text` against the resource's field names and returns it in normal form.
pub fn validate(text: &str, fields: &[&str]) -> Result<String, AccessError> {
    let invalid = |why: String| AccessError::Invalid(format!("row filter refused: {why}"));
    if text.len() > MAX_FILTER_BYTES {
        return Err(invalid("longer than 1 MiB".into()));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| invalid(e.to_string()))?;
    let expr = parser.parse_expr().map_err(|e| invalid(e.to_string()))?;
    if parser.peek_token().token != Token::EOF {
        return Err(invalid(
            "write one expression, without ';' or further statements".into(),
        ));
    }
    check(&expr, fields).map_err(invalid)?;
    Ok(expr.to_string())
}

fn check(expr: &Expr, fields: &[&str]) -> Result<(), String> {
    let both = |a: &Expr, b: &Expr| check(a, fields).and_then(|_| check(b, fields));
    match expr {
        Expr::Identifier(ident) => {
            let known = match ident.quote_style {
                None => fields.iter().any(|f| f.eq_ignore_ascii_case(&ident.value)),
                Some(_) => fields.contains(&ident.value.as_str()),
            };
            if known {
                Ok(())
            } else {
                Err(format!(
                    "'{}' is not a field of this resource; its fields are {}",
                    ident.value,
                    fields.join(", ")
                ))
            }
        }
        Expr::Value(_) | Expr::TypedString { .. } => Ok(()),
        Expr::BinaryOp { left, op, right } => {
            use BinaryOperator as B;
            if matches!(
                op,
                B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::And | B::Or
            ) {
                both(left, right)
            } else {
                Err(format!(
                    "operator {op} is not allowed; use comparisons, AND, OR, NOT, IN, BETWEEN, LIKE, IS NULL"
                ))
            }
        }
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not | UnaryOperator::Minus => check(expr, fields),
            other => Err(format!("operator {other} is not allowed")),
        },
        Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsFalse(inner) => check(inner, fields),
        Expr::InList { expr, list, .. } => {
            check(expr, fields)?;
            list.iter().try_for_each(|item| match item {
                Expr::Value(_) | Expr::TypedString { .. } => Ok(()),
                Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr,
                } if matches!(**expr, Expr::Value(_)) => Ok(()),
                _ => Err("an IN list holds literals only".to_string()),
            })
        }
        Expr::Between {
            expr, low, high, ..
        } => check(expr, fields)
            .and_then(|_| check(low, fields))
            .and_then(|_| check(high, fields)),
        Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => both(expr, pattern),
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            Err("subqueries are not allowed; list the values with IN (…)".into())
        }
        Expr::Function(f) => Err(format!("functions such as {} are not allowed", f.name)),
        Expr::CompoundIdentifier(parts) => Err(format!(
            "'{}' names another table; a row filter only uses this resource's fields",
            parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join(".")
        )),
        other => Err(format!("'{other}' is not allowed in a row filter")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIELDS: [&str; 4] = ["town", "credit_code", "months", "所属镇街"];

    #[test]
    fn plain_filters_are_accepted_in_normal_form() {
        assert_eq!(
            validate("town = '桂城街道'", &FIELDS).unwrap(),
            "town = '桂城街道'"
        );
        assert!(
            validate(
                "credit_code IN ('91440605MA4W1', '91440605MA4W2') AND months >= 3",
                &FIELDS
            )
            .is_ok()
        );
        assert!(validate("NOT (months BETWEEN 1 AND 2) OR town LIKE '大沥%'", &FIELDS).is_ok());
        assert!(validate("\"所属镇街\" = '丹灶镇'", &FIELDS).is_ok());
        assert!(validate("TOWN IS NOT NULL", &FIELDS).is_ok());
    }

    #[test]
    fn anything_beyond_one_expression_over_own_fields_is_refused() {
        for (text, why) in [
            ("salary > 1", "not a field"),
            ("town = (SELECT max(town) FROM other)", "subqueries"),
            ("credit_code IN (SELECT credit_code FROM x)", "subqueries"),
            ("upper(town) = 'A'", "functions"),
            ("t.town = 'A'", "another table"),
            ("town = 'A'; DROP TABLE grants", "one expression"),
            ("town = 'A' UNION SELECT 1", "one expression"),
            ("credit_code IN (town)", "literals only"),
            ("town ||| 1", "row filter refused"),
            ("", "row filter refused"),
        ] {
            let err = validate(text, &FIELDS).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    proptest! {
        #[test]
        fn accepted_filters_only_name_own_fields(text in "[a-z_ ='0-9()<>]{0,40}") {
            if let Ok(normal) = validate(&text, &FIELDS) {
                prop_assert!(validate(&normal, &FIELDS).is_ok());
            }
        }
    }
}
