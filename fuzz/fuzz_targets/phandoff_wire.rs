//! The phandoff decoder (protocol version 2): no input panics, and whatever parses emits to
//! the same bytes and parses again to the same message; the same for the plaintext bodies of
//! transport messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phandoff::wire::{Body, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.emit();
        assert_eq!(bytes, data, "emit(parse(x)) != x");
        assert_eq!(Message::parse(&bytes), Ok(m), "parse(emit(m)) != m");
    }
    if let Ok(b) = Body::parse(data) {
        let bytes = b.emit();
        assert_eq!(bytes, data, "Body: emit(parse(x)) != x");
        assert_eq!(Body::parse(&bytes), Ok(b), "Body: parse(emit(b)) != b");
    }
});
