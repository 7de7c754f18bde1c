/// Text from outside the process (a frame, a control message, shared memory, a topology file)
/// made safe to print or log: it stays on one line and cannot drive the terminal.
///
/// Control characters (C0, DEL, C1), line and paragraph separators, bidirectional overrides
/// and isolates, and other invisible format characters become `\u{XX}`; invalid UTF-8 bytes
/// become `\xXX`. Everything else, backslashes included, passes as it is, so escaping twice
/// changes nothing (text escaped for an error message may later be logged by a sink that
/// escapes again).
public enum DisplaySafe {
    /// `text` with every character that could break a line or control a terminal escaped.
    public static func escape(_ text: some StringProtocol) -> String {
        // Fast path: the names and messages of a correct cluster need no escaping.
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return String(text) }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars { append(scalar, to: &out) }
        return out
    }

    private static func append(_ scalar: Unicode.Scalar, to out: inout String) {
        if needsEscape(scalar) {
            out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }

    /// Bytes that should be UTF-8 text, decoded and escaped: each invalid byte becomes `\xXX`
    /// instead of the replacement character, so the reader sees what arrived.
    public static func escape(bytes: some Collection<UInt8>) -> String {
        let b = Array(bytes)
        var out = ""
        var i = 0
        while i < b.count {
            // The lead byte gives the sequence's length; the decoder checks the rest
            // (continuations, overlong forms, surrogates, the upper bound).
            let length: Int
            switch b[i] {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: length = 0
            }
            var decoder = UTF8()
            var bytes = b[i..<min(b.count, i + max(length, 1))].makeIterator()
            if length > 0, i + length <= b.count, case .scalarValue(let scalar) = decoder.decode(&bytes) {
                append(scalar, to: &out)
                i += length
            } else {
                out += "\\x" + hex(b[i])
                i += 1
            }
        }
        return out
    }

    /// Whether `scalar` is printed as an escape.
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F..<0xA0: return true          // C0, DEL, C1
        case 0x2028, 0x2029: return true                    // line and paragraph separators
        case 0x200B...0x200F, 0x202A...0x202E,              // zero-width, marks, embeddings, overrides
             0x2060...0x206F, 0x061C, 0xFEFF: return true    // word joiner, isolates, ALM, BOM
        default:
            return scalar.properties.generalCategory == .format
        }
    }

    private static func hex(_ b: UInt8) -> String {
        let digits = String(b, radix: 16, uppercase: true)
        return b < 16 ? "0" + digits : digits
    }
}
