//! Dropping the parameters a query's text no longer uses.
//!
//! Expressions bind their values as they are compiled, but a later operator may drop the
//! column that used them (`extend x = strcat(Computer, 'z') | project Computer`, a subquery
//! pruned to the columns read after it). SQLite ignores a number nobody uses; PostgreSQL
//! refuses the statement ("could not determine data type of parameter"). So the finished
//! text is scanned once, outside string literals, and the placeholders renumbered densely.
use std::collections::BTreeMap;

use crate::dialect::Dialect;
use crate::value::Param;

/// The text with placeholders renumbered 1..=k in order of their old numbers, and the k
/// parameters they bind.
pub(super) fn compact(sql: &str, params: Vec<Param>, dialect: Dialect) -> (String, Vec<Param>) {
    let sigil = match dialect {
        Dialect::Sqlite => '?',
        Dialect::Postgres => '$',
    };
    let used = placeholders(sql, sigil);
    let renumber: BTreeMap<usize, usize> = used
        .keys()
        .enumerate()
        .map(|(new, old)| (*old, new + 1))
        .collect();
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((at, c)) = chars.next() {
        out.push(c);
        if c == '\'' {
            quoted = !quoted;
            continue;
        }
        if quoted || c != sigil {
            continue;
        }
        let digits: String = sql[at + 1..]
            .chars()
            .take_while(|d| d.is_ascii_digit())
            .collect();
        if let Some(new) = digits
            .parse()
            .ok()
            .and_then(|old: usize| renumber.get(&old))
        {
            out.push_str(&new.to_string());
            for _ in 0..digits.len() {
                chars.next();
            }
        }
    }
    let kept = params
        .into_iter()
        .enumerate()
        .filter(|(index, _)| used.contains_key(&(index + 1)))
        .map(|(_, param)| param)
        .collect();
    (out, kept)
}

/// The placeholder numbers `sql` uses, outside string literals.
fn placeholders(sql: &str, sigil: char) -> BTreeMap<usize, ()> {
    let mut used = BTreeMap::new();
    let mut quoted = false;
    for (at, c) in sql.char_indices() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && c == sigil {
            let digits: String = sql[at + 1..]
                .chars()
                .take_while(|d| d.is_ascii_digit())
                .collect();
            if let Ok(index) = digits.parse::<usize>() {
                used.insert(index, ());
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_placeholders_go_and_the_rest_are_renumbered() {
        let params = vec![Param::Int(1), Param::Int(2), Param::Int(3), Param::Int(4)];
        let (sql, kept) = compact(
            "SELECT $2::text, '$1 in a literal', $4::bigint, $2::text",
            params.clone(),
            Dialect::Postgres,
        );
        assert_eq!(
            sql,
            "SELECT $1::text, '$1 in a literal', $2::bigint, $1::text"
        );
        assert_eq!(kept, [Param::Int(2), Param::Int(4)]);
        let (sql, kept) = compact("x = ?3 OR y = ?4 OR z = ?3", params, Dialect::Sqlite);
        assert_eq!(sql, "x = ?1 OR y = ?2 OR z = ?1");
        assert_eq!(kept, [Param::Int(3), Param::Int(4)]);
    }
}
