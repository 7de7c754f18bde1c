/// Constants of the shared-memory link region layout (docs/ring-layout.md).
public enum RingLayout {
    /// Bytes in a cache line; producer and consumer indices never share one.
    public static let cacheLine = 64
}
