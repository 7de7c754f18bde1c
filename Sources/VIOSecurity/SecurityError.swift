/// Why a key or a TLS session could not be set up, with what to do about it.
public struct SecurityError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What failed, where, and what to do.
    public var description: String

    /// An error with this text.
    public init(_ description: String) { self.description = description }
}
