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

/// The name a result file downloads as: the input's name with `-result` and the result's
/// extension (`contacts.csv` → `contacts-result.xlsx`), else `fallback`. Only letters, digits,
/// `.`, `-`, `_` and spaces are kept, so the name is safe in a header and on any file system.
pub fn result_file_name(input_name: Option<&str>, fallback: &str, extension: &str) -> String {
    let base = input_name
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .map(|n| n.rsplit_once('.').map_or(n, |(stem, _)| stem))
        .map(|stem| {
            stem.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect::<String>()
        })
        .map(|s| s.trim_matches(['.', ' ']).to_owned())
        .filter(|s| !s.is_empty());
    match base {
        Some(stem) => format!("{stem}-result.{extension}"),
        None => format!("{fallback}.{extension}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_are_named_after_the_input() {
        assert_eq!(
            result_file_name(Some("contacts.csv"), "01J", "xlsx"),
            "contacts-result.xlsx"
        );
        assert_eq!(
            result_file_name(Some("C:\\lists\\Kunden 2026.xlsx"), "01J", "csv"),
            "Kunden 2026-result.csv"
        );
        assert_eq!(
            result_file_name(Some("a\"b;c.txt"), "01J", "csv"),
            "a_b_c-result.csv"
        );
        assert_eq!(result_file_name(Some("..."), "01J", "csv"), "01J.csv");
        assert_eq!(result_file_name(None, "01J", "xlsx"), "01J.xlsx");
    }

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
        // A phone number as people write it too: a spreadsheet would compute `+1-800-555-0199`.
        assert_eq!(neutralize_formula("+1-800-555-0199"), "'+1-800-555-0199");
        assert_eq!(neutralize_formula(""), "");
    }
}
