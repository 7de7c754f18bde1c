import VIOLinux
import VIOSharedMemory

/// Finds instances that stopped reading: a ring whose reader leaves data unread, its read
/// position unmoved, for longer than `not_responding_ms` (a process stopped with SIGSTOP, or
/// deadlocked). The ring is flagged (``LinkRegion/setReaderStalled(ring:_:)``) and its writer
/// woken, so the writer's send fails with "peer not responding" instead of waiting forever,
/// distinct from a peer that died; the flag clears as soon as the reader moves again. A
/// cross-host link's writer is on another host: its agent is told (``Fabric``), and flags the
/// writer's ring there.
final class HangWatch {
    /// One ring read by an instance of this host.
    private struct Watched {
        var head: UInt64
        var since: UInt64
        var flagged: Bool
    }

    let limitNanoseconds: UInt64
    private var rings: [Key: Watched] = [:]
    /// When ``check(_:)`` is due next.
    private(set) var nextCheck: UInt64 = 0

    struct Key: Hashable {
        let region: ObjectIdentifier
        let ring: Int
    }

    /// A ring found stalled or moving again: `stalled`, and who reads it.
    struct Change {
        let region: LinkRegion
        let ring: Int
        let stalled: Bool
    }

    /// No watch when `milliseconds` is 0.
    init?(milliseconds: Int) {
        guard milliseconds > 0 else { return nil }
        limitNanoseconds = UInt64(milliseconds) * 1_000_000
    }

    /// How often rings are looked at while some ring has data waiting: half the limit (so a
    /// hang is reported between 1 and 1.5 limits after it began), at most every 100 ms. When
    /// the last look found every ring empty, the next comes a whole limit later (a hang that
    /// begins then is reported within 2 limits): with a thousand idle links the looking costs
    /// an idle agent half as much.
    var interval: UInt64 { max(100_000_000, limitNanoseconds / 2) }

    /// Looks at `readers` (each region with the rings an instance of this host reads) at
    /// `now`; returns the rings whose state changed. Only rings with data waiting are kept
    /// track of, so an idle agent's check is a read of two indexes per ring; regions no
    /// longer given are forgotten.
    func check(_ readers: [(region: LinkRegion, rings: ClosedRange<Int>)], now: UInt64) -> [Change] {
        nextCheck = now + interval
        var changes: [Change] = []
        var seen = Set<Key>()
        for (region, indices) in readers {
            for ring in indices {
                let (head, tail) = region.positions(ofRing: ring)
                if head == tail && rings.isEmpty { continue }
                let key = Key(region: ObjectIdentifier(region), ring: ring)
                if head == tail {
                    // Nothing waiting: responding; no longer tracked.
                    if let w = rings.removeValue(forKey: key), w.flagged {
                        region.setReaderStalled(ring: ring, false)
                        changes.append(Change(region: region, ring: ring, stalled: false))
                    }
                    continue
                }
                seen.insert(key)
                var w = rings[key] ?? Watched(head: head, since: now, flagged: false)
                if head != w.head {
                    // Read something, or nothing is waiting: responding.
                    w.head = head
                    w.since = now
                    if w.flagged {
                        w.flagged = false
                        region.setReaderStalled(ring: ring, false)
                        changes.append(Change(region: region, ring: ring, stalled: false))
                    }
                } else if !w.flagged, now &- w.since >= limitNanoseconds {
                    w.flagged = true
                    region.setReaderStalled(ring: ring, true)
                    changes.append(Change(region: region, ring: ring, stalled: true))
                }
                rings[key] = w
            }
        }
        if rings.count != seen.count { rings = rings.filter { seen.contains($0.key) } }
        if rings.isEmpty { nextCheck = now + max(interval, limitNanoseconds) }
        return changes
    }
}
