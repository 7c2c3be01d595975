//! Number normalisation: any text, with or without a default region, never panics; what it
//! accepts is a valid E.164 number that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wacheck_core::{E164, Normalizer};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose a region (when they are letters), the rest is the cell.
    let (region, text) = data.split_at(data.len().min(2));
    let region = std::str::from_utf8(region)
        .ok()
        .filter(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()));
    let Ok(normalizer) = Normalizer::new(region) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    if let Some(e) = normalizer.normalize(&text) {
        let s = e.as_str();
        assert!(
            s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit()),
            "{s}"
        );
        assert!((8..=16).contains(&s.len()), "{s}");
        assert_eq!(E164::from_key(e.key()).as_ref(), Some(&e), "{s}");
    }
    let _ = E164::from_canonical(&text);
});
