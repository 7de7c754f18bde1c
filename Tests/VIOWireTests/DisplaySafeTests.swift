import Testing
import VIOWire

/// Text from outside the process printed or logged: one line, no terminal control, nothing
/// hidden, and the ordinary text untouched.
struct DisplaySafeTests {
    @Test func ordinaryTextPassesAsItIs() {
        for text in ["db1", "host 'alpha' is down: no frames for 1200 ms", "Grüße, 東京", #"C:\path\n"#] {
            #expect(DisplaySafe.escape(text) == text)
        }
    }

    @Test func controlsSeparatorsAndBidiAreEscaped() {
        #expect(DisplaySafe.escape("evil\n2026-12-06 error forged") == #"evil\u{A}2026-12-06 error forged"#)
        #expect(DisplaySafe.escape("\u{1B}[31mred\u{7}") == #"\u{1B}[31mred\u{7}"#)
        #expect(DisplaySafe.escape("a\u{202E}txt.exe") == #"a\u{202E}txt.exe"#)
        #expect(DisplaySafe.escape("x\u{2066}y\u{2069}\u{2028}\u{85}\u{0}\u{200B}") == #"x\u{2066}y\u{2069}\u{2028}\u{85}\u{0}\u{200B}"#)
        #expect(DisplaySafe.escape("tab\there\r") == #"tab\u{9}here\u{D}"#)
    }

    /// Escaping escaped text changes nothing, so a message escaped for an error and then
    /// logged through an escaping sink reads the same.
    @Test func escapingIsIdempotent() {
        let hostile = "a\nb\u{1B}c\u{202E}d\\u{41}"
        let once = DisplaySafe.escape(hostile)
        #expect(DisplaySafe.escape(once) == once)
    }

    @Test func invalidUTF8BytesAreNamed() {
        #expect(DisplaySafe.escape(bytes: Array("ok".utf8) + [0xFF, 0xC3] + Array("é\n".utf8)) == #"ok\xFF\xC3é\u{A}"#)
        #expect(DisplaySafe.escape(bytes: [0xE2, 0x80, 0xAE]) == #"\u{202E}"#)  // RLO, well-formed
        #expect(DisplaySafe.escape(bytes: [0xED, 0xA0, 0x80]) == #"\xED\xA0\x80"#)  // a surrogate
        #expect(DisplaySafe.escape(bytes: [0xC0, 0xAF]) == #"\xC0\xAF"#)  // overlong '/'
    }
}
