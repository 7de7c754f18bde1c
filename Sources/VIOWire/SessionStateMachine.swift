/// The life of one virtual link (a session) as each agent tracks it.
///
/// The brief's states map as: `initial`; `open` (data write and read); `writeEnded` (data
/// read only: this side sent its end of data); `readEnded` (data write only: the peer sent
/// its end); `closing` (both ends of data seen, waiting for close); `closed`.
public enum SessionState: String, Sendable, CaseIterable {
    case initial, open, writeEnded, readEnded, closing, closed

    /// The design brief's name for the state, as status shows it.
    public var briefName: String {
        switch self {
        case .initial: "initial"
        case .open: "data write and read"
        case .writeEnded: "data read"
        case .readEnded: "data write"
        case .closing: "closing"
        case .closed: "closed"
        }
    }
}

/// What happens to a session.
public enum SessionEvent: String, Sendable, CaseIterable {
    /// Session start (a start frame sent or received).
    case start
    /// This side writes data.
    case writeData
    /// Data arrives for this side.
    case readData
    /// This side writes its end of data.
    case writeDataEnd
    /// The peer's end of data arrives.
    case readDataEnd
    /// Session close (either side).
    case close
}

/// An event that is not valid in the session's state; the agent answers it with an error
/// (control) frame and leaves the session as it was.
public struct InvalidTransition: Error, Sendable, Equatable, CustomStringConvertible {
    /// The state the session was in.
    public var state: SessionState
    /// The event that does not apply.
    public var event: SessionEvent

    public var description: String { "event '\(event.rawValue)' is not valid in session state '\(state.rawValue)'" }
}

/// The transition function, as a table so every pair is explicit (and tested).
public struct SessionStateMachine: Sendable, Equatable {
    /// Where the session is.
    public private(set) var state: SessionState = .initial

    /// A session in `initial`.
    public init() {}

    /// The state after `event` in `state`, or nil when the event is invalid there.
    public static func next(_ state: SessionState, _ event: SessionEvent) -> SessionState? {
        switch (state, event) {
        case (.initial, .start): return .open
        case (.initial, .close): return .closed
        case (.open, .writeData), (.open, .readData): return .open
        case (.open, .writeDataEnd): return .writeEnded
        case (.open, .readDataEnd): return .readEnded
        case (.writeEnded, .readData): return .writeEnded
        case (.writeEnded, .readDataEnd): return .closing
        case (.readEnded, .writeData): return .readEnded
        case (.readEnded, .writeDataEnd): return .closing
        case (.open, .close), (.writeEnded, .close), (.readEnded, .close), (.closing, .close): return .closed
        default: return nil
        }
    }

    /// Applies `event`; throws (leaving the state unchanged) when it is invalid.
    public mutating func apply(_ event: SessionEvent) throws(InvalidTransition) {
        guard let next = Self.next(state, event) else { throw InvalidTransition(state: state, event: event) }
        state = next
    }
}
