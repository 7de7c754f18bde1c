import CVIOShim
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An anonymous shared-memory file (memfd), sealed against resizing once laid out.
public enum MemoryFile {
    /// Creates a memfd of `size` bytes, with sealing allowed.
    public static func create(name: String, size: Int) throws(SystemError) -> OwnedFileDescriptor {
        let fd = OwnedFileDescriptor(taking: try retryingSyscall("memfd_create", detail: name) {
            vio_shim_memfd_create(name, vio_shim_MFD_CLOEXEC | vio_shim_MFD_ALLOW_SEALING)
        })
        _ = try retryingSyscall("ftruncate", detail: name) { ftruncate(fd.rawValue, off_t(size)) }
        return fd
    }

    /// Forbids shrinking and growing, and further sealing: a peer holding the fd can no longer
    /// truncate the file under our mapping (which would turn our reads into SIGBUS).
    public static func sealSize(_ fd: borrowing OwnedFileDescriptor) throws(SystemError) {
        let seals = vio_shim_F_SEAL_SHRINK | vio_shim_F_SEAL_GROW | vio_shim_F_SEAL_SEAL
        _ = try retryingSyscall("fcntl(F_ADD_SEALS)") { fcntl(fd.rawValue, vio_shim_F_ADD_SEALS, seals) }
    }

    /// Whether the file is sealed against shrinking and growing (checked before mapping a
    /// region received from someone else).
    public static func isSizeSealed(_ fd: borrowing OwnedFileDescriptor) -> Bool {
        let seals = fcntl(fd.rawValue, vio_shim_F_GET_SEALS)
        let needed = vio_shim_F_SEAL_SHRINK | vio_shim_F_SEAL_GROW
        return seals >= 0 && seals & needed == needed
    }

    /// The file's size in bytes.
    public static func size(_ fd: borrowing OwnedFileDescriptor) throws(SystemError) -> Int {
        var info = stat()
        _ = try retryingSyscall("fstat") { fstat(fd.rawValue, &info) }
        return Int(info.st_size)
    }
}

/// A shared read-write mapping, unmapped exactly once when dropped.
public struct SharedMapping: ~Copyable, @unchecked Sendable {
    /// Start of the mapping.
    public let base: UnsafeMutableRawPointer
    /// Length in bytes.
    public let count: Int

    /// Maps `count` bytes of `fd` shared and read-write.
    public init(fd: borrowing OwnedFileDescriptor, count: Int) throws(SystemError) {
        let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0)
        guard let p, p != MAP_FAILED else { throw SystemError("mmap", Errno(rawValue: errno), detail: "\(count) bytes") }
        base = p
        self.count = count
    }

    deinit { munmap(base, count) }
}
