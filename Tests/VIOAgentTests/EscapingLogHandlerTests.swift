import Logging
import Testing
@testable import VIOAgent

/// The agent's log sink escapes what it writes: a peer's string cannot start a record of its own.
struct EscapingLogHandlerTests {
    @Test func messagesAndMetadataAreEscaped() {
        let records = LogRecords()
        let logger = Logger(label: "test") { _ in EscapingLogHandler(RecordingLogHandler(records: records)) }
        let forged = "gamma\n2026-12-06T00:00:00+0000 error vio-agent: forged\u{1B}[2K"
        logger.warning("refused HELLO from \(forged)", metadata: [
            "peer": "\(forged)", "list": .array([.string("a\u{202E}b")]), "nested": .dictionary(["k\n": "v\r"]),
        ])
        let (_, message, metadata) = records.entries[0]
        #expect(message == #"refused HELLO from gamma\u{A}2026-12-06T00:00:00+0000 error vio-agent: forged\u{1B}[2K"#)
        #expect(metadata["peer"]?.description == #"gamma\u{A}2026-12-06T00:00:00+0000 error vio-agent: forged\u{1B}[2K"#)
        guard case .array(let list)? = metadata["list"] else { Issue.record("list metadata lost"); return }
        #expect(list.map(\.description) == [#"a\u{202E}b"#])
        guard case .dictionary(let nested)? = metadata["nested"] else { Issue.record("nested metadata lost"); return }
        #expect(nested[#"k\u{A}"#]?.description == #"v\u{D}"#)
    }
}
