//! Keeps text that came from outside from becoming a live formula in a spreadsheet.

use std::borrow::Cow;

/// A cell starting with `=`, `+`, `-`, `@`, tab or CR is read as a formula by spreadsheet
/// programs; such text gets a leading apostrophe. Canonical E.164 numbers never pass through
/// here (they are written as they are).
pub fn neutralize_formula(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starters_are_defused() {
        assert_eq!(
            neutralize_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(neutralize_formula("+1+2"), "'+1+2");
        assert_eq!(neutralize_formula("-2"), "'-2");
        assert_eq!(neutralize_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralize_formula("hello"), "hello");
        assert_eq!(neutralize_formula(""), "");
    }
}
