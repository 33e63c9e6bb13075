//! Writing KQL text from program values: tools that build a query from options (the `fim`
//! CLI's `--workspace` mode, the dashboard's filters) quote every value with [`string`], so
//! a value can never end the literal and add an operator.

/// `text` as a single-quoted KQL string literal, with the lexer's escapes.
pub fn string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use crate::{compile, Catalog, Dialect, Options, Param};

    #[test]
    fn a_quoted_value_stays_one_literal_whatever_it_holds() {
        for hostile in [
            "plain",
            "it's",
            "a\\' | take 1 //",
            "two\nlines\tand\rmore",
            "' or 1 == 1 or Computer == '",
        ] {
            let kql = format!(
                "ConfigurationChange | where Computer == {}",
                super::string(hostile)
            );
            let query = compile(
                &kql,
                &Catalog::configuration_change(),
                Dialect::Sqlite,
                &Options::default(),
            )
            .unwrap();
            assert!(
                query.params.contains(&Param::Text(hostile.to_string())),
                "{hostile:?}: {:?}",
                query.params
            );
        }
    }
}
