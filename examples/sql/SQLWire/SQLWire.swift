import VIOWire

/// The SQL example's wire format (examples/sql/README.md): one request message, one reply
/// message, little-endian, the same over a VIO link and over TCP (where each message is
/// preceded by its length, u32). The C client (c/sql_client.c) speaks it too.

/// A value bound to a parameter or read from a row.
public enum SQLValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// As `sqlite3 -list` prints it.
    public var description: String {
        switch self {
        case .null: ""
        case .integer(let v): "\(v)"
        case .real(let v): "\(v)"
        case .text(let v): v
        case .blob(let v): "x'" + v.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() + "'"
        }
    }

    func encode(to w: inout ByteWriter) {
        switch self {
        case .null: w.write(UInt8(0))
        case .integer(let v): w.write(UInt8(1)); w.write(v)
        case .real(let v): w.write(UInt8(2)); w.write(v.bitPattern)
        case .text(let v): w.write(UInt8(3)); w.write(UInt32(v.utf8.count)); w.write(raw: v.utf8)
        case .blob(let v): w.write(UInt8(4)); w.write(UInt32(v.count)); w.write(raw: v)
        }
    }

    init(from r: inout ByteReader) throws(DecodeError) {
        switch try r.read(UInt8.self) {
        case 0: self = .null
        case 1: self = .integer(try r.read())
        case 2: self = .real(Double(bitPattern: try r.read()))
        case 3:
            let n = Int(try r.read(UInt32.self))
            guard let text = String(validating: try r.readBytes(n), as: UTF8.self) else { throw .invalid(field: "text", value: "not UTF-8") }
            self = .text(text)
        case 4: self = .blob(try r.readBytes(Int(try r.read(UInt32.self))))
        case let t: throw .invalid(field: "value type", value: "\(t)")
        }
    }
}

/// One request: SQL text (one or more statements) and the values of its `?` parameters.
public struct SQLRequest: Sendable, Equatable {
    public static let version: UInt8 = 1
    public var sql: String
    public var parameters: [SQLValue]

    public init(_ sql: String, _ parameters: [SQLValue] = []) {
        self.sql = sql
        self.parameters = parameters
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 16 + sql.utf8.count)
        w.write(Self.version)
        w.write(UInt16(parameters.count))
        for p in parameters { p.encode(to: &w) }
        w.write(UInt32(sql.utf8.count)); w.write(raw: sql.utf8)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let version = try r.read(UInt8.self)
        guard version == Self.version else { throw .invalid(field: "request version", value: "\(version)") }
        let count = Int(try r.read(UInt16.self))
        guard count <= r.remaining else { throw .invalid(field: "parameter count", value: "\(count)") }
        parameters = []
        for _ in 0..<count { parameters.append(try SQLValue(from: &r)) }
        let n = Int(try r.read(UInt32.self))
        guard let text = String(validating: try r.readBytes(n), as: UTF8.self) else { throw .invalid(field: "sql", value: "not UTF-8") }
        sql = text
        try r.expectEnd()
    }
}

/// One reply: the last statement's rows (any number: the link carries a message of any size),
/// or the error that stopped the request.
public enum SQLReply: Sendable, Equatable {
    case rows(columns: [String], rows: [[SQLValue]], changes: Int64)
    case error(String)

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.write(SQLRequest.version)
        switch self {
        case .rows(let columns, let rows, let changes):
            w.write(UInt8(0))
            w.write(UInt16(columns.count))
            for c in columns { w.write(UInt32(c.utf8.count)); w.write(raw: c.utf8) }
            w.write(UInt32(rows.count))
            for row in rows { for v in row { v.encode(to: &w) } }
            w.write(changes)
        case .error(let message):
            w.write(UInt8(1))
            w.write(UInt32(message.utf8.count)); w.write(raw: message.utf8)
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let version = try r.read(UInt8.self)
        guard version == SQLRequest.version else { throw .invalid(field: "reply version", value: "\(version)") }
        func text() throws(DecodeError) -> String {
            let n = Int(try r.read(UInt32.self))
            guard let t = String(validating: try r.readBytes(n), as: UTF8.self) else { throw .invalid(field: "text", value: "not UTF-8") }
            return t
        }
        switch try r.read(UInt8.self) {
        case 0:
            let columnCount = Int(try r.read(UInt16.self))
            var columns: [String] = []
            for _ in 0..<columnCount { columns.append(try text()) }
            let rowCount = Int(try r.read(UInt32.self))
            guard rowCount * max(1, columnCount) <= r.remaining else { throw .invalid(field: "row count", value: "\(rowCount)") }
            var rows: [[SQLValue]] = []
            rows.reserveCapacity(rowCount)
            for _ in 0..<rowCount {
                var row: [SQLValue] = []
                for _ in 0..<columnCount { row.append(try SQLValue(from: &r)) }
                rows.append(row)
            }
            self = .rows(columns: columns, rows: rows, changes: try r.read())
        case 1:
            self = .error(try text())
        case let s: throw .invalid(field: "reply status", value: "\(s)")
        }
        try r.expectEnd()
    }

    /// `a|b|c` lines, as `sqlite3 -list` prints rows; the error as `error: ...`.
    public var listing: String {
        switch self {
        case .rows(_, let rows, _): rows.map { $0.map(\.description).joined(separator: "|") }.joined(separator: "\n")
        case .error(let message): "error: \(message)"
        }
    }
}
