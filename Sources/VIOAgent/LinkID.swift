/// The agent's id for a link, as LINK_READY and CLOSE_LINK carry it and the region header
/// records it. Links within this host and links to other hosts are numbered in ranges of
/// their own, so an id from an instance says which table holds its link; this type is the
/// one place that knows the ranges.
struct LinkID: Hashable, Comparable, CustomStringConvertible {
    /// The id on the wire.
    let rawValue: UInt64

    /// Where the link runs.
    enum Kind { case local, remote }

    /// Ids of links to other hosts start here (2^40 local links first: never reached).
    private static let remoteBase: UInt64 = 1 << 40

    /// An id as it arrived from an instance.
    init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The first id of each kind.
    static func first(_ kind: Kind) -> LinkID { LinkID(rawValue: kind == .local ? 1 : remoteBase) }

    /// The id after this one.
    var next: LinkID { LinkID(rawValue: rawValue + 1) }

    var kind: Kind { rawValue >= Self.remoteBase ? .remote : .local }

    static func < (a: LinkID, b: LinkID) -> Bool { a.rawValue < b.rawValue }
    var description: String { "\(rawValue)" }
}
