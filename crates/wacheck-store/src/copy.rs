//! Encoding rows for `COPY ... FROM STDIN` in Postgres text format.

/// Appends one field, escaped for COPY text format.
pub fn push_text(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            0 => {}
            _ => buf.push(b),
        }
    }
}

pub fn push_null(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"\\N");
}

pub fn push_int(buf: &mut Vec<u8>, v: i64) {
    use std::io::Write;
    let _ = write!(buf, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_copy_specials() {
        let mut b = Vec::new();
        push_text(&mut b, "a\tb\\c\nd\re\0");
        assert_eq!(b, b"a\\tb\\\\c\\nd\\re");
    }
}
