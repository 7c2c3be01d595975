//! Postgres array literals (`{1,NULL,3}`, `{"a",NULL}`), bound as text and cast by the server:
//! many values travel as one parameter, so a whole block of rows is one array element.

use std::fmt::Write;

/// Appends an array of integers (`NULL` for `None`); integers need no quoting.
pub fn push_int_array(s: &mut String, values: impl IntoIterator<Item = Option<i64>>) {
    s.push('{');
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Some(v) => {
                let _ = write!(s, "{v}");
            }
            None => s.push_str("NULL"),
        }
    }
    s.push('}');
}

/// Appends one element of a text array, quoted. NUL characters are dropped: Postgres text
/// cannot hold them.
pub fn push_array_text(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\0' => {}
            _ => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        let mut s = String::new();
        push_int_array(&mut s, [Some(1), None, Some(-3)]);
        assert_eq!(s, "{1,NULL,-3}");
        let mut s = String::new();
        push_array_text(&mut s, "a\"b\\c\0\td");
        assert_eq!(s, "\"a\\\"b\\\\c\td\"");
    }
}
