//! The xlsx reader: any bytes are read row by row or refused with an error, never a panic,
//! a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wacheck_core::input::{InputFormat, read_rows};

fuzz_target!(
    init: {
        // The service reads workbooks under `catch_unwind` (the parser can panic on crafted
        // input, and such a file is refused with 400). Let those panics unwind to it, as in the
        // service; a panic anywhere else still ends the run, as unwinding out of the fuzz
        // entry point aborts.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let _ = wacheck_core::input::detect(data, Some("upload.xlsx"));
    let _ = read_rows(
        std::io::Cursor::new(data),
        InputFormat::Xlsx,
        100_000,
        |row| {
            // Cells are cut to a bounded length whatever the input.
            assert!(row.chars().count() <= wacheck_core::input::MAX_RAW_CHARS);
            Ok(())
        },
    );
});
