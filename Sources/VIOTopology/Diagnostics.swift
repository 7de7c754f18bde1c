/// A position in a topology file. Lines and columns count from 1; 0 means "the whole file".
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The file as given by the user.
    public var file: String
    /// Line, from 1.
    public var line: Int
    /// Column in Unicode scalars, from 1.
    public var column: Int

    /// A location in `file`.
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`, or just `file` for whole-file problems.
    public var description: String {
        line > 0 ? "\(file):\(line):\(column)" : file
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
    /// What is wrong, in one sentence.
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

    /// Compiler-style: `file:line:col: error: message (hint)`.
    public var description: String {
        var text = "\(location): \(severity.rawValue): \(message)"
        if let hint { text += " (\(hint))" }
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
