//! Keeps text that came from outside from becoming a live formula in a spreadsheet.

use std::borrow::Cow;

use crate::number::looks_like_phone;

/// A cell starting with `=`, `+`, `-`, `@`, tab or CR is read as a formula by spreadsheet
/// programs; such text gets a leading apostrophe. A phone number as people write it
/// (`+41 79 828 46 51`: digits and `+ - ( ) . /` only) holds no function call, so it is
/// written as it is, like canonical E.164 numbers.
pub fn neutralize_formula(text: &str) -> Cow<'_, str> {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if !looks_like_phone(text) => {
            Cow::Owned(format!("'{text}"))
        }
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
        // A phone number written with its + cannot be a formula that does anything.
        assert_eq!(neutralize_formula("+41 79 828 46 51"), "+41 79 828 46 51");
        assert_eq!(neutralize_formula("+41 79 =828"), "'+41 79 =828");
        assert_eq!(neutralize_formula(""), "");
    }
}
