//! From a subtitle file's bytes to text: binary files refused, the encoding found and the text
//! decoded to UTF-8.
//!
//! The order of the checks: a byte-order mark decides (UTF-8, UTF-16 LE/BE); so does text that
//! is valid UTF-8. Without either, UTF-16 without a mark is recognised by its zero bytes, and
//! otherwise GB18030 and Big5 are both tried: the one that decodes without errors and reads
//! most like Chinese wins, where "like Chinese" is the share of double-byte characters that
//! fall in each standard's block of common characters and punctuation (GB2312's two levels,
//! Big5's frequently used hanzi). Real GB18030 text scores near 1 as GB18030 and about half as
//! Big5, and the other way round, because each standard's common block covers only part of the
//! other's byte pairs. When only one decodes without errors it wins whatever its score (a file of
//! traditional characters in GB18030 is mostly GBK's less common blocks). Text that neither
//! decodes cleanly (accented Latin: a lead byte before a space or a full stop) is Windows-1252,
//! which decodes every byte.

use encoding_rs::{BIG5, Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Why bytes are not subtitle text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotText {
    /// The file is empty.
    Empty,
    /// A known binary format, NUL bytes, or many control characters.
    Binary,
}

/// Text decoded from a file, with the encoding it was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    /// The WHATWG name: `UTF-8`, `UTF-16LE`, `UTF-16BE`, `gb18030`, `Big5` or `windows-1252`.
    pub encoding: &'static str,
}

/// Signatures of formats people pick by mistake (videos, pictures, archives, documents).
const BINARY_MAGIC: &[&[u8]] = &[
    b"\x1a\x45\xdf\xa3", // Matroska / WebM
    b"\x89PNG",
    b"\xff\xd8\xff", // JPEG
    b"GIF8",
    b"PK\x03\x04", // ZIP (and office documents)
    b"%PDF",
    b"\x7fELF",
    b"RIFF",
    b"OggS",
    b"\x1f\x8b", // gzip
    b"BZh",
    b"7z\xbc\xaf",
    b"Rar!",
    b"ID3",
    b"fLaC",
];
/// More than one in this many characters being a control character or undecodable makes the
/// file binary.
const CONTROL_SHARE: usize = 100;
/// The least share (in percent) of common characters for a double-byte decoding to be chosen.
const PLAUSIBLE_PERCENT: usize = 80;

/// Decodes `bytes`, refusing what is not text.
///
/// # Errors
/// `Empty` for no bytes, `Binary` for a known binary signature, NUL bytes outside UTF-16, or
/// text with many control characters.
pub fn decode(bytes: &[u8]) -> Result<Decoded, NotText> {
    if bytes.iter().all(|byte| byte.is_ascii_whitespace()) {
        return Err(NotText::Empty);
    }
    if is_binary_signature(bytes) {
        return Err(NotText::Binary);
    }
    let decoded = if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        decode_with(encoding, &bytes[bom_length..]).0
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        Decoded { text: text.to_owned(), encoding: UTF_8.name() }
    } else if let Some(encoding) = utf16_without_bom(bytes) {
        decode_with(encoding, bytes).0
    } else {
        decode_legacy(bytes)
    };
    if decoded.encoding != UTF_16LE.name() && decoded.encoding != UTF_16BE.name() && bytes.contains(&0) {
        return Err(NotText::Binary);
    }
    if looks_binary(&decoded.text) {
        return Err(NotText::Binary);
    }
    Ok(decoded)
}

fn is_binary_signature(bytes: &[u8]) -> bool {
    // MP4 and QuickTime: a box size, then `ftyp`.
    BINARY_MAGIC.iter().any(|magic| bytes.starts_with(magic)) || bytes.get(4..8) == Some(b"ftyp")
}

/// The text and whether the decoder met malformed input.
fn decode_with(encoding: &'static Encoding, bytes: &[u8]) -> (Decoded, bool) {
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    (Decoded { text: text.into_owned(), encoding: encoding.name() }, had_errors)
}

/// UTF-16 without a byte-order mark: most ASCII characters then have a zero byte beside them,
/// at odd offsets for little-endian and even ones for big-endian.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static Encoding> {
    if bytes.len() < 4 || !bytes.len().is_multiple_of(2) {
        return None;
    }
    let pairs = bytes.len() / 2;
    let zero_high = bytes.chunks_exact(2).filter(|pair| pair[1] == 0 && pair[0] != 0).count();
    let zero_low = bytes.chunks_exact(2).filter(|pair| pair[0] == 0 && pair[1] != 0).count();
    // Subtitle text is mostly digits, punctuation and spaces even in Chinese: the timing lines.
    if zero_high * 10 >= pairs * 3 && zero_low * 10 < pairs {
        Some(UTF_16LE)
    } else if zero_low * 10 >= pairs * 3 && zero_high * 10 < pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// GB18030 or Big5, whichever reads more like Chinese, else Windows-1252.
fn decode_legacy(bytes: &[u8]) -> Decoded {
    let gb_score = double_byte_score(bytes, is_common_gb);
    let big5_score = double_byte_score(bytes, is_common_big5);
    let mut candidates = Vec::new();
    for (encoding, score) in [(GB18030, gb_score), (BIG5, big5_score)] {
        let Some(score) = score else { continue };
        let (decoded, had_errors) = decode_with(encoding, bytes);
        if !had_errors {
            candidates.push((score, decoded));
        }
    }
    // The most plausible first; a tie goes to GB18030, the superset the mainland's files use.
    candidates.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let mut candidates = candidates.into_iter();
    match (candidates.next(), candidates.next()) {
        // Both read cleanly: the common characters decide, when one reads as common text.
        (Some((score, decoded)), Some(_)) if score >= PLAUSIBLE_PERCENT => decoded,
        // Only one reads without errors: text of the other's uncommon characters (traditional
        // characters in GB18030) is still that one. Latin text with accents fails both.
        (Some((_, decoded)), None) => decoded,
        (Some((score, decoded)), Some(_)) if score > 0 => decoded,
        _ => decode_with(WINDOWS_1252, bytes).0,
    }
}

/// The share (percent) of the lead/trail byte pairs that `common` accepts, reading `bytes` as a
/// double-byte encoding whose lead bytes are 0x81..=0xFE; `None` when there are no such pairs.
fn double_byte_score(bytes: &[u8], common: fn(u8, u8) -> bool) -> Option<usize> {
    let (mut pairs, mut hits) = (0_usize, 0_usize);
    let mut index = 0;
    while index < bytes.len() {
        let lead = bytes[index];
        if (0x81..=0xfe).contains(&lead) {
            let Some(&trail) = bytes.get(index + 1) else { break };
            pairs += 1;
            if common(lead, trail) {
                hits += 1;
            }
            index += 2;
        } else {
            index += 1;
        }
    }
    (pairs > 0).then(|| hits * 100 / pairs)
}

/// GB2312's symbols (full-width punctuation among them) and its two levels of hanzi.
fn is_common_gb(lead: u8, trail: u8) -> bool {
    (0xa1..=0xfe).contains(&trail) && ((0xa1..=0xa9).contains(&lead) || (0xb0..=0xf7).contains(&lead))
}

/// Big5's symbols and its frequently used hanzi (0xA140..=0xC67E).
fn is_common_big5(lead: u8, trail: u8) -> bool {
    let trail_ok = (0x40..=0x7e).contains(&trail) || (0xa1..=0xfe).contains(&trail);
    trail_ok && (0xa1..=0xc6).contains(&lead) && !(lead == 0xc6 && trail > 0x7e)
}

fn looks_binary(text: &str) -> bool {
    let (mut chars, mut bad) = (0_usize, 0_usize);
    for c in text.chars() {
        chars += 1;
        let control = c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}');
        if control || c == char::REPLACEMENT_CHARACTER {
            bad += 1;
        }
    }
    bad > 0 && bad * CONTROL_SHARE > chars
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHINESE: &str = "1\n00:00:01,000 --> 00:00:04,000\n你好，世界。这是第一句字幕。\n\n2\n00:00:05,000 --> 00:00:08,000\n我们一起看电影吧！\n";
    const TRADITIONAL: &str = "1\n00:00:01,000 --> 00:00:04,000\n這是繁體中文的字幕。\n\n2\n00:00:05,000 --> 00:00:08,000\n我們一起看電影吧！\n";

    #[test]
    fn utf8_with_and_without_a_bom() {
        let plain = decode(CHINESE.as_bytes()).unwrap();
        assert_eq!((plain.text.as_str(), plain.encoding), (CHINESE, "UTF-8"));
        let with_bom = [b"\xef\xbb\xbf".as_slice(), CHINESE.as_bytes()].concat();
        assert_eq!(decode(&with_bom).unwrap(), plain);
    }

    #[test]
    fn gb18030_and_big5_are_told_apart() {
        let (gb, _, _) = GB18030.encode(CHINESE);
        let decoded = decode(&gb).unwrap();
        assert_eq!((decoded.text.as_str(), decoded.encoding), (CHINESE, "gb18030"));
        let (big5, _, _) = BIG5.encode(TRADITIONAL);
        let decoded = decode(&big5).unwrap();
        assert_eq!((decoded.text.as_str(), decoded.encoding), (TRADITIONAL, "Big5"));
        // Simplified text that Big5 can also hold (some characters are shared) stays GB18030.
        let (gb_traditional, _, _) = GB18030.encode(TRADITIONAL);
        assert_eq!(decode(&gb_traditional).unwrap().text, TRADITIONAL);
    }

    #[test]
    fn utf16_with_a_bom_and_without() {
        let le: Vec<u8> = CHINESE.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = CHINESE.encode_utf16().flat_map(u16::to_be_bytes).collect();
        for (bytes, name) in [(le, "UTF-16LE"), (be, "UTF-16BE")] {
            let bom = if name == "UTF-16LE" { b"\xff\xfe" } else { b"\xfe\xff" };
            let decoded = decode(&[bom.as_slice(), &bytes].concat()).unwrap();
            assert_eq!((decoded.text.as_str(), decoded.encoding), (CHINESE, name));
            assert_eq!(decode(&bytes).unwrap().text, CHINESE, "{name} without a mark");
        }
    }

    #[test]
    fn latin_text_is_windows_1252() {
        let bytes = b"1\n00:00:01,000 --> 00:00:02,000\nD\xe9j\xe0 vu, \xe7a va tr\xe8s bien.\n";
        let decoded = decode(bytes).unwrap();
        assert_eq!(decoded.encoding, "windows-1252");
        assert!(decoded.text.contains("Déjà vu, ça va très bien."));
    }

    #[test]
    fn binary_and_empty_files_are_refused() {
        assert_eq!(decode(b""), Err(NotText::Empty));
        assert_eq!(decode(b" \n\r\n"), Err(NotText::Empty));
        assert_eq!(decode(b"\x1a\x45\xdf\xa3\x01\x00"), Err(NotText::Binary));
        assert_eq!(decode(b"\x00\x00\x00\x20ftypisom"), Err(NotText::Binary));
        assert_eq!(decode(b"WEBVTT\n\n\x00\x01\x02"), Err(NotText::Binary));
        let noise: Vec<u8> = (0..4096_u32).map(|index| u8::try_from((index * 7919) % 256).unwrap()).collect();
        assert_eq!(decode(&noise), Err(NotText::Binary));
    }
}
