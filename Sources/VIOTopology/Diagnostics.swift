import VIOWire

/// A position in a topology file. Lines and columns count from 1. A problem with the file
/// itself (it cannot be opened or read) has no position: see ``init(wholeFile:)``.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The file as given by the user.
    public var file: String
    /// Line, from 1; 0 for the whole file.
    public var line: Int
    /// Column in Unicode scalars, from 1; 0 for the whole file.
    public var column: Int

    /// A location in `file`.
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// The file as a whole, for a problem that has no position in it because the file could
    /// not be opened or read. Everything found in a file's contents has a line and column.
    public init(wholeFile file: String) {
        self.init(file: file, line: 0, column: 0)
    }

    /// `file:line:column`, or just `file` for the whole file. The file name is escaped
    /// (``DisplaySafe``): a path holding a newline or a terminal escape stays one harmless line.
    public var description: String {
        let name = DisplaySafe.escape(file)
        return line > 0 ? "\(name):\(line):\(column)" : name
    }
}

/// One problem found in a topology file.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    /// How bad it is.
    public enum Severity: String, Sendable, Hashable {
        /// The topology cannot be used.
        case error
        /// Usable, but probably not what was meant.
        case warning
    }

    /// How bad it is.
    public var severity: Severity
    /// Where it is.
    public var location: SourceLocation
    /// What is wrong, in one sentence. May quote the file's text as it is; ``description``
    /// escapes it.
    public var message: String
    /// What to do about it, when there is something specific to say.
    public var hint: String?

    /// A diagnostic at `location`.
    public init(_ severity: Severity, at location: SourceLocation, _ message: String, hint: String? = nil) {
        self.severity = severity
        self.location = location
        self.message = message
        self.hint = hint
    }

    /// Compiler-style, on one line: `file:line:col: error: message (hint)`. Message and hint
    /// quote text from the file, so both are escaped (``DisplaySafe``): a name holding a newline
    /// or a bidirectional override can neither split the line nor reorder it on a terminal.
    public var description: String {
        var text = "\(location): \(severity.rawValue): \(DisplaySafe.escape(message))"
        if let hint { text += " (\(DisplaySafe.escape(hint)))" }
        return text
    }
}

/// A topology that could not be loaded, with every problem found.
public struct TopologyError: Error, Sendable, CustomStringConvertible {
    /// All problems, in file order; at least one is an error.
    public var diagnostics: [Diagnostic]

    /// Errors only.
    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    /// One line per diagnostic.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
