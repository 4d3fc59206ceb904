//! The phandoff decoder: no input panics, and whatever parses emits to the same bytes and
//! parses again to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phandoff::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.emit();
        assert_eq!(bytes, data, "emit(parse(x)) != x");
        assert_eq!(Message::parse(&bytes), Ok(m), "parse(emit(m)) != m");
    }
});
