import Logging
import VIOWire

/// Escapes every log message and metadata value (``DisplaySafe``) before `Inner` writes it.
///
/// The agent logs what peers send it: host names from an unauthenticated HELLO, a far agent's
/// reasons, instance names from control messages. Escaping at this one sink keeps each record
/// on one line with no terminal control, so a hostile string cannot forge a record of its own,
/// whatever code path put it in a message.
public struct EscapingLogHandler<Inner: LogHandler>: LogHandler {
    /// The handler that writes the escaped records.
    public var inner: Inner

    /// Wraps `inner`.
    public init(_ inner: Inner) { self.inner = inner }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        inner.log(level: level, message: "\(DisplaySafe.escape(message.description))",
                  metadata: metadata.map(Self.escape), source: source, file: file, function: function, line: line)
    }

    /// Metadata with every string in it escaped (keys too: they may be built from input).
    static func escape(_ metadata: Logger.Metadata) -> Logger.Metadata {
        Dictionary(metadata.map { (DisplaySafe.escape($0.key), escape($0.value)) }, uniquingKeysWith: { a, _ in a })
    }

    static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let s): .string(DisplaySafe.escape(s))
        case .stringConvertible(let c): .string(DisplaySafe.escape(c.description))
        case .array(let values): .array(values.map(escape))
        case .dictionary(let d): .dictionary(escape(d))
        }
    }
}
