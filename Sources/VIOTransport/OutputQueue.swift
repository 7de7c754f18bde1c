import DequeModule

#if canImport(Glibc)
import Glibc
#endif

/// Who lends payload bytes to a channel, and hears when the channel is done with them.
public protocol PayloadLender: AnyObject {
    /// The channel has written every frame of this lender up to the one enqueued with
    /// `position`: bytes lent for them may be reused.
    func sent(through position: UInt64)
    /// All the memory the lender lends from (a link's whole region), for transports that
    /// register it so the far end can read payloads in place; nil when it cannot be.
    var lentMemory: UnsafeRawBufferPointer? { get }
}

extension PayloadLender {
    public var lentMemory: UnsafeRawBufferPointer? { nil }
}

/// A payload lent to a channel with its frame: the bytes stay valid and unchanged until
/// `lender` hears a position at or past this frame's.
public struct PayloadLoan {
    /// Who lent the bytes.
    public let lender: PayloadLender
    /// What to report once the frame (and every earlier one) is written; nil when a later
    /// frame of the same lender reports for this one too (a record cut into several frames).
    public let position: UInt64?

    /// A loan.
    public init(lender: PayloadLender, position: UInt64?) {
        self.lender = lender
        self.position = position
    }
}

/// A channel's pending output: runs of copied bytes (headers, small payloads) and payloads
/// sent in place from their lender's memory (a link's ring), in order. Copying a large
/// payload would cost a pass over every byte; handing its address to `sendmsg` costs none.
final class OutputQueue {
    /// Payloads at least this large are sent in place when lent; smaller ones are copied.
    static let lendThreshold = 2048

    private struct Segment {
        /// Copied bytes at the front of `copied`, or 0 for a lent payload.
        var copiedCount: Int
        var lent: UnsafeRawBufferPointer?
        var loan: PayloadLoan?
    }

    private let copied = ByteQueue()
    private var segments = Deque<Segment>()
    /// Bytes of the first segment already written.
    private var written = 0
    /// Bytes queued.
    private(set) var count = 0

    /// Room for `n` copied bytes at the back (the caller fills them).
    private func extend(by n: Int) -> UnsafeMutableRawPointer {
        let p = copied.extend(by: n)
        appendCopied(n)
        return p
    }

    private func appendCopied(_ n: Int) {
        count += n
        if let last = segments.last, last.lent == nil, last.loan == nil {
            segments[segments.count - 1].copiedCount += n
        } else {
            segments.append(Segment(copiedCount: n, lent: nil, loan: nil))
        }
    }

    /// Adds a frame: `head` bytes written by `fill` (header, and prefix), then `payload`.
    /// A lent payload goes in place when `inPlace` allows and it is large (it stays valid
    /// until its loan, or a later one of the same lender, is reported); anything else is
    /// copied after the head in one reservation. The loan's position is reported once the
    /// payload is written.
    func appendFrame(head: Int, _ fill: (UnsafeMutableRawPointer) -> Void, payload: UnsafeRawBufferPointer,
                     loan: PayloadLoan?, inPlace: Bool) {
        if let loan, inPlace, payload.count >= Self.lendThreshold {
            fill(extend(by: head))
            segments.append(Segment(copiedCount: 0, lent: payload, loan: loan))
            count += payload.count
            return
        }
        if head + payload.count == 0 {
            // Nothing to write: the frame is as good as sent.
            if let loan, let position = loan.position { loan.lender.sent(through: position) }
            return
        }
        let p = extend(by: head + payload.count)
        fill(p)
        if let source = payload.baseAddress, payload.count > 0 {
            (p + head).copyMemory(from: source, byteCount: payload.count)
        }
        // Not empty: the frame was just added.
        if let loan, loan.position != nil { segments[segments.count - 1].loan = loan }
    }

    /// Fills `vectors` with the pending bytes in order; returns how many it used.
    func gather(into vectors: UnsafeMutableBufferPointer<iovec>) -> Int {
        var used = 0
        var copiedOffset = 0
        for (i, segment) in segments.enumerated() where used < vectors.count {
            let skip = i == 0 ? written : 0
            if let lent = segment.lent {
                vectors[used] = iovec(iov_base: UnsafeMutableRawPointer(mutating: lent.baseAddress! + skip), iov_len: lent.count - skip)
            } else {
                let base = copied.bytes.baseAddress! + copiedOffset
                vectors[used] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + skip), iov_len: segment.copiedCount - skip)
                copiedOffset += segment.copiedCount
            }
            used += 1
        }
        return used
    }

    /// The longest contiguous run of pending bytes at the front (for writers that take one
    /// buffer at a time, like TLS, which then cuts full records across frame boundaries):
    /// a lent payload, or every copied segment up to the next lent one.
    var front: UnsafeRawBufferPointer? {
        guard let first = segments.first else { return nil }
        if let lent = first.lent { return UnsafeRawBufferPointer(rebasing: lent[written...]) }
        var run = 0
        for segment in segments {
            guard segment.lent == nil else { break }
            run += segment.copiedCount
        }
        return UnsafeRawBufferPointer(start: copied.bytes.baseAddress! + written, count: run - written)
    }

    /// Drops `n` written bytes from the front, reporting finished loans.
    func consume(_ n: Int) {
        var left = n
        count -= n
        while left > 0, let first = segments.first {
            let size = first.lent?.count ?? first.copiedCount
            let take = min(left, size - written)
            left -= take
            written += take
            guard written == size else { break }
            if first.lent == nil { copied.consume(size) }
            segments.removeFirst()
            written = 0
            if let loan = first.loan, let position = loan.position { loan.lender.sent(through: position) }
        }
    }
}
