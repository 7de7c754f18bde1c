/// The numbers frames name links and instances by, derived from names alone so that two agents
/// agree on them without sharing a whole topology file: a link's session id and an instance's
/// destination id depend only on the names involved, never on what else a file declares.
public enum FabricIdentifiers {
    /// Session ids of links have bit 31 clear (bit 31 marks proxied connections) and are never 0.
    public static let linkSessionMask: UInt32 = 0x7FFF_FFFF

    /// The preferred session id of the link between instances `a` and `b` (either order):
    /// FNV-1a of the two names, sorted. Two links of one host pair that share it are told
    /// apart by ``probe(_:)`` in the order of their names.
    public static func session(between a: String, and b: String) -> UInt32 {
        let (first, second) = a <= b ? (a, b) : (b, a)
        let id = fnv32([first, second]) & linkSessionMask
        return id == 0 ? 1 : id
    }

    /// The next id to try when `id` is taken by another link of the same host pair.
    public static func probe(_ id: UInt32) -> UInt32 { id == linkSessionMask ? 1 : id + 1 }

    /// The destination id of instance `name`: what frames to it carry, checked on arrival.
    public static func instance(_ name: String) -> UInt32 { fnv32([name]) }

    /// 32-bit FNV-1a over `parts`, each followed by a separator byte.
    static func fnv32(_ parts: [String]) -> UInt32 { FNV1a.hash(parts, basis: 0x811C_9DC5, prime: 0x0100_0193) }
}
