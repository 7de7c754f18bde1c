import VIOLinux

/// Why a data-path call on a link failed. Each case says what happened and to whom.
public enum LinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer closed the link; everything it sent before has been delivered.
    case peerClosed(peer: String)
    /// The peer's process died (the agent saw it exit). Messages this end sent that the peer
    /// had not received are lost with it.
    case peerGone(peer: String)
    /// The peer's host is unreachable (inter-host links): its agent stopped answering, the
    /// network was cut, or the agent restarted. `possiblyLost` messages this end sent were not
    /// acknowledged by the far agent: they may or may not have been delivered. Reopen the link
    /// once the host is back.
    case peerHostDown(peer: String, host: String, possiblyLost: UInt64)
    /// The agent closed the link: a reload of the topology removed it (or its peer). What the
    /// peer sent before is delivered first; messages this end sent may not have reached it.
    case removedFromTopology(peer: String)
    /// This end closed the link.
    case closed
    /// The peer stopped reading (a stopped or deadlocked process: its agent saw the ring to it
    /// hold unread data for longer than `not_responding_ms`) and the ring is full. The link
    /// stays open: a later send succeeds once the peer reads again.
    case peerNotResponding(peer: String)
    /// The local agent exited: this link to an instance on another host went through it and
    /// is gone; messages sent and not yet carried to the far host may be lost.
    case agentGone(peer: String, host: String, possiblyLost: UInt64)
    /// Shared memory holds values no correct peer writes: the link is unusable.
    case corruptRing(String)
    /// A message larger than the link's maximum.
    case messageTooLarge(size: Int, maximum: Int)
    /// A zero-copy claim larger than one ring record holds (``LinkEndpoint/maximumClaim``);
    /// messages up to the link's maximum go with send, which fragments them.
    case claimTooLarge(size: Int, maximum: Int)
    /// No message arrived, or no space freed, before the timeout.
    case timedOut
    /// A non-blocking call found nothing to read or no space to write.
    case wouldBlock
    /// A system call failed (doorbell, poll).
    case system(SystemError)
    /// The task awaiting the call was cancelled; the link is unchanged.
    case cancelled
    /// The call is not valid now (e.g. commit without claim); the link is unchanged.
    case misuse(String)

    public var description: String {
        switch self {
        case .peerClosed(let p): return "peer '\(p)' closed the link"
        case .peerGone(let p): return "peer gone: instance '\(p)' exited or detached"
        case .removedFromTopology(let p): return "the link to '\(p)' was removed from the topology (a reload of this host's agent or of the peer's no longer declares it)"
        case .peerHostDown(let p, let h, let lost):
            return "peer host down: host '\(h)' of instance '\(p)' is unreachable; \(lost) message(s) sent on this link were not acknowledged and may be lost; reopen the link when the host is back"
        case .peerNotResponding(let p):
            return "peer '\(p)' is not responding: it has left the link's ring full and unread (stopped or deadlocked?); the link stays open, try again later"
        case .closed: return "the link is closed"
        case .agentGone(let p, let h, let lost):
            return "the local vio-agent exited: the link to instance '\(p)' on host '\(h)' went through it and is gone; \(lost) message(s) sent on this link were not acknowledged by the far agent and may be lost; attach again once the agent is back"
        case .corruptRing(let detail): return "corrupt ring: \(detail); the link is closed"
        case .messageTooLarge(let size, let max): return "message of \(size) bytes exceeds the link's maximum of \(max) bytes"
        case .claimTooLarge(let size, let max):
            return "claim of \(size) bytes exceeds the \(max) bytes one ring record holds; send larger messages with send, which fragments them"
        case .timedOut: return "timed out"
        case .wouldBlock: return "would block"
        case .system(let e): return e.description
        case .cancelled: return "cancelled"
        case .misuse(let what): return "invalid use: \(what)"
        }
    }
}
