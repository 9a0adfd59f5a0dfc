//! Z85 (ZeroMQ RFC 32), the text form of CURVE keys, in plain Rust: the
//! core names CURVE peers by their keys and needs no libzmq for it.

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Encodes `data`, whose length must be a multiple of 4.
pub(crate) fn encode(data: &[u8]) -> Option<String> {
    if data.len() % 4 != 0 {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut digits = [0u8; 5];
        for digit in digits.iter_mut().rev() {
            *digit = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
    }
    Some(out)
}

/// Decodes `text`, whose length must be a multiple of 5; `None` for a
/// character outside the alphabet or a group beyond 32 bits.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 5 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 5 * 4);
    for group in bytes.chunks_exact(5) {
        let mut value: u64 = 0;
        for &c in group {
            let digit = ALPHABET.iter().position(|&a| a == c)?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).ok()?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_test_vector() {
        // ZeroMQ RFC 32: these 8 bytes are "HelloWorld".
        let data = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&data).as_deref(), Some("HelloWorld"));
        assert_eq!(decode("HelloWorld"), Some(data.to_vec()));
    }

    #[test]
    fn it_agrees_with_libzmq_and_refuses_what_libzmq_would() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..500 {
            let data: Vec<u8> = (0..32)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            let text = encode(&data).unwrap();
            assert_eq!(Some(text.clone()), crate::zmq::z85_encode(&data).ok());
            assert_eq!(decode(&text), Some(data));
        }
        assert_eq!(encode(&[1, 2, 3]), None);
        assert_eq!(decode("abcd"), None);
        assert_eq!(decode("abc\"e"), None, "not in the alphabet");
        assert_eq!(decode("#####"), None, "beyond 32 bits");
    }
}
