import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

extension LinkEndpoint {
    /// Both ends of a new link inside this process (e.g. between two threads), wired as the
    /// agent wires two instances: one sealed region, each end mapping it separately, four
    /// doorbells.
    public static func localPair(capacity: Int = 1 << 20, maxMessage: Int = 64 << 20,
                                 names: (String, String) = ("a", "b")) throws -> (LinkEndpoint, LinkEndpoint) {
        let region = try LinkRegion.create(linkID: 1, names: names, capacities: (capacity, capacity), maxMessage: maxMessage)
        let fd = try OwnedFileDescriptor(taking: retryingSyscall("dup") { dup(region.memoryFileDescriptor) })
        let regionA = try LinkRegion.map(fd: fd)
        let regionB = try LinkRegion.map(fd: fd)
        let dataA = try EventDescriptor.create(), spaceA = try EventDescriptor.create()
        let dataB = try EventDescriptor.create(), spaceB = try EventDescriptor.create()
        let dataA2 = try dataA.duplicate(), spaceA2 = try spaceA.duplicate()
        let dataB2 = try dataB.duplicate(), spaceB2 = try spaceB.duplicate()
        let a = LinkEndpoint(region: regionA, end: 0, dataDoorbell: dataA, spaceDoorbell: spaceA,
                             peerDataDoorbell: dataB2, peerSpaceDoorbell: spaceB2)
        let b = LinkEndpoint(region: regionB, end: 1, dataDoorbell: dataB, spaceDoorbell: spaceB,
                             peerDataDoorbell: dataA2, peerSpaceDoorbell: spaceA2)
        return (a, b)
    }
}
