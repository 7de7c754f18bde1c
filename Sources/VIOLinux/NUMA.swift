import CNUMA

#if canImport(Glibc)
import Glibc
#endif

/// NUMA placement of shared memory through libnuma.
public enum NUMA {
    /// Number of memory nodes the kernel reports (1 on a single-node host or without NUMA).
    public static var nodeCount: Int {
        numa_available() < 0 ? 1 : Int(numa_max_node()) + 1
    }

    /// Binds the pages of `[start, start+length)` to `node` (page-aligned range, not yet
    /// touched). For a shared memfd mapping the policy is kept by the file, so pages land on
    /// `node` whichever process touches them first. Returns `false` when there is nothing to
    /// do (single node) or binding failed; placement is an optimisation, never a failure.
    @discardableResult
    public static func bind(_ start: UnsafeMutableRawPointer, length: Int, to node: Int) -> Bool {
        guard nodeCount > 1, node >= 0, node < nodeCount else { return false }
        var mask = [UInt](repeating: 0, count: (nodeCount + UInt.bitWidth - 1) / UInt.bitWidth)
        mask[node / UInt.bitWidth] |= 1 << UInt(node % UInt.bitWidth)
        return mbind(start, UInt(length), Int32(MPOL_BIND), &mask, UInt(nodeCount + 1), 0) == 0
    }
}
