import Atomics
import Foundation
import Testing
import VIOLinux
@testable import VIOSharedMemory

/// A peer that writes garbage into the shared region makes that link fail with a clear
/// "corrupt ring" error, never a crash.
struct ScribbleTests {
    func ring(_ link: LinkPair, _ index: Int) -> UnsafeMutableRawPointer { link.region.ringBase(index) }

    @Test func tailBeyondTheRing() throws {
        let link = try LinkPair(names: ("db1", "db2"))
        // End b reads ring 1; a hostile end a claims a tail far ahead.
        ring(link, 1).storeBytes(of: UInt64(1 << 40), toByteOffset: RegionLayout.Ring.tail, as: UInt64.self)
        #expect(throws: LinkError.self) { try link.b.receive(timeout: .zero) }
        do { _ = try link.b.receive(timeout: .zero) } catch {
            #expect(error.description.hasPrefix("corrupt ring"))
        }
        // Both ends now see the link as failed.
        #expect(link.region.state.kind == .corrupt)
        // Each end's report names the memory: the ring db1 writes, found corrupt by db2.
        #expect(throws: LinkError.corruptRing("'db2' found the ring from this end corrupt")) { try link.a.send([1]) }
        #expect(link.b.counters.received.errors >= 1)
    }

    /// An end that maps the region after its peer scribbled on it (the second instance maps
    /// when it accepts the link): cursors off a record boundary and a maximum message size of
    /// a terabyte end the link with an error, never a read or write outside the ring or an
    /// aborting allocation.
    @Test func scribbledBeforeThisEndMapped() throws {
        let capacity = 4096
        let created = try LinkRegion.create(linkID: 1, names: ("db1", "db2"), capacities: (capacity, capacity), maxMessage: 1 << 20)
        let fd = try OwnedFileDescriptor(taking: retryingSyscall("dup") { dup(created.memoryFileDescriptor) })
        let region = try LinkRegion.map(fd: fd)
        // End 1 reads ring 1 and writes ring 0.
        region.ringBase(1).storeBytes(of: UInt64(capacity - 8), toByteOffset: RegionLayout.Ring.head, as: UInt64.self)
        region.ringBase(1).storeBytes(of: UInt64(capacity + 8), toByteOffset: RegionLayout.Ring.tail, as: UInt64.self)
        region.ringBase(0).storeBytes(of: UInt64(capacity - 8), toByteOffset: RegionLayout.Ring.tail, as: UInt64.self)
        region.ringBase(0).storeBytes(of: UInt64(capacity - 8), toByteOffset: RegionLayout.Ring.head, as: UInt64.self)
        let end1 = LinkEndpoint(region: try LinkRegion.map(fd: fd), end: 1,
                                dataDoorbell: try EventDescriptor.create(), spaceDoorbell: try EventDescriptor.create(),
                                peerDataDoorbell: try EventDescriptor.create(), peerSpaceDoorbell: try EventDescriptor.create())
        // Sent first: a failed receive would end the link before the send reached the ring.
        #expect(throws: LinkError.self) { try end1.send([UInt8](repeating: 1, count: 100), timeout: .zero) }
        #expect(throws: LinkError.self) { try end1.receive(timeout: .zero) }

        // A first fragment announcing half a terabyte under a maximum scribbled to a terabyte.
        let fresh = try LinkRegion.create(linkID: 2, names: ("db1", "db2"), capacities: (capacity, capacity), maxMessage: 1 << 20)
        let freshFD = try OwnedFileDescriptor(taking: retryingSyscall("dup") { dup(fresh.memoryFileDescriptor) })
        let writer = try LinkRegion.map(fd: freshFD)
        writer.base.storeBytes(of: UInt64(1 << 40), toByteOffset: RegionLayout.Header.maxMessage, as: UInt64.self)
        let producer = RingProducer(region: writer, ring: 1, doorbell: -1)
        let p = try #require(try producer.reserve(payload: 64))
        p.initializeMemory(as: UInt8.self, repeating: 7, count: 64)
        producer.commit(payload: 64, flags: RegionLayout.Record.first, total: 1 << 39)
        let reader = LinkEndpoint(region: try LinkRegion.map(fd: freshFD), end: 1,
                                  dataDoorbell: try EventDescriptor.create(), spaceDoorbell: try EventDescriptor.create(),
                                  peerDataDoorbell: try EventDescriptor.create(), peerSpaceDoorbell: try EventDescriptor.create())
        // Either the buffer is refused or (with overcommit) taken lazily: both leave the process running.
        do { _ = try reader.receive(timeout: .zero) } catch {
            #expect(error == .wouldBlock || error.description.hasPrefix("corrupt ring"), "\(error)")
        }
    }

    /// "Peer host down" on a link within one host can only be forged: reported as an
    /// overwritten region, not as a host outage with a made-up count of lost messages.
    @Test func forgedHostDownOnALocalLink() throws {
        let link = try LinkPair(names: ("db1", "db2"))
        link.region.setAcknowledgedByFarAgent(12345)
        link.region.setState(LinkStateWord(kind: .hostDown, end: 1))
        #expect(throws: LinkError.corruptRing("the shared state says the peer's host went down, but this link is within this host: the region was overwritten")) {
            try link.a.receive(timeout: .zero)
        }
    }

    /// A state word no end writes is reported as such, not as corruption found by an end.
    @Test(arguments: [UInt32(0xFFFF_FFFF), 0x0000_0203, 0x0001_0003])
    func scribbledStateWord(word: UInt32) throws {
        let link = try LinkPair(names: ("db1", "db2"))
        link.region.base.storeBytes(of: word, toByteOffset: RegionLayout.Header.state, as: UInt32.self)
        let expected = "the link's state word in shared memory holds 0x\(String(word, radix: 16)), which neither end writes: the region was overwritten"
        #expect(throws: LinkError.corruptRing(expected)) { try link.a.send([1]) }
        #expect(throws: LinkError.corruptRing(expected)) { try link.b.receive(timeout: .zero) }
    }

    /// A well-formed "corrupt, found by end 0" that end 0 never wrote (the other end or a
    /// third process forged it): end 0 does not take the blame.
    @Test func forgedCorruptStateNamingThisEnd() throws {
        let link = try LinkPair(names: ("db1", "db2"))
        link.region.setState(LinkStateWord(kind: .corrupt, end: 0))
        #expect(throws: LinkError.corruptRing("the shared state says this end found the link corrupt, which it did not: the region was overwritten")) {
            try link.a.send([1])
        }
        #expect(throws: LinkError.corruptRing("'db1' found the ring from this end corrupt")) { try link.b.send([1]) }
    }

    @Test func recordLengthLargerThanCommitted() throws {
        let link = try LinkPair()
        try link.a.send([1, 2, 3])
        ring(link, 1).storeBytes(of: UInt32(3000), toByteOffset: RegionLayout.Ring.data + RegionLayout.Record.length, as: UInt32.self)
        #expect {
            try link.b.receive(timeout: .zero)
        } throws: { error in
            (error as? LinkError)?.description.contains("claims 3000 bytes") == true
        }
    }

    @Test(arguments: [UInt16(16), 0xFFFF, RegionLayout.Record.pad | RegionLayout.Record.first,
                      RegionLayout.Record.abort | RegionLayout.Record.last])
    func unknownFlags(flags: UInt16) throws {
        let link = try LinkPair()
        try link.a.send([1, 2, 3])
        ring(link, 1).storeBytes(of: flags, toByteOffset: RegionLayout.Ring.data + RegionLayout.Record.flags, as: UInt16.self)
        #expect(throws: LinkError.self) { try link.b.receive(timeout: .zero) }
    }

    @Test func totalThatDisagreesWithLength() throws {
        let link = try LinkPair()
        try link.a.send([1, 2, 3])
        ring(link, 1).storeBytes(of: UInt64(1 << 50), toByteOffset: RegionLayout.Ring.data + RegionLayout.Record.total, as: UInt64.self)
        #expect(throws: LinkError.self) { try link.b.receive(timeout: .zero) }
    }

    @Test func middleFragmentOutsideAMessage() throws {
        let link = try LinkPair()
        try link.a.send([1, 2, 3])
        ring(link, 1).storeBytes(of: UInt16(0), toByteOffset: RegionLayout.Ring.data + RegionLayout.Record.flags, as: UInt16.self)
        #expect(throws: LinkError.corruptRing("continuation fragment without a first fragment")) { try link.b.receive(timeout: .zero) }
    }

    @Test func continuationWithoutFirstFragment() throws {
        let link = try LinkPair()
        try link.a.send([1, 2, 3])
        ring(link, 1).storeBytes(of: RegionLayout.Record.last, toByteOffset: RegionLayout.Ring.data + RegionLayout.Record.flags, as: UInt16.self)
        #expect(throws: LinkError.corruptRing("continuation fragment without a first fragment")) { try link.b.receive(timeout: .zero) }
    }

    @Test func headBehindByMoreThanTheRing() throws {
        let link = try LinkPair(capacity: 4096)
        // The producer only reads the head when its cache says full: fill it first.
        while (try? link.a.send([1], timeout: .zero)) != nil {}
        ring(link, 1).storeBytes(of: UInt64(1 << 33), toByteOffset: RegionLayout.Ring.head, as: UInt64.self)
        #expect(throws: LinkError.self) { try link.a.send([1], timeout: .zero) }
        #expect(link.region.state.kind == .corrupt)
    }

    @Test func randomScribblingNeverCrashes() throws {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<300 {
            let link = try LinkPair(capacity: 4096)
            for i in 0..<Int.random(in: 0..<40, using: &rng) {
                try? link.a.send(Pattern.message(i, size: Int.random(in: 0..<3000, using: &rng)), timeout: .zero)
            }
            // Scribble over the ring the receiver reads: control page and data.
            let base = ring(link, 1)
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let offset = Int.random(in: 0..<(4096 + 4096 - 8), using: &rng)
                base.storeBytes(of: UInt64.random(in: 0...UInt64.max, using: &rng), toByteOffset: offset & ~7, as: UInt64.self)
            }
            // The receiver may get messages (garbage payload is not detectable), then an error
            // or empty; it must never crash or hang.
            for _ in 0..<100 {
                do { _ = try link.b.receive(timeout: .zero) } catch { break }
            }
            _ = round
        }
    }

    @Test func unsealedRegionIsRefused() throws {
        let fd = try MemoryFile.create(name: "unsealed", size: 3 * 4096 + 8192)
        #expect(throws: LinkError.corruptRing("region header: memfd is not sealed against resizing")) { try LinkRegion.map(fd: fd) }
    }

    @Test func badHeaderFieldsAreRefused() throws {
        for (offset, value) in [(RegionLayout.Header.magic, UInt64(0)), (RegionLayout.Header.version, 7),
                                (RegionLayout.Header.rings + 8, 12345), (RegionLayout.Header.rings, 64),
                                (RegionLayout.Header.maxMessage, 0)] {
            let region = try LinkRegion.create(linkID: 9, names: ("x", "y"), capacities: (4096, 4096), maxMessage: 100)
            region.base.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
            let fd = OwnedFileDescriptor(taking: dup(region.memoryFileDescriptor))
            #expect(throws: LinkError.self, "field at \(offset)") { try LinkRegion.map(fd: fd) }
        }
    }

    @Test func sealedRegionCannotBeShrunk() throws {
        let region = try LinkRegion.create(linkID: 3, names: ("x", "y"), capacities: (4096, 4096), maxMessage: 100)
        #expect(ftruncate(region.memoryFileDescriptor, 0) == -1)
        #expect(errno == EPERM)
    }
}
