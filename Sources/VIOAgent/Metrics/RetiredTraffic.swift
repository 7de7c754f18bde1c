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
            let c = region.counters(ofRing: ring)
            var total = byDirection[Self.key(writer, reader)] ?? AgentStatus.DirectionCounters()
            total.messages &+= c.messagesSent
            total.bytes &+= c.bytesSent
            total.wakeups &+= c.wakeupsSent
            total.fullStalls &+= c.fullStalls
            total.errors &+= c.errors
            byDirection[Self.key(writer, reader)] = total
        }
    }

    /// What links from `writer` to `reader` carried before they went.
    func counters(from writer: String, to reader: String) -> AgentStatus.DirectionCounters {
        byDirection[Self.key(writer, reader)] ?? AgentStatus.DirectionCounters()
    }
}

extension AgentStatus.DirectionCounters {
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
