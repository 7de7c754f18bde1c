import CSQLite
import SQLWire

#if canImport(Glibc)
import Glibc
#endif

/// One SQLite connection to the server's shared in-memory database (SQLite's `memdb` VFS:
/// every connection of the process that opens the same name sees the same database, with
/// SQLite's own locking). Each client session has its own connection, so its transaction is
/// its own; a writer waits up to 10 s for another's write lock.
final class Database {
    let handle: OpaquePointer

    /// Opens `name` (created empty by the first connection).
    init(name: String) throws(DatabaseError) {
        var h: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2("file:/\(name)?vfs=memdb", &h, flags, nil)
        guard rc == SQLITE_OK, let h else {
            let message = h.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let h { sqlite3_close_v2(h) }
            throw DatabaseError(message: "cannot open the in-memory database '\(name)': \(message)")
        }
        handle = h
        // A writer that finds another's lock retries every millisecond for up to 10 s.
        // (sqlite3_busy_timeout backs off to 100 ms sleeps: a lock released by a dead client's
        // rollback would be noticed up to 100 ms late.)
        sqlite3_busy_handler(h, { _, attempts in
            guard attempts < 10_000 else { return 0 }
            usleep(1000)
            return 1
        }, nil)
    }

    deinit { sqlite3_close_v2(handle) }

    /// Whether a transaction is open on this connection.
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Rolls back the open transaction, if any.
    func rollback() {
        if inTransaction { sqlite3_exec(handle, "ROLLBACK", nil, nil, nil) }
    }

    /// Runs every statement of the request in order; the reply has the last one's rows, or the
    /// first error (statements before it took effect, as in `sqlite3`). A result larger than
    /// `replyLimit` bytes is an error (the reply could not be sent), and a statement stops when
    /// `abandoned` says the client is gone (a dead client's endless query must not keep its
    /// locks).
    func execute(_ request: SQLRequest, replyLimit: Int, abandoned: @escaping () -> Bool) -> SQLReply {
        var reply = SQLReply.rows(columns: [], rows: [], changes: 0)
        let text = Array(request.sql.utf8CString)
        // Asked every 10,000 virtual-machine steps: cheap next to the statement itself.
        final class Watch { let abandoned: () -> Bool; init(_ a: @escaping () -> Bool) { abandoned = a } }
        let watch = Unmanaged.passRetained(Watch(abandoned))
        sqlite3_progress_handler(handle, 10_000, { context in
            Unmanaged<Watch>.fromOpaque(context!).takeUnretainedValue().abandoned() ? 1 : 0
        }, watch.toOpaque())
        defer {
            sqlite3_progress_handler(handle, 0, nil, nil)
            watch.release()
        }
        return text.withUnsafeBufferPointer { buffer -> SQLReply in
            var cursor = buffer.baseAddress!
            while cursor.pointee != 0 {
                var statement: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                guard sqlite3_prepare_v2(handle, cursor, -1, &statement, &tail) == SQLITE_OK else { return .error(lastError) }
                guard let statement else { break }  // only whitespace or a comment was left
                defer { sqlite3_finalize(statement) }
                let wanted = Int(sqlite3_bind_parameter_count(statement))
                guard wanted <= request.parameters.count else {
                    return .error("the statement has \(wanted) parameters, the request gives \(request.parameters.count)")
                }
                for (index, value) in request.parameters.prefix(wanted).enumerated() { bind(value, at: Int32(index + 1), in: statement) }
                let columnCount = sqlite3_column_count(statement)
                let columns = (0..<columnCount).map { String(cString: sqlite3_column_name(statement, $0)) }
                var rows: [[SQLValue]] = []
                // The reply's size so far, as SQLReply encodes it.
                var size = 16 + columns.reduce(0) { $0 + 4 + $1.utf8.count }
                while true {
                    let rc = sqlite3_step(statement)
                    if rc == SQLITE_DONE { break }
                    guard rc == SQLITE_ROW else { return .error(lastError) }
                    let row = (0..<columnCount).map { column(statement, $0) }
                    size += row.reduce(0) { $0 + $1.encodedSize }
                    guard size <= replyLimit else {
                        return .error("the result is larger than \(replyLimit) bytes, the most one reply carries; narrow the query (LIMIT, fewer columns)")
                    }
                    rows.append(row)
                }
                reply = .rows(columns: columns, rows: rows, changes: sqlite3_changes64(handle))
                guard let tail else { break }
                cursor = tail
            }
            return reply
        }
    }

    private var lastError: String { String(cString: sqlite3_errmsg(handle)) }

    private func bind(_ value: SQLValue, at index: Int32, in statement: OpaquePointer) {
        switch value {
        case .null: sqlite3_bind_null(statement, index)
        case .integer(let v): sqlite3_bind_int64(statement, index, v)
        case .real(let v): sqlite3_bind_double(statement, index, v)
        case .text(let v): sqlite3_bind_text(statement, index, v, -1, vio_sql_transient())
        case .blob(let v): _ = v.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), vio_sql_transient()) }
        }
    }

    private func column(_ statement: OpaquePointer, _ index: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, index)))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let base = sqlite3_column_blob(statement, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: base, count: count)))
        default: return .null
        }
    }
}

struct DatabaseError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension SQLValue {
    /// Bytes the value takes in a reply.
    var encodedSize: Int {
        switch self {
        case .null: 1
        case .integer, .real: 9
        case .text(let t): 5 + t.utf8.count
        case .blob(let b): 5 + b.count
        }
    }
}
