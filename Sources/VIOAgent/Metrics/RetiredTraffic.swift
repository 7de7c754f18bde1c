import VIOSharedMemory
import VIOWire

/// The traffic of links that are gone, per direction (writer instance → reader instance): what
/// their rings counted when the agent let them go. Metrics add it to the live links' counters,
/// so totals survive a link's closing and reopening.
struct RetiredTraffic {
    private var byDirection: [String: AgentStatus.DirectionCounters] = [:]

    private static func key(_ writer: String, _ reader: String) -> String { "\(writer)\u{0}\(reader)" }

    /// Adds `region`'s counters: ring r is read by `readers`.r and written by the other end.
    mutating func retire(_ region: LinkRegion, readers: (String, String)) {
        for (ring, reader, writer) in [(0, readers.0, readers.1), (1, readers.1, readers.0)] {
            let key = Self.key(writer, reader)
            byDirection[key] = counters(from: writer, to: reader).adding(AgentStatus.DirectionCounters(region.counters(ofRing: ring)))
        }
    }

    /// What links from `writer` to `reader` carried before they went.
    func counters(from writer: String, to reader: String) -> AgentStatus.DirectionCounters {
        byDirection[Self.key(writer, reader)] ?? AgentStatus.DirectionCounters()
    }
}

extension AgentStatus.DirectionCounters {
    /// What one ring counted (its writer's side of a direction).
    init(_ c: RingCounters) {
        self.init(messages: c.messagesSent, bytes: c.bytesSent, wakeups: c.wakeupsSent, fullStalls: c.fullStalls, errors: c.errors)
    }

    /// These counters plus `other`'s.
    func adding(_ other: AgentStatus.DirectionCounters) -> AgentStatus.DirectionCounters {
        var sum = self
        sum.messages &+= other.messages
        sum.bytes &+= other.bytes
        sum.wakeups &+= other.wakeups
        sum.fullStalls &+= other.fullStalls
        sum.errors &+= other.errors
        return sum
    }
}
