import VIOLinux
import VIOSharedMemory
import VIOWire

/// A link between two instances of this host: its region and the four doorbells. The agent
/// keeps its own references only to read counters and to wake the survivor when an end dies.
final class LocalLink {
    let id: LinkID
    /// End 0 is the instance that opened the link.
    let ends: (String, String)
    let region: LinkRegion
    let data0: OwnedFileDescriptor, space0: OwnedFileDescriptor
    let data1: OwnedFileDescriptor, space1: OwnedFileDescriptor
    let nodes: (Int, Int)

    init(id: LinkID, ends: (String, String), capacities: (Int, Int), maxMessage: Int, nodes: (Int, Int)) throws(SystemError) {
        self.id = id
        self.ends = ends
        region = try LinkRegion.create(linkID: id.rawValue, names: ends, capacities: capacities, maxMessage: maxMessage,
                                       readerNodes: nodes)
        data0 = try EventDescriptor.create(); space0 = try EventDescriptor.create()
        data1 = try EventDescriptor.create(); space1 = try EventDescriptor.create()
        self.nodes = nodes
    }

    func end(of instance: String) -> Int? {
        if ends.0 == instance { return 0 }
        if ends.1 == instance { return 1 }
        return nil
    }

    /// The descriptors LINK_READY carries to `end`, in protocol order.
    func descriptors(for end: Int) -> [Int32] {
        end == 0
            ? [region.memoryFileDescriptor, data0.rawValue, space0.rawValue, data1.rawValue, space1.rawValue]
            : [region.memoryFileDescriptor, data1.rawValue, space1.rawValue, data0.rawValue, space0.rawValue]
    }

    /// Records `state` (first cause wins) and wakes both ends so blocked calls see it.
    func finish(_ state: LinkStateWord) {
        region.setState(state)
        for fd in [data0.rawValue, space0.rawValue, data1.rawValue, space1.rawValue] { EventDescriptor.ring(fd) }
    }

    var isOpen: Bool { region.state.kind == .open }

    /// A human-readable state for status output.
    var stateDescription: String {
        let s = region.state
        let who = s.end == 0 ? ends.0 : ends.1
        switch s.kind {
        case .open:
            return (["open"] + region.notResponding).joined(separator: ", ")
        case .closed: return "closed by \(who)"
        case .gone: return "\(who) gone"
        case .corrupt: return "corrupt (found by \(who))"
        case .hostDown: return "peer host down"
        case .removed: return "removed from the topology"
        }
    }
}

/// All local links of this agent, at most one per instance pair.
struct LocalLinkTable {
    private(set) var byPair: [String: LocalLink] = [:]
    private var nextID = LinkID.first(.local)
    /// What links this table let go had carried (metrics totals).
    private(set) var retired = RetiredTraffic()

    private static func key(_ a: String, _ b: String) -> String { a < b ? "\(a)\u{0}\(b)" : "\(b)\u{0}\(a)" }

    /// The open link between `a` and `b`; a finished one is forgotten.
    mutating func open(between a: String, _ b: String) -> LocalLink? {
        let key = Self.key(a, b)
        guard let link = byPair[key] else { return nil }
        if link.isOpen { return link }
        remove(link)
        return nil
    }

    mutating func create(opener: String, peer: String, capacities: (Int, Int), maxMessage: Int,
                         nodes: (Int, Int)) throws(SystemError) -> LocalLink {
        let link = try LocalLink(id: nextID, ends: (opener, peer), capacities: capacities, maxMessage: maxMessage, nodes: nodes)
        nextID = nextID.next
        byPair[Self.key(opener, peer)] = link
        return link
    }

    func link(id: LinkID) -> LocalLink? { byPair.values.first { $0.id == id } }

    mutating func remove(_ link: LocalLink) {
        let key = Self.key(link.ends.0, link.ends.1)
        guard byPair[key] === link else { return }
        byPair[key] = nil
        retired.retire(link.region, readers: link.ends)
    }

    /// Marks every link of `instance` as gone for its peers and forgets them.
    mutating func instanceGone(_ instance: String) -> [LocalLink] {
        let affected = byPair.values.filter { $0.end(of: instance) != nil }
        for link in affected {
            link.finish(LinkStateWord(kind: .gone, end: link.end(of: instance)!))
            remove(link)
        }
        return affected
    }

    /// The link between two names in any state still held, for status.
    func any(between a: String, _ b: String) -> LocalLink? { byPair[Self.key(a, b)] }
}
