internal import CACL
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Who may open a file: the owner, plus named users through a POSIX ACL. Connecting to a Unix
/// socket needs write permission on its file, so this is what limits who can reach an agent.
public enum FileAccess {
    /// Makes `path` readable and writable by its owner and by each of `users`, and by no one
    /// else (mode 0600 plus one ACL entry per user). Throws if the file system has no ACLs.
    public static func limit(_ path: String, toOwnerAnd users: [UInt32]) throws(SystemError) {
        _ = try retryingSyscall("chmod", detail: path) { chmod(path, 0o600) }
        let others = Set(users).subtracting([geteuid()]).sorted()
        guard !others.isEmpty else { return }
        // Text form of acl(5): owner, each user, no group, no others; the mask lets users in.
        let text = (["u::rw-"] + others.map { "u:\($0):rw-" } + ["g::---", "m::rw-", "o::---"]).joined(separator: ",")
        guard let acl = acl_from_text(text) else { throw SystemError("acl_from_text", Errno(rawValue: errno), detail: text) }
        defer { acl_free(UnsafeMutableRawPointer(acl)) }
        _ = try retryingSyscall("acl_set_file", detail: path) { acl_set_file(path, acl_type_t(ACL_TYPE_ACCESS), acl) }
    }
}
